"""usage and automation: instance_metrics (what each container uses), service_traffic (what
each node's gateway served per service), services.automation (the autoscaler's and the
rebalancer's state, leader-owned)

Revision ID: 0007
Revises: 0006

The metrics tables hold the latest window only: each agent's post replaces its node's rows.
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'instance_metrics',
        sa.Column('instance_id', sa.String(length=32), nullable=False),
        sa.Column('service', sa.String(length=127), nullable=False),
        sa.Column('node', sa.String(length=63), nullable=False),
        sa.Column('cpu', sa.Float(), nullable=True),
        sa.Column('memory', sa.BigInteger(), nullable=True),
        sa.Column('window', sa.Float(), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('instance_id'),
    )
    op.create_index('ix_instance_metrics_service', 'instance_metrics', ['service'])
    op.create_index('ix_instance_metrics_node', 'instance_metrics', ['node'])
    op.create_table(
        'service_traffic',
        sa.Column('node', sa.String(length=63), nullable=False),
        sa.Column('service', sa.String(length=127), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('errors', sa.BigInteger(), nullable=False),
        sa.Column('latency_p95_ms', sa.Float(), nullable=True),
        sa.Column('window', sa.Float(), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('node', 'service'),
    )
    op.create_index('ix_service_traffic_service', 'service_traffic', ['service'])
    with op.batch_alter_table('services') as b:
        b.add_column(sa.Column('automation', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('services') as b:
        b.drop_column('automation')
    op.drop_index('ix_service_traffic_service', 'service_traffic')
    op.drop_table('service_traffic')
    op.drop_index('ix_instance_metrics_node', 'instance_metrics')
    op.drop_index('ix_instance_metrics_service', 'instance_metrics')
    op.drop_table('instance_metrics')
