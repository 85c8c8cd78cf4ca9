"""Re-training as a job: the runner of a ``retrain`` job and the checks that start one on a schedule or a trigger.

:func:`run_retrain` has the runner's shape (a picklable spec, ``emit`` for events, ``should_stop`` polled each
step, a plain dict back) and runs :func:`tuneforge.training.continual.retrain` on the spec's registry.
:class:`RetrainScheduler` decides when a model is due: a cron expression (``croniter``; "0 3 * * 1" is Mondays at
03:00 UTC), ``min_new_examples`` new labelled examples since the last re-training (corrected feedback counts), or a
drift alert raised after it. It keeps no clock of its own: the caller passes ``now`` (a test passes a fake one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError

__all__ = ["RetrainJobSpec", "RetrainSchedule", "RetrainScheduler", "ScheduleState", "due_reason", "run_retrain"]

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RetrainJobSpec:
    """What a retrain job runs (paths on the worker)."""

    job_id: str
    registry_dir: str
    name: str
    new_data: str
    replay: float = 0.3
    source: str = "production"
    test_data: str | None = None
    ewc: float | None = None
    margin: float = 0.02
    epochs: float | None = None
    actor: str = "scheduler"
    reason: str = ""
    extra_examples: tuple[dict[str, Any], ...] = ()


def run_retrain(spec: RetrainJobSpec, emit: Emit, should_stop: Callable[[], bool], *,
                registry: Any = None) -> dict[str, Any]:
    """Re-train ``spec.name`` and return the new version, its alias and the comparison (``registry``: the tenant's
    registry where the caller has one, else the local folder ``spec.registry_dir``)."""
    from rich.console import Console

    from tuneforge.store.registry import local_registry
    from tuneforge.training.continual import RetrainOptions, retrain

    reg = registry if registry is not None else local_registry(Path(spec.registry_dir))
    emit({"type": "message", "message": f"retraining {spec.name}@{spec.source}"
                                        + (f" ({spec.reason})" if spec.reason else "")})
    opts = RetrainOptions(new_data=Path(spec.new_data), replay=spec.replay, source=spec.source,
                          test_data=Path(spec.test_data) if spec.test_data else None, ewc=spec.ewc,
                          margin=spec.margin, epochs=spec.epochs, extra_examples=list(spec.extra_examples))
    result = retrain(reg, spec.name, opts, actor=spec.actor, console=Console(stderr=True, quiet=True),
                     on_event=emit, should_stop=should_stop)
    emit({"type": "message", "message": result.message})
    return {"status": "succeeded", "model": result.version.ref, "version": result.version.version,
            "parent": result.parent.version, "alias": result.alias, "message": result.message,
            "mix": result.mix, "comparison": result.comparison.to_json() if result.comparison else None}


@dataclass(frozen=True)
class RetrainSchedule:
    """When a model is re-trained: any of a cron expression, a count of new labelled examples, a drift alert."""

    name: str
    cron: str | None = None
    min_new_examples: int | None = None
    on_drift: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                problems.append(f"cron: '{self.cron}' is not a cron expression (five fields: minute hour "
                                "day-of-month month day-of-week, e.g. '0 3 * * 1')")
        if self.min_new_examples is not None and self.min_new_examples < 1:
            problems.append(f"min_new_examples: must be 1 or more, not {self.min_new_examples}")
        if self.cron is None and self.min_new_examples is None and not self.on_drift:
            problems.append("schedule: give a cron expression, min_new_examples or on_drift")
        if problems:
            raise ConfigError(problems)


@dataclass
class ScheduleState:
    """What the scheduler remembers of a model: when it last checked and last started a re-training, and how many
    labelled examples there were then."""

    since: datetime  # when the schedule was created, or the last re-training started
    checked: datetime | None = None
    examples_at_last_run: int = 0
    runs: list[tuple[datetime, str]] = field(default_factory=list)


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def due_reason(schedule: RetrainSchedule, state: ScheduleState, *, now: datetime, labelled: int = 0,
               drift_alerts: Sequence[datetime] = ()) -> str | None:
    """Why ``schedule`` is due at ``now`` (None when it is not): a cron time passed since the last check (or
    since the schedule started), ``min_new_examples`` labelled examples more than at the last run, or a drift alert
    after the last run."""
    now = _utc(now)
    if schedule.on_drift:
        recent = [_utc(t) for t in drift_alerts if _utc(t) > _utc(state.since) and _utc(t) <= now]
        if recent:
            return f"drift alert at {max(recent).isoformat()}"
    if schedule.min_new_examples is not None:
        new = labelled - state.examples_at_last_run
        if new >= schedule.min_new_examples:
            return f"{new} new labelled examples (threshold {schedule.min_new_examples})"
    if schedule.cron is not None:
        from croniter import croniter

        start = _utc(state.checked or state.since)
        fire = croniter(schedule.cron, start).get_next(datetime)
        if _utc(fire) <= now:
            return f"schedule '{schedule.cron}' (due {_utc(fire).isoformat()})"
    return None


class RetrainScheduler:
    """The schedules of a set of models and their state. ``check(now, ...)`` returns the models due, each with its
    reason, and records the start (a model is not due again for the same cause); the caller queues the jobs."""

    def __init__(self, schedules: Sequence[RetrainSchedule], *, now: datetime) -> None:
        self.schedules = {s.name: s for s in schedules}
        self.state = {s.name: ScheduleState(since=_utc(now)) for s in schedules}

    def check(self, now: datetime, *, labelled: dict[str, int] | None = None,
              drift_alerts: dict[str, Sequence[datetime]] | None = None) -> list[tuple[str, str]]:
        now = _utc(now)
        due: list[tuple[str, str]] = []
        for name, schedule in self.schedules.items():
            state = self.state[name]
            count = (labelled or {}).get(name, state.examples_at_last_run)
            reason = due_reason(schedule, state, now=now, labelled=count,
                                drift_alerts=(drift_alerts or {}).get(name, ()))
            state.checked = now
            if reason is not None:
                due.append((name, reason))
                state.since = now
                state.examples_at_last_run = count
                state.runs.append((now, reason))
        return due
