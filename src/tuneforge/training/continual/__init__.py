"""Continual re-training (issue 23): replay of earlier training data, EWC, re-training a registered version,
champion / challenger promotion on the model's fixed test set, and shadow comparison on logged inputs
(docs/lifecycle.md)."""

from tuneforge.training.continual.compare import Comparison, compare_metrics, write_comparison
from tuneforge.training.continual.replay import Mix, mix_replay, replay_count, replay_sample
from tuneforge.training.continual.retrain import CANDIDATE, RetrainOptions, RetrainResult, retrain
from tuneforge.training.continual.shadow import read_inputs, shadow_compare

__all__ = ["CANDIDATE", "Comparison", "Mix", "RetrainOptions", "RetrainResult", "compare_metrics", "mix_replay",
           "read_inputs", "replay_count", "replay_sample", "retrain", "shadow_compare", "write_comparison"]
