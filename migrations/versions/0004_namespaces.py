"""namespaces: the namespace table (with `default`), services.namespace, events.namespace,
tokens.namespaces, and service keys up to 127 characters

Revision ID: 0004
Revises: 0003

A service is identified inside the server by its key: its name in `default`, and
`<namespace>/<name>` elsewhere (orchestrator/namespaces.py). Every row made before this
revision therefore already means `default`: nothing is moved, the new columns default to it.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'namespaces',
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('parent', sa.String(length=63), nullable=True),
        sa.Column('quotas', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['parent'], ['namespaces.name'], name='fk_namespaces_parent'),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_index('ix_namespaces_parent', 'namespaces', ['parent'])
    op.execute("INSERT INTO namespaces (name, parent, quotas, created_at) VALUES ('default', NULL, NULL, 0)")
    with op.batch_alter_table('services') as b:
        b.alter_column('name', type_=sa.String(length=127), existing_type=sa.String(length=63))
        b.add_column(sa.Column('namespace', sa.String(length=63), nullable=False, server_default='default'))
        b.create_index('ix_services_namespace', ['namespace'])
    with op.batch_alter_table('revisions') as b:
        b.alter_column('service_name', type_=sa.String(length=127), existing_type=sa.String(length=63))
    with op.batch_alter_table('instances') as b:
        b.alter_column('service_name', type_=sa.String(length=127), existing_type=sa.String(length=63))
    with op.batch_alter_table('events') as b:
        b.alter_column('service', type_=sa.String(length=127), existing_type=sa.String(length=63))
        b.add_column(sa.Column('namespace', sa.String(length=63), nullable=True))
        b.create_index('ix_events_namespace', ['namespace'])
    # events of services made before namespaces were in default
    op.execute("UPDATE events SET namespace = 'default' WHERE service IS NOT NULL")
    with op.batch_alter_table('tokens') as b:
        b.add_column(sa.Column('namespaces', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tokens') as b:
        b.drop_column('namespaces')
    with op.batch_alter_table('events') as b:
        b.drop_index('ix_events_namespace')
        b.drop_column('namespace')
    with op.batch_alter_table('services') as b:
        b.drop_index('ix_services_namespace')
        b.drop_column('namespace')
    op.drop_index('ix_namespaces_parent', 'namespaces')
    op.drop_table('namespaces')
