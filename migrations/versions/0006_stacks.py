"""stacks: server-side stacks and their numbered releases (orchestrator/stacks/)

Revision ID: 0006
Revises: 0005

Stacks applied before this revision exist only as the `stack` label of their services; they
keep working as before and get a row (and release 1) the first time PUT /v1/stacks/{name}
applies them.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stacks',
        sa.Column('key', sa.String(length=127), nullable=False),
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('namespace', sa.String(length=63), nullable=False),
        sa.Column('release', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('atomic', sa.Boolean(), nullable=False),
        sa.Column('rollout_from', sa.Integer(), nullable=True),
        sa.Column('expect', sa.JSON(), nullable=False),
        sa.Column('started_at', sa.Float(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.create_index('ix_stacks_namespace', 'stacks', ['namespace'])
    op.create_table(
        'stack_releases',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('stack_key', sa.String(length=127), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('services', sa.JSON(), nullable=False),
        sa.Column('values', sa.JSON(), nullable=False),
        sa.Column('package', sa.JSON(), nullable=True),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['stack_key'], ['stacks.key'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('stack_key', 'number'),
    )
    op.create_index('ix_stack_releases_stack_key', 'stack_releases', ['stack_key'])


def downgrade() -> None:
    op.drop_index('ix_stack_releases_stack_key', 'stack_releases')
    op.drop_table('stack_releases')
    op.drop_index('ix_stacks_namespace', 'stacks')
    op.drop_table('stacks')
