"""Load trained models and predict; serve them (``serving``, with backends chosen by name in ``backends``)."""

# importing the ensemble module registers its run loader, so load_predictor reads ensemble folders from a cold start
from tuneforge.inference import ensemble as _ensemble  # noqa: F401
from tuneforge.inference.predictor import Predictor, load_base_predictor, load_predictor, register_run_loader

__all__ = ["Predictor", "load_base_predictor", "load_predictor", "register_run_loader"]
