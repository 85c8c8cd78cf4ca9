"""Tables of the recommender solution (see :mod:`tuneforge.solutions.recommender`). Every row carries ``tenant_id``."""

from __future__ import annotations

from tuneforge.store.models import Base  # noqa: F401
