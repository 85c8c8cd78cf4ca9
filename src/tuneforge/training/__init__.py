"""Fine-tuning runs on transformers' Trainer: the typed config (:mod:`~tuneforge.training.config`), the setup
before the first step (:mod:`~tuneforge.training.setup`) and the recipe that trains, evaluates and saves
(:mod:`~tuneforge.training.recipe`)."""

from tuneforge.training.config import Columns, TrainConfig, load_config_file, make_config
from tuneforge.training.recipe import TrainResult, saved_config, train
from tuneforge.training.setup import auto_freeze_layers, auto_hyperparameters, load_training_data

__all__ = ["Columns", "TrainConfig", "TrainResult", "auto_freeze_layers", "auto_hyperparameters",
           "load_config_file", "load_training_data", "make_config", "saved_config", "train"]
