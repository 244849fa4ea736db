"""Schema migrations (Alembic) across the core and every module's own version directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cityplus.core.db import Database
from cityplus.core.modules import ModuleRegistry

CORE_DIR = Path(__file__).parent / "migrations"
# SQLite R*Tree virtual tables (and their shadow tables) are created by migrations with raw DDL; models don't
# describe them, so schema comparison leaves them alone.
_UNMANAGED = re.compile(r".+_rtree(_node|_parent|_rowid)?$")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic filter: compare every table the models describe, skip the unmanaged virtual ones."""
    return not (type_ == "table" and reflected and compare_to is None and name and _UNMANAGED.match(name))


def _import_models(registry: ModuleRegistry) -> None:
    """Import every table definition so Base.metadata is complete (autogenerate, tests)."""
    import importlib

    import cityplus.core.audit
    import cityplus.core.events
    import cityplus.core.identity.models
    import cityplus.core.lease
    import cityplus.core.notify  # noqa: F401

    for m in registry:
        if m.models:
            importlib.import_module(m.models)


def alembic_config(db: Database, registry: ModuleRegistry) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(CORE_DIR))
    locations = [CORE_DIR / "versions", *registry.migration_dirs()]
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", ":".join(str(p) for p in locations))
    cfg.attributes["registry"] = registry
    return cfg


@contextmanager
def _connected(db: Database, cfg: Config) -> Iterator[Config]:
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        yield cfg


def upgrade(db: Database, registry: ModuleRegistry, target: str = "heads") -> None:
    """Bring the schema to the newest revision of every module."""
    _import_models(registry)
    cfg = alembic_config(db, registry)
    with _connected(db, cfg):
        command.upgrade(cfg, target)


def current(db: Database, registry: ModuleRegistry) -> dict[str, object]:
    """Applied revisions, the newest available ones, and whether the schema is up to date."""
    cfg = alembic_config(db, registry)
    script = ScriptDirectory.from_config(cfg)
    with db.engine.connect() as conn:
        applied = set(MigrationContext.configure(conn).get_current_heads())
    heads = set(script.get_heads())
    # A module's revision depends on the core's, so the version table may name only the module's head;
    # everything reachable from the applied revisions (dependencies included) is applied.
    reached = {r.revision for r in script.iterate_revisions(tuple(applied), "base")} if applied else set()
    return {"applied": sorted(applied), "heads": sorted(heads), "up_to_date": heads <= reached}


def revision(db: Database, registry: ModuleRegistry, message: str, *, head: str, branch_label: str | None,
             version_path: Path | None = None) -> None:
    """Autogenerate a revision (developer command)."""
    _import_models(registry)
    cfg = alembic_config(db, registry)
    with _connected(db, cfg):
        command.revision(cfg, message=message, autogenerate=True, head=head, branch_label=branch_label,
                         version_path=str(version_path) if version_path else None)
