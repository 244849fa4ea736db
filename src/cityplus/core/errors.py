"""Domain errors raised by services; the API turns them into RFC 9457 problem responses."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of expected, user-facing errors. `status` is the HTTP status the API answers with."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"
    # Standard APIs keep their standard error types (e.g. NGSI-LD's ETSI URIs); None: the platform's own.
    type_uri: str | None = None

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def extensions(self) -> dict[str, Any]:
        """Extra members of the problem body (RFC 9457 extension members), e.g. a standard API's own error fields."""
        return {}


class Unauthenticated(DomainError):
    status, title, type_slug = 401, "Authentication required", "unauthenticated"


class Forbidden(DomainError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class NotFound(DomainError):
    status, title, type_slug = 404, "Not found", "not-found"


class Conflict(DomainError):
    status, title, type_slug = 409, "Conflict", "conflict"


class Unprocessable(DomainError):
    status, title, type_slug = 422, "Validation failed", "validation-failed"
