"""Knowledge distillation: a student learns from a teacher's predicted probabilities (Hinton et al. 2015).

The teacher (a trained run, or an ensemble) labels every training text once before training, labelled and
unlabelled alike; its probabilities travel with the features as ``teacher_probs``. Unlabelled rows carry the
label -100 and contribute only the soft-target loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = ["distillation_loss"]


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor | None, teacher_probs: torch.Tensor, *,
                      alpha: float, temperature: float) -> torch.Tensor:
    """alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T); rows labelled -100 skip the CE."""
    t = temperature
    teacher = teacher_probs.float().clamp(min=1e-12)
    if t != 1.0:  # soften the teacher as if its logits were divided by T
        teacher = teacher.pow(1.0 / t)
        teacher = teacher / teacher.sum(dim=-1, keepdim=True)
    soft = F.kl_div(F.log_softmax(logits.float() / t, dim=-1), teacher, reduction="batchmean") * (t * t)
    if labels is None or alpha == 0.0 or not bool((labels != -100).any()):
        return (1.0 - alpha) * soft if labels is not None and alpha > 0 else soft
    hard = F.cross_entropy(logits.float(), labels, ignore_index=-100)
    return alpha * hard + (1.0 - alpha) * soft
