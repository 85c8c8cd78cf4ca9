"""Re-training in the service: the schedule and trigger checks (a fake clock) and the retrain job's runner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tuneforge.errors import ConfigError
from tuneforge.jobs.retrain import RetrainJobSpec, RetrainSchedule, RetrainScheduler, run_retrain

T0 = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # a Monday


def test_cron_schedule_fires_once_per_due_time():
    sched = RetrainScheduler([RetrainSchedule("sst", cron="0 3 * * *")], now=T0)
    assert sched.check(T0 + timedelta(hours=2)) == []
    due = sched.check(T0 + timedelta(hours=4))
    assert [name for name, _ in due] == ["sst"] and "0 3 * * *" in due[0][1]
    assert sched.check(T0 + timedelta(hours=5)) == []  # the same day's run is not due again
    assert sched.check(T0 + timedelta(days=1, hours=2, minutes=59)) == []
    assert sched.check(T0 + timedelta(days=1, hours=3)) != []


def test_new_labelled_examples_and_drift_alerts_trigger():
    sched = RetrainScheduler([RetrainSchedule("a", min_new_examples=100), RetrainSchedule("b", on_drift=True)],
                             now=T0)
    t = T0 + timedelta(minutes=5)
    assert sched.check(t, labelled={"a": 99}) == []
    assert sched.check(t, labelled={"a": 150}) == [("a", "150 new labelled examples (threshold 100)")]
    assert sched.check(t, labelled={"a": 240}) == []  # 90 more since the run
    assert sched.check(t, labelled={"a": 250}) == [("a", "100 new labelled examples (threshold 100)")]
    old_alert = T0 - timedelta(hours=1)
    assert sched.check(t, drift_alerts={"b": [old_alert]}) == []  # raised before the schedule
    alert = T0 + timedelta(minutes=3)
    assert [n for n, _ in sched.check(t, drift_alerts={"b": [old_alert, alert]})] == ["b"]
    assert sched.check(t + timedelta(minutes=1), drift_alerts={"b": [alert]}) == []  # already handled


def test_bad_schedules_are_refused_with_what_to_fix():
    with pytest.raises(ConfigError, match="cron"):
        RetrainSchedule("x", cron="every monday")
    with pytest.raises(ConfigError, match="give a cron expression"):
        RetrainSchedule("x")
    with pytest.raises(ConfigError, match="min_new_examples"):
        RetrainSchedule("x", min_new_examples=0)


def test_runner_retrains_a_registered_model(tmp_path, tiny_bert):
    from tests.conftest import write_jsonl
    from tests.training.test_continual_retrain import _registered, _rows

    reg = _registered(tmp_path, tiny_bert, flip=False)
    new = write_jsonl(tmp_path / "new.jsonl", _rows())
    events: list[dict] = []
    spec = RetrainJobSpec(job_id="job-1", registry_dir=str(tmp_path / "registry"), name="sst",
                          new_data=str(new), replay=0.5, epochs=1, reason="100 new labelled examples")
    out = run_retrain(spec, events.append, lambda: False)
    assert (out["status"], out["version"], out["parent"], out["alias"]) == ("succeeded", 2, 1, "candidate")
    assert out["mix"]["replayed_examples"] == 6
    assert any("retraining sst@production (100 new" in str(e.get("message")) for e in events)
    assert any(e.get("type") == "metrics" for e in events)  # training progress reaches the job's events
    assert reg.get("sst", "candidate").version == 2
