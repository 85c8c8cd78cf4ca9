"""Training recipes on transformers' Trainer."""

from tuneforge.training.config import Columns, TrainConfig, load_config_file, make_config
from tuneforge.training.recipe import TrainResult, train

__all__ = ["Columns", "TrainConfig", "TrainResult", "load_config_file", "make_config", "train"]
