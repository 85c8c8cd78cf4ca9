"""Everything one app instance owns, built by ``create_app`` and reached through ``deps``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.api.metrics import Metrics
from tuneforge.api.ratelimit import RateLimiter
from tuneforge.inference.serving import InferenceService
from tuneforge.settings import Settings
from tuneforge.store.registry.cache import RefCache
from tuneforge.store.storage import Storage
from tuneforge.store.usage import UsageMeter

__all__ = ["ServiceState"]


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    meter: UsageMeter
    inference: InferenceService
    metrics: Metrics
    ratelimiter: RateLimiter
    #: what name@ref resolved to (issue 23: the model registry), dropped when the registry changes
    registry_refs: RefCache = field(default_factory=RefCache)
