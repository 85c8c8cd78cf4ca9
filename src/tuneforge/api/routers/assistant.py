"""/v1/solutions/assistant: API routes of :mod:`tuneforge.solutions.customer_service`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/solutions/assistant", tags=["solutions"])
