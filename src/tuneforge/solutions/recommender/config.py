"""What a recommender is trained with (:class:`RecommenderConfig`) and how its re-ranking stage weighs the scores
(:class:`Blend`); both are saved in the bundle's manifest."""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.errors import ConfigError

__all__ = ["Blend", "RecommenderConfig"]


@dataclass(frozen=True)
class RecommenderConfig:
    """How to train a recommender. Every bad field is reported at once when the config is created."""

    base_model: str = "minilm"  #: encoder to start from: minilm, bert-tiny, e5-multilingual or a local folder
    steps: int = 300  #: contrastive fine-tuning steps (0: use the base encoder as it is)
    batch_size: int = 64  #: (user, liked item) pairs per step; the other targets are the negatives
    history_size: int = 5  #: liked items pooled into the user vector during fine-tuning
    lr: float = 1e-4
    temperature: float = 0.05
    train_layers: int = 2  #: top encoder layers trained (0: all; fewer is faster on a CPU)
    refresh_every: int = 100  #: steps between re-embeddings of the catalogue for the user side
    max_length: int = 64  #: tokens per item text
    positive_threshold: float = 4.0  #: a rating at or above this is a "like" (events without a rating are likes)
    neighbors: int = 100  #: item-kNN neighbours kept per item
    candidates: int = 200  #: items each retriever nominates for re-ranking
    validation: bool = True  #: tune the blend on each user's latest liked item (else use default weights)
    seed: int = 42

    def __post_init__(self) -> None:
        problems = []
        for name in ("batch_size", "history_size", "max_length", "neighbors", "candidates"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be at least 1 (got {getattr(self, name)})")
        if self.batch_size < 2:
            problems.append(f"batch_size: in-batch negatives need at least 2 (got {self.batch_size})")
        if self.train_layers < 0 or self.refresh_every < 0:
            problems.append("train_layers / refresh_every: must be 0 or more")
        if self.steps < 0:
            problems.append(f"steps: must be 0 (no fine-tuning) or more (got {self.steps})")
        if not self.lr > 0:
            problems.append(f"lr: must be positive (got {self.lr})")
        if not self.temperature > 0:
            problems.append(f"temperature: must be positive (got {self.temperature})")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Blend:
    """Weights of the standardised scores in the re-ranking stage."""

    text: float = 0.5
    knn: float = 0.5
    popularity: float = 0.0
