"""/v1/solutions/monitor: API routes of :mod:`tuneforge.solutions.finance_monitor`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/solutions/monitor", tags=["solutions"])
