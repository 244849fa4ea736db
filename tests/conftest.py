"""Shared fixtures: a fresh migrated database per test on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from cityplus.core.audit import Actor
from cityplus.core.config import Settings, load_settings
from cityplus.core.db import Database
from cityplus.core.modules import ModuleRegistry

IN_CI = os.environ.get("CI") == "true"
PG_URL = os.environ.get("CITYPLUS_TEST_POSTGRES_URL", "")
REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    path = Path(os.environ.get("CITYPLUS_SHARED_DIR", REPO.parent / "shared"))
    return path if path.is_dir() else None


def need(condition: bool, reason: str) -> None:
    """Skip a service-backed test locally when the service is missing; in CI that is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def _pg_admin_url() -> str:
    url = make_url(PG_URL)
    return url.set(database=url.database or "postgres").render_as_string(hide_password=False)


def _pg_exec(sql: str) -> None:
    engine = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@dataclass
class Templates:
    sqlite_file: Path | None = None
    pg_name: str | None = None


_templates = Templates()


def _registry() -> ModuleRegistry:
    return ModuleRegistry.discover()


def _migrate(url: str) -> None:
    from cityplus.core import migrate

    db = Database(url)
    try:
        migrate.upgrade(db, _registry())
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("templates")


def _sqlite_template(template_dir: Path) -> Path:
    if _templates.sqlite_file is None:
        path = template_dir / "template.db"
        _migrate(f"sqlite:///{path}")
        _templates.sqlite_file = path
    return _templates.sqlite_file


def _pg_template() -> str:
    if _templates.pg_name is None:
        name = f"cityplus_tmpl_{uuid.uuid4().hex[:10]}"
        _pg_exec(f'CREATE DATABASE "{name}"')
        _migrate(make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False))
        _templates.pg_name = name
    return _templates.pg_name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _templates.pg_name:
        with contextlib.suppress(Exception):  # best effort at teardown
            _pg_exec(f'DROP DATABASE IF EXISTS "{_templates.pg_name}" WITH (FORCE)')


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        need(bool(PG_URL), "CITYPLUS_TEST_POSTGRES_URL is not set (PostgreSQL tests)")
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, template_dir: Path) -> Iterator[str]:
    """A fresh, migrated database for one test (copied from a per-session template)."""
    if backend == "sqlite":
        path = tmp_path / "cityplus.db"
        shutil.copyfile(_sqlite_template(template_dir), path)
        yield f"sqlite:///{path}"
        return
    name = f"cityplus_t_{uuid.uuid4().hex[:12]}"
    _pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template()}"')
    try:
        yield make_url(_pg_admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray cityplus.toml from the developer's directory
    return load_settings(database_url=db_url, var_dir=tmp_path / "var", secret_key="test-secret-key",
                         bus_url="")


@pytest.fixture
def ctx(settings: Settings):  # type: ignore[no-untyped-def]
    from cityplus.api.app import build_context

    context = build_context(settings)
    from cityplus.core.identity import service as identity

    with context.db.session() as session:
        identity.load_organisations(session, Actor.system("test"))
        from cityplus.modules.plan import service as plan

        plan.load_plan(session, Actor.system("test"))
    yield context
    context.db.dispose()


@pytest.fixture
async def app(ctx):  # type: ignore[no-untyped-def]
    from cityplus.api.app import create_app

    application = create_app(ctx=ctx)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class TestUser:
    username: str
    password: str
    role: str
    org: str | None
    user_id: int


@pytest.fixture
def make_user(ctx) -> Callable[..., TestUser]:  # type: ignore[no-untyped-def]
    """Create a user directly through the identity service."""
    from cityplus.core.identity import service as identity

    counter = iter(range(1, 10_000))

    def _make(role: str = "citizen", org: str | None = None, username: str | None = None,
              password: str = "correct-horse-9") -> TestUser:
        if org is None and role in ("department_staff", "department_admin"):
            org = "fgw"
        name = username or f"{role.replace('_', '')}{next(counter)}"
        with ctx.db.session() as session:
            u = identity.create_user(session, Actor.system("test"), username=name, password=password, role=role,
                                     org_code=org)
            uid = u.id
        return TestUser(name, password, role, org, uid)

    return _make


@pytest.fixture
def token_for(ctx) -> Callable[..., dict[str, str]]:  # type: ignore[no-untyped-def]
    """Authorization headers for a fresh token of a user holding every scope of their role."""
    from cityplus.core.identity import service as identity

    def _token(user: TestUser, scopes: list[str] | None = None, days: int | None = 1) -> dict[str, str]:
        with ctx.db.session() as session:
            u = identity.get_user(session, user.user_id)
            wanted = scopes if scopes is not None else sorted(identity.role_scopes(u, ctx.registry.all_scopes()))
            issued = identity.create_token(session, Actor.system("test"), u, name="test", scopes=wanted, days=days,
                                           all_scopes=ctx.registry.all_scopes())
        return {"Authorization": f"Bearer {issued.secret}"}

    return _token
