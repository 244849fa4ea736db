"""ASGI middleware: request id, access log, Prometheus metrics and the request-body size limit."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityplus.core.audit import request_id_var

log = structlog.get_logger("cityplus.http")
_RID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Metrics:
    """Prometheus collectors of one app (own registry, so several apps in one process do not clash)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("cityplus_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("cityplus_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def _problem_bytes(status: int, slug: str, title: str, detail: str, rid: str) -> bytes:
    return json.dumps({"type": f"https://cityplus.dev/problems/{slug}", "title": title, "status": status,
                       "detail": detail, "request_id": rid}).encode()


class RequestContextMiddleware:
    """Assigns a request id, enforces MAX_BODY_BYTES while streaming, logs and measures each request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):
            # "/x/" is "/x": answered directly rather than by a 307 that many API clients do not follow (the
            # NGSI-LD spec itself writes POST /ngsi-ld/v1/entities/).
            scope = {**scope, "path": path.rstrip("/") or "/",
                     "raw_path": (scope.get("raw_path") or path.encode()).rstrip(b"/") or b"/"}
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _RID_RE.match(given) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        structlog.contextvars.bind_contextvars(request_id=rid)
        start = time.perf_counter()
        status_holder = {"status": 500}
        method = scope["method"]

        state = {"too_large": False, "replaced": False}

        async def send_wrapper(message: Message) -> None:
            if state["too_large"]:
                # The app failed while the body was cut off; whatever it answers, the answer is 413.
                if message["type"] == "http.response.start" and not state["replaced"]:
                    state["replaced"] = True
                    await reject(413, "payload-too-large", "Payload too large",
                                 f"request body exceeds the limit of {self.max_body} bytes")
                return
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        async def reject(status: int, slug: str, title: str, detail: str) -> None:
            status_holder["status"] = status
            body = _problem_bytes(status, slug, title, detail, rid)
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/problem+json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"x-request-id", rid.encode())]})
            await send({"type": "http.response.body", "body": body})

        try:
            if b"%00" in scope.get("query_string", b"") or "\x00" in scope.get("path", ""):
                # No text column of any backend stores NUL (PostgreSQL refuses it): say so at the edge.
                await reject(400, "bad-request", "Bad request", "NUL characters are not allowed in URLs")
                return
            declared = headers.get(b"content-length")
            if declared is not None:
                try:
                    size = int(declared)
                except ValueError:
                    size = -1
                if size < 0:
                    await reject(400, "bad-request", "Bad request", "invalid Content-Length header")
                    return
                if size > self.max_body:
                    await reject(413, "payload-too-large", "Payload too large",
                                 f"request body of {size} bytes exceeds the limit of {self.max_body} bytes")
                    return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        state["too_large"] = True
                        raise _BodyTooLarge
                return message

            with contextlib.suppress(_BodyTooLarge):
                await self.app(scope, limited_receive, send_wrapper)
            if state["too_large"] and not state["replaced"]:
                await reject(413, "payload-too-large", "Payload too large",
                             f"request body exceeds the limit of {self.max_body} bytes")
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            self.metrics.requests.labels(method, route, str(status_holder["status"])).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            log.info("http_request", method=method, path=scope.get("path"), route=route,
                     status=status_holder["status"], duration_ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)


class _BodyTooLarge(Exception):
    pass


def _route_template(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are grouped so that scanners cannot explode the metric's label set.
    return path if isinstance(path, str) else "unmatched"
