"""Evaluation: metrics, reports, plots, error analysis."""

from tuneforge.evaluation.evaluate import evaluate_base_model, evaluate_predictor, evaluate_run
from tuneforge.evaluation.report import write_evaluation

__all__ = ["evaluate_base_model", "evaluate_predictor", "evaluate_run", "write_evaluation"]
