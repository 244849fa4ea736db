"""context: covering query indexes on context_attr_index

The q-query plan drives from the most selective term through an (attr, value) index and checks the others per
entity through (entity_pk, attr). Adding entity_pk to the (attr, value) indexes lets both databases answer the
driving term from the index alone (no table lookup per matching row), and (entity_pk, attr) replaces the
entity_pk index (it also serves the per-attribute DELETE of incremental reindexing).

Revision ID: context_0002
Revises: context_0001
"""
from __future__ import annotations

from alembic import op

revision = 'context_0002'
down_revision = 'context_0001'
branch_labels = None
depends_on = None

_OLD = {
    'ix_context_attr_index_attr_num': ['attr', 'num'],
    'ix_context_attr_index_attr_text': ['attr', 'text'],
    'ix_context_attr_index_attr_obj': ['attr', 'obj'],
    'ix_context_attr_index_entity_pk': ['entity_pk'],
}
_NEW = {
    'ix_context_attr_index_attr_num_pk': ['attr', 'num', 'entity_pk'],
    'ix_context_attr_index_attr_text_pk': ['attr', 'text', 'entity_pk'],
    'ix_context_attr_index_attr_obj_pk': ['attr', 'obj', 'entity_pk'],
    'ix_context_attr_index_pk_attr': ['entity_pk', 'attr'],
}


def upgrade() -> None:
    for name in _OLD:
        op.drop_index(name, table_name='context_attr_index')
    for name, cols in _NEW.items():
        op.create_index(name, 'context_attr_index', cols, unique=False)


def downgrade() -> None:
    for name in _NEW:
        op.drop_index(name, table_name='context_attr_index')
    for name, cols in _OLD.items():
        op.create_index(name, 'context_attr_index', cols, unique=False)
