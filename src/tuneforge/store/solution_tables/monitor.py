"""Tables of the monitor solution (see :mod:`tuneforge.solutions.finance_monitor`). Every row carries ``tenant_id``."""

from __future__ import annotations

from tuneforge.store.models import Base  # noqa: F401
