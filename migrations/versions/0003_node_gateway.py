"""nodes.gateway: where the node's gateway listens (host:port; '' when it runs none)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes') as b:
        b.add_column(sa.Column('gateway', sa.String(length=255), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('nodes') as b:
        b.drop_column('gateway')
