"""Bodies of ``/v1/chat/completions`` and ``/v1/completions``, after OpenAI's.

Requests accept fields beyond the declared ones (``extra="allow"``) so that the router can answer each unsupported
OpenAI field (``tools``, ``logprobs``, ``response_format`` ...) with a message that names it, and any other field
with OpenAI's "Unrecognized request argument".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_CHOICES", "ChatChoice", "ChatCompletionCreate", "ChatCompletionPublic", "ChatMessageIn",
           "ChatMessageOut", "CompletionChoice", "CompletionCreate", "CompletionPublic", "CompletionUsage",
           "StreamOptions"]

#: the most choices (``n``, times the prompts of a completion) one request may ask for
MAX_CHOICES = 16


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = Field(False, description="Send a last chunk with the usage (and no choices) before "
                                                   "`data: [DONE]`.")


class _Sampling(BaseModel):
    """The decoding fields both endpoints share."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="A chat model: a base model (`smollm2`) or one of your fine-tuned generation "
                                   "models (`ft:smollm2:...`, or a checkpoint `ft:...:ckpt-step-N`).")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate per choice (default: the "
                                                           "server's cap, within the model's context).")
    temperature: float | None = Field(None, ge=0, le=2, description="0 decodes greedily; default 1.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling; default 1.")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES, description="Choices to generate; default 1.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end a reply (not included).")
    seed: int | None = Field(None, ge=0, description="Sampling with the same seed, prompt and options repeats.")
    stream: bool | None = Field(False, description="Send the reply as Server-Sent Events, token by token.")
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256, description="Your end user's id (kept in the logs only).")
    top_k: int | None = Field(None, ge=0, description="TuneForge (and vLLM) extension: sample from the k most "
                                                      "likely tokens only.")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="TuneForge (and vLLM) extension: "
                                                                            "above 1 discourages repeats.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Only 0 (not implemented).")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="Only 0 (not implemented).")


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatCompletionCreate(_Sampling):
    """E.g. ``{"model": "smollm2", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 32}``."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name of max_tokens (wins "
                                                                      "when both are given).")


class CompletionCreate(_Sampling):
    """E.g. ``{"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 20, "temperature": 0}``."""

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text (no chat template is applied), a list of texts, or token ids.")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletionPublic(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: CompletionUsage


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class CompletionPublic(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: CompletionUsage
