"""Migrations: every module's history applies on each backend and matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cityplus.core import migrate
from cityplus.core.db import Base


def test_schema_is_at_heads_and_matches_models(ctx) -> None:  # type: ignore[no-untyped-def]
    state = migrate.current(ctx.db, ctx.registry)
    assert state["up_to_date"], state
    with ctx.db.engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": migrate.include_object})
        diff = compare_metadata(mc, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_is_idempotent(ctx) -> None:  # type: ignore[no-untyped-def]
    migrate.upgrade(ctx.db, ctx.registry)
    assert migrate.current(ctx.db, ctx.registry)["up_to_date"]


def test_fresh_database_reports_pending(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cityplus.core.db import Database
    from cityplus.core.modules import ModuleRegistry

    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        state = migrate.current(db, ModuleRegistry.discover())
        assert not state["up_to_date"] and state["applied"] == []
        assert {"core", "plan", "context"} <= {head.split("_")[0] for head in state["heads"]}  # a head per module
    finally:
        db.dispose()
