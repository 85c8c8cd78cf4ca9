"""/v1/solutions/recommender: API routes of :mod:`tuneforge.solutions.recommender`."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/solutions/recommender", tags=["solutions"])
