"""A pure ASGI middleware: ``x-request-id`` on every response, headers set by dependencies (rate limits),
Prometheus request metrics by route template, and a cap on request bodies (413 before a byte past the limit is
read: a declared ``content-length`` over it is refused at once, a streamed body is stopped there)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import HTTPException

from tuneforge.api.errors import error_body
from tuneforge.api.metrics import Metrics
from tuneforge.store.usage import UsageMeter

__all__ = ["EXTRA_HEADERS", "METERED", "BodyLimits", "RequestContextMiddleware", "RequestTooLarge"]

#: scope key of a dict whose items become response headers (filled by dependencies, e.g. rate limits)
EXTRA_HEADERS = "tuneforge.headers"
#: scope key of a dict naming who made the request and for which model (filled by authentication and routes);
#: the request is counted in the usage ledger when its response is sent
METERED = "tuneforge.metered"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger(__name__)
#: multipart framing and form fields around an uploaded file
UPLOAD_OVERHEAD = 64 * 1024


class RequestTooLarge(HTTPException):
    """A request body over its limit (raised while the body is read; answered as a 413 in the error format)."""

    def __init__(self, message: str, *, code: str, param: str | None) -> None:
        super().__init__(413, message, headers={"x-should-retry": "false"})
        self.code, self.param = code, param


@dataclass(frozen=True)
class BodyLimits:
    """The largest body of a request: ``upload_bytes`` (plus the multipart framing) for ``POST /v1/files``,
    ``request_bytes`` for every other request."""

    request_bytes: int
    upload_bytes: int

    def error(self, method: str, path: str) -> tuple[int, RequestTooLarge]:
        if method == "POST" and path.rstrip("/") in ("/v1/files", "/v1/models/import"):
            return self.upload_bytes + UPLOAD_OVERHEAD, RequestTooLarge(
                f"The upload is larger than the limit of {self.upload_bytes:,} bytes.", code="file_too_large",
                param="file")
        return self.request_bytes, RequestTooLarge(
            f"The request body is larger than the limit of {self.request_bytes:,} bytes; send fewer or shorter "
            "inputs per request.", code="request_too_large", param=None)


def _declared_length(scope: dict[str, Any]) -> int | None:
    for k, v in scope.get("headers") or []:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


class RequestContextMiddleware:
    def __init__(self, app: Any, metrics: Metrics, meter: UsageMeter, limits: BodyLimits | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.meter = meter
        self.limits = limits

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

        raw_receive = receive

        async def too_large(exc: RequestTooLarge) -> None:
            body = json.dumps(error_body(str(exc.detail), "invalid_request_error", param=exc.param,
                                         code=exc.code)).encode()
            status["code"] = 413
            await send_wrapper({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode()),
                                            (b"x-should-retry", b"false"), (b"connection", b"close")]})
            # The whole answer goes out at once; the response stays open while the rest of the body is read and
            # dropped (a lingering close, bounded), so that a client still sending gets the 413 instead of a
            # connection reset when the server closes with unread data.
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await _drain(raw_receive)
            await send({"type": "http.response.body", "body": b""})

        if self.limits is not None:
            limit, error = self.limits.error(scope["method"], scope["path"])
            declared = _declared_length(scope)
            if declared is not None and declared > limit:
                try:
                    await too_large(error)
                finally:
                    self._count(scope, metered, status, t0)
                return
            receive = _limited(receive, limit, error)

        try:
            await self.app(scope, receive, send_wrapper)
        except RequestTooLarge as exc:  # raised by the body reader outside FastAPI's handlers
            if status.get("started"):
                raise
            await too_large(exc)
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
            self._count(scope, metered, status, t0)

    def _count(self, scope: dict[str, Any], metered: dict[str, str], status: dict[str, int], t0: float) -> None:
        if "tenant_id" in metered:
            self.meter.add(metered["tenant_id"], "requests", model=metered.get("model", ""))
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(scope["method"], template, str(status["code"])).inc()
        self.metrics.latency.labels(scope["method"], template).observe(time.perf_counter() - t0)


#: how much of a refused body is read and dropped before the connection closes, and for how long at most
DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 20.0


async def _drain(receive: Any) -> None:
    """Read and drop what is left of a request body (nothing is kept), up to DRAIN_BYTES / DRAIN_SECONDS."""
    drained = 0
    deadline = time.monotonic() + DRAIN_SECONDS
    while drained < DRAIN_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), timeout=remaining)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body") or b"")
        if not message.get("more_body"):
            return


def _limited(receive: Any, limit: int, error: RequestTooLarge) -> Any:
    """``receive`` that raises ``error`` as soon as the body read so far passes ``limit`` bytes."""
    received = 0

    async def limited_receive() -> dict[str, Any]:
        nonlocal received
        message: dict[str, Any] = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body") or b"")
            if received > limit:
                raise error
        return message

    return limited_receive
