"""nodes.suspect_since: when a node's agent dropped its long poll (its process died, its
host closed the socket), written by the server that saw it; the leader declares the node
down once a short grace passes with no heartbeat newer than it (core/liveness.py)

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('suspect_since', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        batch.drop_column('suspect_since')
