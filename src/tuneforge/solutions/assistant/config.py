"""The assistant's options (:class:`AssistantConfig`), kept in a bundle's assistant.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneforge.errors import ConfigError

__all__ = ["DEFAULT_HANDOVER_PHRASES", "AssistantConfig"]

DEFAULT_HANDOVER_PHRASES = ["talk to a human", "speak to a human", "real person", "human agent", "talk to an agent",
                            "speak to an agent", "customer service representative", "live agent", "talk to someone"]


class AssistantConfig(BaseModel):
    """How the assistant decides; stored in the bundle's assistant.json and editable per deployment."""

    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.5, ge=0, le=1, description="Below this confidence the assistant hands over.")
    min_similarity: float = Field(0.0, ge=-1, le=1,
                                  description="Hand over when no passage or past ticket is at least this similar to "
                                              "the message: it is unlike anything seen (0: off).")
    handover_intents: list[str] = Field(default_factory=list,
                                        description="Intents always handed to a human (talk to a human, complaints).")
    handover_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_HANDOVER_PHRASES),
                                        description="A message containing one of these asks for a human.")
    templates: dict[str, str] = Field(default_factory=dict, description="The reply for an intent.")
    top_k: int = Field(5, ge=1, le=100, description="Passages retrieved per message.")
    context_turns: int = Field(2, ge=0, le=10,
                               description="Earlier user turns read with a short or unclear follow-up.")
    follow_up_words: int = Field(6, ge=0, le=100,
                                 description="A message of at most this many words may be a follow-up.")
    encoder: str = Field("minilm", description="Retrieval encoder: a base model name or folder, or 'intent' for "
                                               "the fine-tuned intent model's encoder.")
    answer_mode: Literal["retrieval", "generate"] = Field(
        "retrieval", description="retrieval: reply with the knowledge-base answer of the intent; generate: the "
                                 "writer model writes the reply from the top passages and cites them ([1], [2]).")
    writer: str | None = Field(None, description="The writer of generated answers: a base chat model (smollm2) or a "
                                                 "generation run folder; in the API one of your fine-tuned "
                                                 "generation models. Unset: the bundle's writer/ folder.")
    writer_passages: int = Field(3, ge=1, le=10, description="Passages the writer reads, best first.")
    writer_passage_chars: int = Field(400, ge=50, le=4000, description="Each passage is cut at this many "
                                                                       "characters in the writer's prompt.")
    writer_max_new_tokens: int = Field(256, ge=1, le=2048, description="The longest generated answer, in tokens.")
    passage_min_similarity: float = Field(
        0.0, ge=-1, le=1, description="A passage less similar than this to the message is not relevant: the writer "
                                      "never sees it, and with none left the assistant says it found nothing and "
                                      "hands over (0: every retrieved passage counts).")
    require_citation: bool = Field(True, description="Hand over a generated answer that cites no passage.")

    @classmethod
    def parse(cls, values: dict[str, Any], source: str = "the assistant config") -> AssistantConfig:
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise ConfigError([f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']}" for err in e.errors()],
                              hint=f"Fix these fields of {source}.") from None
