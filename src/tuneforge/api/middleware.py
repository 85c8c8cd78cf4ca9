"""A pure ASGI middleware: ``x-request-id`` on every response, headers set by dependencies (rate limits), and
Prometheus request metrics by route template."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from tuneforge.api.errors import error_body
from tuneforge.api.metrics import Metrics
from tuneforge.store.usage import UsageMeter

__all__ = ["EXTRA_HEADERS", "METERED", "RequestContextMiddleware"]

#: scope key of a dict whose items become response headers (filled by dependencies, e.g. rate limits)
EXTRA_HEADERS = "tuneforge.headers"
#: scope key of a dict naming who made the request and for which model (filled by authentication and routes);
#: the request is counted in the usage ledger when its response is sent
METERED = "tuneforge.metered"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger(__name__)


class RequestContextMiddleware:
    def __init__(self, app: Any, metrics: Metrics, meter: UsageMeter) -> None:
        self.app = app
        self.metrics = metrics
        self.meter = meter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        extra: dict[str, str] = {}
        scope[EXTRA_HEADERS] = extra
        metered: dict[str, str] = {}
        scope[METERED] = metered
        scope["tuneforge.request_id"] = request_id
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = 1
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                for k, v in extra.items():
                    if k.encode() not in present:
                        headers.append((k.encode(), v.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Unhandled: answer here, so that even a 500 carries the request id and the error format.
            log.exception("unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id)
            if status.get("started"):
                raise
            body = json.dumps(error_body("The server had an error while processing your request.",
                                         "server_error", code="internal_error")).encode()
            await send_wrapper({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        finally:
            if "tenant_id" in metered:
                self.meter.add(metered["tenant_id"], "requests", model=metered.get("model", ""))
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - t0)
