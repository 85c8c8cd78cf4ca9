"""/v1/usage: the tenant's usage ledger and quotas, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter
from fastapi.responses import Response

from tuneforge.api.deps import AdminPrincipal, Files, Jobs, Models, StateDep, Usage
from tuneforge.api.schemas import UsagePublic
from tuneforge.errors import InvalidRequestError
from tuneforge.store.usage import month_start

router = APIRouter(prefix="/v1/usage", tags=["usage"])


def _period(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    s = datetime(start.year, start.month, start.day, tzinfo=UTC) if start else month_start()
    e = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1) if end else s + timedelta(days=366)
    if e <= s:
        raise InvalidRequestError("end_date: must not be before start_date", param="end_date")
    return s, e


def _rows(usage: Usage, s: datetime, e: datetime) -> list[dict[str, object]]:
    return [{"date": r.period_start.date().isoformat(), "model": r.model or None, "kind": r.kind,
             "quantity": r.quantity} for r in usage.rows(start=s, end=e)]


@router.get("", response_model=UsagePublic, summary="Usage and quotas (default: this month)")
def get_usage(principal: AdminPrincipal, usage: Usage, jobs: Jobs, files: Files, models: Models, state: StateDep,
              start_date: date | None = None, end_date: date | None = None) -> UsagePublic:
    state.meter.flush()
    s, e = _period(start_date, end_date)
    rows = _rows(usage, s, e)
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[str(r["kind"])] += int(r["quantity"])  # type: ignore[call-overload]
    q = principal.quotas
    quotas = {
        "max_concurrent_jobs": {"limit": q.max_concurrent_jobs, "used": jobs.count_active()},
        "trained_tokens_per_month": {"limit": q.trained_tokens_per_month,
                                     "used": usage.total("trained_tokens", since=month_start())},
        "requests_per_minute": {"limit": q.requests_per_minute, "used": None},
        "tokens_per_minute": {"limit": q.tokens_per_minute, "used": None},
        "storage_bytes": {"limit": q.storage_bytes, "used": files.bytes_used() + models.bytes_used()},
    }
    ends = principal.trial_ends_at
    return UsagePublic(tenant=principal.tenant_name, plan=principal.plan,
                       trial_ends_at=int(ends.timestamp()) if ends else None, start=s.date().isoformat(),
                       end=(e - timedelta(days=1)).date().isoformat(), data=rows, totals=dict(totals),
                       quotas=quotas)


@router.get("/export", summary="Usage as CSV (date, model, kind, quantity)",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def export_usage(principal: AdminPrincipal, usage: Usage, state: StateDep, start_date: date | None = None,
                 end_date: date | None = None) -> Response:
    state.meter.flush()
    s, e = _period(start_date, end_date)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["tenant", "date", "model", "kind", "quantity"])
    for r in _rows(usage, s, e):
        w.writerow([principal.tenant_name, r["date"], r["model"] or "", r["kind"], r["quantity"]])
    name = f"usage-{principal.tenant_name}-{s.date()}.csv"
    return Response(buf.getvalue(), media_type="text/csv",
                    headers={"content-disposition": f'attachment; filename="{name}"'})
