"""Alembic environment: one history per module (branch label = module name), core first."""

from __future__ import annotations

from alembic import context

from cityplus.core.db import Base
from cityplus.core.migrate import include_object

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
