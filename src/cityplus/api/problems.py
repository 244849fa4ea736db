"""RFC 9457 problem-details responses for native APIs."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError as DBAPIDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cityplus.core.audit import request_id_var
from cityplus.core.errors import DomainError

PROBLEM_TYPE_BASE = "https://cityplus.dev/problems/"
log = structlog.get_logger("cityplus.api")


def problem(status: int, title: str, detail: str, *, type_slug: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None, instance: str | None = None,
            type_uri: str | None = None, extensions: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_uri or PROBLEM_TYPE_BASE + type_slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    rid = request_id_var.get()
    if rid:
        body["request_id"] = rid
    for key, value in (extensions or {}).items():
        body.setdefault(key, value)  # extension members never replace the standard ones
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        where, rest = parts[0], parts[1:]
        return f"{where}.{'.'.join(rest)}" if rest else where
    return ".".join(parts)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        item: dict[str, Any] = {"field": _loc_to_field(err.get("loc", ())), "message": err.get("msg", "invalid")}
        if err.get("type"):
            item["code"] = err["type"]
        out.append(item)
    return out


STATUS_SLUGS = {400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found",
                405: "method-not-allowed", 406: "not-acceptable", 409: "conflict", 413: "payload-too-large",
                415: "unsupported-media-type", 422: "validation-failed", 429: "too-many-requests"}


API_PREFIXES = ("/api/", "/ngsi-ld/", "/iot/", "/healthz", "/readyz", "/metrics", "/openapi.json")


def wants_html(request: Request) -> bool:
    """Portal pages answer errors with an HTML page; APIs always with problem JSON."""
    if request.url.path.startswith(API_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


def _html(request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None) -> Any:
    renderer = getattr(request.app.state, "html_error", None)
    if renderer is None or not wants_html(request):
        return None
    return renderer(request, status, title, detail, headers or {})


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response (or an HTML page)."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Any:
        page = _html(request, exc.status, exc.title, exc.detail, exc.headers)
        if page is not None:
            return page
        return problem(exc.status, exc.title, exc.detail, type_slug=exc.type_slug, errors=exc.errors,
                       headers=exc.headers, instance=request.url.path, type_uri=exc.type_uri,
                       extensions=exc.extensions())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Any:
        errors = validation_errors(exc)
        fields = ", ".join(sorted({e["field"] for e in errors}))
        status = 400 if any(e.get("code") == "json_invalid" for e in errors) else 422
        title = "Malformed JSON" if status == 400 else "Validation failed"
        page = _html(request, status, title, f"invalid request: {fields}", None)
        if page is not None:
            return page
        return problem(status, title, f"invalid request: {fields}",
                       type_slug="malformed-json" if status == 400 else "validation-failed", errors=errors,
                       instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        slug = STATUS_SLUGS.get(exc.status_code, "error")
        title = slug.replace("-", " ").capitalize()
        detail = exc.detail if isinstance(exc.detail, str) else title
        page = _html(request, exc.status_code, title, detail, getattr(exc, "headers", None))
        if page is not None:
            return page
        return problem(exc.status_code, title, detail, type_slug=slug, headers=getattr(exc, "headers", None),
                       instance=request.url.path)

    @app.exception_handler(DBAPIDataError)
    async def _data(request: Request, exc: DBAPIDataError) -> Any:
        # The database refused a value the validation let through (out of range, bad encoding). The input is at
        # fault, not the server: answer 400, but log it, since the validation should have caught it first.
        log.warning("database_rejected_value", path=request.url.path, error=str(exc.orig)[:300])
        return problem(400, "Bad request", "a value in the request cannot be stored", type_slug="bad-request",
                       instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", path=request.url.path, exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred; it has been logged",
                       type_slug="internal-error", instance=request.url.path)
