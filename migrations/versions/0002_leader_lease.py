"""leader lease, per-slot uniqueness of live instances

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 09:00:00

- `leader_lease`: the one row several servers on one database compete for (holder, epoch,
  expiry on the database's clock). See orchestrator/coord/lease.py.
- `uq_instances_live_slot`: at most one live (desired running) instance per
  (service, revision, slot), whatever the code does: two leaders, or a replayed pass,
  cannot start a slot twice.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'leader_lease',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('holder', sa.String(length=128), nullable=False),
        sa.Column('epoch', sa.BigInteger(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.Column('acquired_at', sa.Float(), nullable=False),
        sa.Column('renewed_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.execute("INSERT INTO leader_lease (id, holder, epoch, expires_at, acquired_at, renewed_at) "
               "VALUES (1, '', 0, 0, 0, 0)")
    op.create_index('uq_instances_live_slot', 'instances', ['service_name', 'revision', 'slot'], unique=True,
                    sqlite_where=sa.text("desired_state = 'running'"),
                    postgresql_where=sa.text("desired_state = 'running'"))


def downgrade() -> None:
    op.drop_index('uq_instances_live_slot', table_name='instances')
    op.drop_table('leader_lease')
