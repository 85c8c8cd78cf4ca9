"""Tables of the assistant solution (see :mod:`tuneforge.solutions.customer_service`).
Every row carries ``tenant_id``."""

from __future__ import annotations

from tuneforge.store.models import Base  # noqa: F401
