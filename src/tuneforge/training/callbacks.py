"""Trainer callbacks: a Rich progress bar, and hooks that let a caller watch or stop a run."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

__all__ = ["EventCallback", "RichProgressCallback"]


class RichProgressCallback(TrainerCallback):
    """One progress bar for training steps with the latest loss, and a line per evaluation."""

    def __init__(self, console: Console, main_metric: str) -> None:
        self.console = console
        self.main_metric = main_metric
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.progress = Progress(TextColumn("[bold]Training[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=self.console, transient=False)
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, completed=state.global_step,
                                 info=f"epoch {state.epoch:.2f}" + (f" loss {self.loss:.4f}" if self.loss else ""))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and "loss" in logs and isinstance(logs["loss"], (int, float)) and math.isfinite(logs["loss"]):
            self.loss = float(logs["loss"])
            if not self.console.is_terminal:  # a log file gets a line per logging step instead of a live bar
                rewards = "".join(f" {k} {logs[k]:.3f}" for k in ("rewards/accuracies", "rewards/margins")
                                  if isinstance(logs.get(k), float))  # a preference (DPO) run's
                self.console.print(f"step {state.global_step}/{state.max_steps} epoch {state.epoch:.2f} "
                                   f"loss {self.loss:.4f} lr {logs.get('learning_rate', 0):.2e}{rewards}")

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kw: Any) -> None:
        if not metrics:
            return
        shown = {k.removeprefix("eval_"): v for k, v in metrics.items()
                 if isinstance(v, float) and not k.endswith(("runtime", "per_second"))}
        line = "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
        msg = f"[cyan]dev[/] step {state.global_step} (epoch {state.epoch:.2f}): {line}"
        if self.progress is not None:
            self.progress.console.print(msg)
        else:
            self.console.print(msg)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class EventCallback(TrainerCallback):
    """Forwards progress to ``on_event`` (for a job queue's event log) and stops training when ``should_stop``
    says so (cancel or pause reach a running training within one step)."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None,
                 should_stop: Callable[[], bool] | None) -> None:
        self.on_event = on_event
        self.should_stop = should_stop
        self.stopped = False

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if self.on_event and logs:
            self.on_event({"type": "metrics", "step": state.global_step, "epoch": state.epoch,
                           "total_steps": state.max_steps,
                           **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.should_stop is not None and self.should_stop():
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True  # leave a checkpoint to resume from
