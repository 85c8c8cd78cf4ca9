"""The reference model of a preference-tuned model (DPO's frozen starting point), carried by the model itself.

A DPO run's implicit reward is the log-probability ratio of the tuned model to the model it started from. The
tuning method knows how to reach that reference (a LoRA run: the same model with its adapter disabled; a full
run: a frozen copy), the generation task only needs to run it. :func:`set_reference` puts a context-manager
factory on the model that yields the module to run as the reference, and :func:`reference_of` gives it back
(None for a model that has no reference: a base model or a supervised run, whose reward is the plain
log-probability). It lives on the model object, not in its weights: nothing of it is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["Reference", "frozen_copy_reference", "reference_of", "set_reference"]

_ATTR = "_tuneforge_reference"


@dataclass(frozen=True)
class Reference:
    """How to run a model's reference: ``enter()`` is a context manager yielding the module to call, and ``beta``
    scales the implicit reward (DPO's ``beta * log-ratio``)."""

    enter: Callable[[], AbstractContextManager[Any]]
    beta: float = 1.0
    #: what the reference is, for reports ("adapter disabled", "frozen copy of the base model")
    kind: str = "reference model"


def set_reference(model: Any, reference: Reference) -> Any:
    """Attach ``reference`` to ``model`` (returned for chaining)."""
    object.__setattr__(model, _ATTR, reference)  # a plain attribute: never a submodule, never saved
    return model


def reference_of(model: Any) -> Reference | None:
    """The reference attached to ``model`` (None when it has none)."""
    ref = getattr(model, _ATTR, None)
    return ref if isinstance(ref, Reference) else None


def frozen_copy_reference(reference_model: Any, beta: float) -> Reference:
    """A reference that is a separate frozen model, moved to the device of the input it is asked to score."""
    reference_model.eval()
    for p in reference_model.parameters():
        p.requires_grad_(False)

    @contextmanager
    def enter() -> Iterator[Any]:
        yield reference_model

    return Reference(enter, beta, "frozen copy of the starting model")
