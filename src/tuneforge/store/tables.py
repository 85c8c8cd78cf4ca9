"""Every table of the service, importable from one place: the core tables (:mod:`tuneforge.store.models`) and
the solutions' (:mod:`tuneforge.store.solution_tables`). ``metadata`` is what Alembic compares the migrations
with (``migrations/env.py``, ``tests/store/test_migrations.py``)."""

from tuneforge.store.base import Base, TenantScoped
from tuneforge.store.input_log import DriftAlert, InputLogEntry, ModelMonitoring  # noqa: F401  (issue 23: monitoring)
from tuneforge.store.models import (
    ApiKey,
    Checkpoint,
    File,
    IdempotencyRecord,
    Job,
    JobEvent,
    Model,
    Plan,
    Tenant,
    UsageRecord,
)
from tuneforge.store.registry import tables as _registry_tables  # noqa: F401  (issue 23: the registry's tables)
from tuneforge.store.solution_tables.assistant import Assistant, AssistantFeedback, AssistantSession, AssistantTurn
from tuneforge.store.solution_tables.monitor import (
    MonitorAlert,
    MonitorItem,
    MonitorMention,
    MonitorRule,
    MonitorSource,
    MonitorWatch,
)
from tuneforge.store.solution_tables.recommender import Recommender, RecommenderEvent

__all__ = ["ApiKey", "Assistant", "AssistantFeedback", "AssistantSession", "AssistantTurn", "Base", "Checkpoint",
           "File", "IdempotencyRecord", "Job", "JobEvent", "Model", "MonitorAlert", "MonitorItem", "MonitorMention",
           "MonitorRule", "MonitorSource", "MonitorWatch", "Plan", "Recommender", "RecommenderEvent", "Tenant",
           "TenantScoped", "UsageRecord", "metadata"]

metadata = Base.metadata
