"""service source: services.source (how the service was made: 'api' or 'docker-api') and
services.source_info (what that front door needs to remember, e.g. the Docker API's last
container id of a stopped container)

Revision ID: 0005
Revises: 0004

Every service made before this revision came through /v1, so 'api' is right for them all.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('services') as b:
        b.add_column(sa.Column('source', sa.String(length=16), nullable=False, server_default='api'))
        b.add_column(sa.Column('source_info', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('services') as b:
        b.drop_column('source_info')
        b.drop_column('source')
