"""The journal-first log: the client's own request id, when a row reached the table, shipping checkpoints.

- ``client_request_id``: the X-Request-ID a client sent. The service's own
  ``request_id`` is minted for every request (time-ordered and unique), so
  a client that reuses an id can no longer make two requests share one row key.
- ``logged_at``: when the row reached the table; with ``received_at`` and
  ``latency_ms`` it gives the shipping lag of every row.
- ``prediction_log_journal``: per journal segment, how far it has been
  shipped. A batch of rows and its segment's new offset commit in one
  transaction, so a row is shipped exactly once whoever ships it.

Revision ID: 0003
Revises: 0002

"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('prediction_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_request_id', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('logged_at', sa.DateTime(timezone=True), nullable=False,
                                      server_default=sa.func.now()))
        batch_op.create_index('ix_prediction_log_client_request_id', ['client_request_id'], unique=False)
    op.create_table(
        'prediction_log_journal',
        sa.Column('segment', sa.String(length=200), nullable=False),
        sa.Column('shipped_offset', sa.BigInteger(), nullable=False),
        sa.Column('shipped_rows', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint('segment'),
    )


def downgrade():
    op.drop_table('prediction_log_journal')
    with op.batch_alter_table('prediction_log', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_log_client_request_id')
        batch_op.drop_column('logged_at')
        batch_op.drop_column('client_request_id')
