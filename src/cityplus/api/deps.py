"""Request dependencies: database session, current principal, scope requirements, CSRF."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from cityplus.core.audit import Actor
from cityplus.core.context import AppContext
from cityplus.core.errors import Forbidden, Unauthenticated
from cityplus.core.identity import service as identity
from cityplus.core.identity.models import ApiToken, User, WebSession

SESSION_COOKIE = "cityplus_session"
CSRF_COOKIE = "cityplus_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed before the response is sent, rolled back on error.

    Safe methods get a read-only session (on SQLite a WAL snapshot that never holds the write lock). Opening the
    session does no I/O (the connection is taken at the first statement), so it happens on the event loop; the
    commit or rollback and the close run in one worker-thread call, shielded from cancellation so a disconnecting
    client never leaves a transaction open. (A sync generator dependency cost two thread hops per request.)
    """
    ctx = get_ctx(request)
    limiter = _session_limiter(ctx)
    await limiter.acquire()
    try:
        factory = ctx.db.read_sessionmaker if request.method in SAFE_METHODS else ctx.db.sessionmaker
        session = factory()
        session.begin()
        ok = False
        try:
            yield session
            ok = True
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_end_session, session, ok)
    finally:
        limiter.release()
    # The transaction committed; let the event relay know about new outbox rows.
    ctx.bus.wake()


def _session_limiter(ctx: AppContext) -> anyio.Semaphore:
    """How many requests may hold a database session at once: fewer than the connection pool holds and than the
    worker threads. A request's transaction spans thread hops (the route, then the commit); were all threads
    taken by requests waiting for a connection (or SQLite's write lock), the transactions holding them could
    never get a thread to commit: a deadlock seen at 64 concurrent PATCHes. Requests beyond the limit wait on the
    event loop, holding nothing."""
    limiter = ctx.module_state.get("core.session_limiter")
    if limiter is None:
        pool = ctx.db.engine.pool
        size = getattr(pool, "size", None)
        capacity = size() + max(getattr(pool, "_max_overflow", 0), 0) if callable(size) else 8
        threads = anyio.to_thread.current_default_thread_limiter().total_tokens
        # A semaphore, not a CapacityLimiter: the commit may run in another task than the acquire.
        limiter = anyio.Semaphore(max(1, min(capacity, int(threads) - 8)))
        ctx.module_state["core.session_limiter"] = limiter
    return limiter  # type: ignore[no-any-return]


def _end_session(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


# scope="function": the commit runs when the route returns, before the response is sent. (FastAPI's default for
# yield dependencies is "request": the exit code would run after the response, so a client could read before the
# write committed, and a failed commit would follow a 201.)
DbSession = Annotated[Session, Depends(get_session, scope="function")]


@dataclass
class Principal:
    """The authenticated caller and what they may do in this request."""

    user: User
    scopes: frozenset[str]
    via: str  # "session" or "token"
    token: ApiToken | None = None
    web_session: WebSession | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> Actor:
        u = self.user
        return Actor(username=u.username, user_id=u.id, org_code=u.org.code if u.org else None, role=u.role)

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'",
                              headers={"WWW-Authenticate": 'Bearer realm="cityplus"'})
    return value.strip()


def resolve_principal(request: Request, session: Session) -> Principal | None:
    """Authenticate by bearer token, else by session cookie; cache the result on the request."""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    ctx = get_ctx(request)
    all_scopes = ctx.registry.all_scopes()
    principal: Principal | None = None
    bearer = _bearer(request)
    if bearer is not None:
        found = identity.authenticate_token(session, bearer)
        if found is not None and identity.token_needs_touch(found[1]):
            if session.info.get("readonly"):
                with ctx.db.session() as writer:
                    identity.touch_token(writer, found[1].id)
            else:
                identity.touch_token(session, found[1].id)
        if found is None:
            raise Unauthenticated("the API token is unknown, expired or revoked",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        user, token = found
        effective = frozenset(token.scopes) & identity.role_scopes(user, all_scopes)
        principal = Principal(user=user, scopes=effective, via="token", token=token)
    else:
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            found_ws = identity.resolve_session(session, raw)
            if found_ws is not None:
                user, ws = found_ws
                principal = Principal(user=user, scopes=identity.role_scopes(user, all_scopes), via="session",
                                      web_session=ws)
    request.state.principal = principal
    return principal


async def _form_csrf(request: Request) -> str | None:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def check_csrf(request: Request, principal: Principal | None) -> None:
    """Unsafe requests that ride on a browser's ambient credentials must carry a CSRF token.

    Signed in by cookie: the session's token (form field `csrf_token` or header X-CSRF-Token).
    Anonymous form posts (sign-in, language switch): double-submit of the `cityplus_csrf` cookie.
    Bearer tokens and anonymous JSON calls carry no ambient authority and need none.
    """
    if request.method in SAFE_METHODS:
        return
    if principal is not None and principal.via == "token":
        return
    if principal is not None and principal.web_session is not None:
        expected = principal.web_session.csrf_token
    else:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")):
            return
        expected = request.cookies.get(CSRF_COOKIE, "")
    given = request.headers.get(CSRF_HEADER) or await _form_csrf(request) or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("missing or invalid CSRF token; reload the page and try again",
                        errors=[{"field": "csrf_token", "message": "missing or invalid"}])


async def principal_of(request: Request, session: Session) -> Principal | None:
    """resolve_principal from async code: its database reads run in a worker thread, never on the event loop.

    (On the loop, a write session's first statement — SQLite's BEGIN IMMEDIATE — waited there for the write lock
    while the holder's commit waited for the loop: every request stalled for the busy timeout.)"""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    return await run_in_threadpool(resolve_principal, request, session)


class RequireScope:
    """Dependency: the caller must be authenticated and hold `scope` (401 / 403 otherwise)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request, session: DbSession) -> Principal:
        principal = await principal_of(request, session)
        if principal is None:
            raise Unauthenticated(f"sign in or send a bearer token with scope {self.scope!r}",
                                  headers={"WWW-Authenticate": 'Bearer realm="cityplus"'})
        await check_csrf(request, principal)
        if not principal.has(self.scope):
            raise Forbidden(f"this action needs scope {self.scope!r}",
                            errors=[{"field": "scope", "message": f"missing {self.scope}"}])
        return principal

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


class PublicAccess:
    """Dependency marking a route as deliberately public; resolves the caller if there is one."""

    async def __call__(self, request: Request, session: DbSession) -> Principal | None:
        principal = await principal_of(request, session)
        await check_csrf(request, principal)
        return principal

    def __repr__(self) -> str:
        return "Public"


PUBLIC = PublicAccess()
PUBLIC_ROUTE = Depends(PUBLIC)  # for `dependencies=[PUBLIC_ROUTE]` on routes that need no principal
Public = Annotated[Principal | None, Depends(PUBLIC)]


def Scoped(scope: str) -> Any:  # noqa: N802 - reads like a type in signatures
    """Annotated principal requiring `scope`: `principal: Scoped("audit.read")`."""
    return Annotated[Principal, Depends(RequireScope(scope))]


def route_access(route: APIRoute) -> str | None:
    """'public', 'scope:<name>' or None when the route declares neither (a bug the app refuses)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RequireScope):
            return f"scope:{dep.call.scope}"
        if isinstance(dep.call, PublicAccess):
            return "public"
        stack.extend(dep.dependencies)
    return None
