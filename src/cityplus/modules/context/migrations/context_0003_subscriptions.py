"""context: NGSI-LD subscriptions, the notification outbox, and entity history (temporal API)

Revision ID: context_0003
Revises: context_0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = 'context_0003'
down_revision = 'context_0002'
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('context_tenants') as batch:
        batch.add_column(sa.Column('sub_version', sa.Integer(), nullable=False, server_default='0'))
    op.create_table(
        'context_subscriptions',
        sa.Column('pk', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('sub_id', sa.String(length=512), nullable=False),
        sa.Column('spec', _JSON, nullable=False),
        sa.Column('context', _JSON, nullable=True),
        sa.Column('is_active', sa.Boolean(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('times_sent', sa.Integer(), nullable=False),
        sa.Column('times_failed', sa.Integer(), nullable=False),
        sa.Column('last_notification', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_success', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_failure', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('failing', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('modified_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['context_tenants.id']),
        sa.PrimaryKeyConstraint('pk'),
        sa.UniqueConstraint('tenant_id', 'sub_id'),
    )
    op.create_index('ix_context_subscriptions_tenant_id', 'context_subscriptions', ['tenant_id'])
    op.create_table(
        'context_notifications',
        sa.Column('pk', sa.Integer(), nullable=False),
        sa.Column('sub_pk', sa.Integer(), nullable=False),
        sa.Column('trigger', sa.String(length=32), nullable=False),
        sa.Column('data', _JSON, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('claimed_by', sa.String(length=128), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['sub_pk'], ['context_subscriptions.pk'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('pk'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_context_notifications_sub_pk', 'context_notifications', ['sub_pk'])
    op.create_index('ix_context_notifications_due', 'context_notifications', ['state', 'due_at'])
    op.create_table(
        'context_history',
        sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('entity_id', sa.String(length=512), nullable=False),
        sa.Column('attr', sa.String(length=512), nullable=False),
        sa.Column('dataset_id', sa.String(length=512), nullable=True),
        sa.Column('observed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('modified_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('value', _JSON, nullable=False),
        sa.Column('num', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('pk'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_context_history_observed', 'context_history',
                    ['tenant_id', 'entity_id', 'attr', 'observed_at', 'num'])
    op.create_index('ix_context_history_modified', 'context_history', ['modified_at'])
    op.create_table(
        'context_temporal_entities',
        sa.Column('pk', sa.Integer(), nullable=False),
        sa.Column('tenant_id', sa.Integer(), nullable=False),
        sa.Column('entity_id', sa.String(length=512), nullable=False),
        sa.Column('types', _JSON, nullable=False),
        sa.PrimaryKeyConstraint('pk'),
        sa.UniqueConstraint('tenant_id', 'entity_id'),
    )


def downgrade() -> None:
    op.drop_table('context_temporal_entities')
    op.drop_table('context_history')
    op.drop_table('context_notifications')
    op.drop_table('context_subscriptions')
    with op.batch_alter_table('context_tenants') as batch:
        batch.drop_column('sub_version')
