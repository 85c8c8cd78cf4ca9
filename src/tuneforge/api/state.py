"""Everything one app instance owns, built by ``create_app`` and reached through ``deps``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tuneforge.api.metrics import Metrics
from tuneforge.api.ratelimit import RateLimiter
from tuneforge.inference.serving import InferenceService
from tuneforge.settings import Settings
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
