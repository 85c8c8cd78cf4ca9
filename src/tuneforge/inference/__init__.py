"""Load trained models and predict."""

from tuneforge.inference.predictor import Predictor, load_predictor, read_manifest

__all__ = ["Predictor", "load_predictor", "read_manifest"]
