"""A job's metrics under the names it reports: OpenAI's for generation (train_loss, train_mean_token_accuracy,
valid_loss, ... full_valid_* at the end), the encoder tasks' as before (loss and train_loss, eval_*)."""

from __future__ import annotations

import json

from tuneforge.jobs.runner import checkpoint_metrics, final_metrics, is_reported_metric, public_metrics

TRAIN_LOG = {"loss": 1.5, "grad_norm": 2.0, "learning_rate": 1e-4, "epoch": 0.5, "mean_token_accuracy": 0.25,
             "step": 2}
EVAL_LOG = {"eval_loss": 1.4, "eval_valid_loss": 1.41, "eval_valid_mean_token_accuracy": 0.3,
            "eval_runtime": 0.2, "eval_samples_per_second": 10.0, "epoch": 1.0}
DPO_LOG = {"loss": 0.69, "rewards/accuracies": 0.5, "rewards/margins": 0.0}
DPO_EVAL = {"eval_loss": 0.68, "eval_valid_loss": 0.68, "eval_rewards/accuracies": 0.75}
SUMMARY = {"train_runtime": 3.0, "train_samples_per_second": 4.0, "train_loss": 1.2, "epoch": 2.0}


def test_generation_logs_carry_openais_names() -> None:
    assert public_metrics(TRAIN_LOG, generative=True) == {
        "train_loss": 1.5, "grad_norm": 2.0, "learning_rate": 1e-4, "epoch": 0.5, "train_mean_token_accuracy": 0.25,
        "step": 2}
    assert public_metrics(EVAL_LOG, generative=True) == {
        "valid_loss": 1.41, "valid_mean_token_accuracy": 0.3, "eval_runtime": 0.2, "eval_samples_per_second": 10.0,
        "epoch": 1.0}
    assert public_metrics(DPO_LOG, generative=True) == {"train_loss": 0.69, "rewards/accuracies": 0.5,
                                                        "rewards/margins": 0.0}
    assert public_metrics(DPO_EVAL, generative=True) == {"valid_loss": 0.68, "valid_rewards/accuracies": 0.75}
    # the end-of-training average is not the last step's loss
    assert public_metrics(SUMMARY, generative=True)["mean_train_loss"] == 1.2
    assert "train_loss" not in public_metrics(SUMMARY, generative=False)


def test_encoder_logs_keep_their_names() -> None:
    assert public_metrics({"loss": 0.7, "step": 3}, generative=False) == {"loss": 0.7, "train_loss": 0.7, "step": 3}
    assert public_metrics({"eval_accuracy": 0.9, "eval_loss": 0.3}, generative=False) == {
        "eval_accuracy": 0.9, "eval_loss": 0.3}


def test_reported_metrics_leave_out_the_step_rate_and_timings() -> None:
    names = ["train_loss", "train_mean_token_accuracy", "valid_loss", "full_valid_loss", "eval_accuracy",
             "rewards/margins", "logps/chosen"]
    assert all(is_reported_metric(n) for n in names)
    assert not any(is_reported_metric(n) for n in ("step", "epoch", "learning_rate", "grad_norm", "total_flos",
                                                   "train_runtime", "eval_samples_per_second", "mean_train_loss"))


def test_checkpoint_metrics_are_the_latest_up_to_its_step(tmp_path) -> None:
    history = [{**TRAIN_LOG, "step": 2}, {**EVAL_LOG, "step": 3}, {**TRAIN_LOG, "loss": 0.9, "step": 4},
               {**TRAIN_LOG, "loss": 0.1, "step": 6}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    assert checkpoint_metrics(tmp_path, 4, generative=True) == {
        "step": 4, "train_loss": 0.9, "train_mean_token_accuracy": 0.25, "valid_loss": 1.41,
        "valid_mean_token_accuracy": 0.3}
    assert checkpoint_metrics(tmp_path, 4)["eval_valid_loss"] == 1.41  # an encoder run's names


def test_final_metrics_are_the_full_validation_of_a_generation_run() -> None:
    manifest = {"metrics": {"dev": {"valid_loss": 1.0, "valid_mean_token_accuracy": 0.5, "f1": 40.0, "n": 4}}}
    assert final_metrics(manifest, generative=True) == {"full_valid_loss": 1.0,
                                                        "full_valid_mean_token_accuracy": 0.5, "full_valid_f1": 40.0}
    assert final_metrics(manifest, generative=False) == {} and final_metrics({}, generative=True) == {}
