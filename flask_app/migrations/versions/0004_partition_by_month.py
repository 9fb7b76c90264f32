"""Range-partition prediction_log by received_at: one partition per UTC month, and a default partition.

PostgreSQL only (SQLite has no partitions and keeps the plain table).

- The table's rows move into the new partitioned table of the same name; ids
  keep their values and the id sequence carries on.
- A unique index on a partitioned table must hold the partition key, so the
  request id's uniqueness becomes ``UNIQUE (request_id, received_at)``. The
  service mints each request id from the same clock reading it stores as
  ``received_at``, and every copy of a row (a journal replayed twice, say)
  carries that pair unchanged, so a second copy is a conflict in the one
  partition its ``received_at`` selects.
- The primary key becomes ``(id, received_at)`` for the same reason.
- The index on (model_name, model_version, received_at) becomes two, (model_name, received_at) and
  (model_version, received_at): with a default partition PostgreSQL merges the partitions' rows in
  received_at order, and a filter on either column alone then needs an index that yields that
  order in every partition (otherwise each partition is read until its first match). On SQLite
  this is the migration's only change.
- Partitions exist for every month that holds rows, the current month and
  the next three; the default partition takes any row outside them, so a
  row is never refused for lack of a partition. ``flask --app
  flask_app.wsgi log-partitions`` keeps months created ahead, moves rows out
  of the default partition and drops months past LOG_RETENTION_DAYS.

The upgrade copies the rows (the table is locked while it does); plan a
maintenance window for a large log. The downgrade copies them back into a
plain table; should two rows share a request id (possible only for ids a
client chose, before the service minted its own), the later one is stored
under ``<id>.<row id>`` as the old writer did.

Revision ID: 0004
Revises: 0003

"""
import datetime as dt

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

MONTHS_AHEAD = 3
INDEXES_0003 = {
    'ix_prediction_log_received_at': 'received_at',
    'ix_prediction_log_status_received_at': 'status, received_at',
    'ix_prediction_log_model_received_at': 'model_name, model_version, received_at',
    'ix_prediction_log_client_request_id': 'client_request_id',
}
INDEXES_0004 = {
    'ix_prediction_log_received_at': 'received_at',
    'ix_prediction_log_status_received_at': 'status, received_at',
    'ix_prediction_log_model_name_received_at': 'model_name, received_at',
    'ix_prediction_log_model_version_received_at': 'model_version, received_at',
    'ix_prediction_log_client_request_id': 'client_request_id',
}
MODEL_INDEXES = sorted(set(INDEXES_0003) ^ set(INDEXES_0004))
# The columns of 0003's table, in order.
COLUMNS = ('id', 'request_id', 'received_at', 'endpoint', 'status', 'model_name', 'model_version',
           'model_sha256', 'n_rows', 'n_ood_flagged', 'latency_ms', 'request_body', 'request_raw',
           'request_truncated', 'response_body', 'error', 'client_addr', 'client_request_id', 'logged_at')


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        swap_indexes(INDEXES_0003, INDEXES_0004)
        return
    op.execute('LOCK TABLE prediction_log IN ACCESS EXCLUSIVE MODE')
    set_aside('prediction_log_0003', INDEXES_0003)
    op.execute('CREATE TABLE prediction_log (LIKE prediction_log_0003 INCLUDING DEFAULTS INCLUDING STORAGE'
               ' INCLUDING COMPRESSION) PARTITION BY RANGE (received_at)')
    op.execute('ALTER TABLE prediction_log ADD CONSTRAINT prediction_log_pkey PRIMARY KEY (id, received_at),'
               ' ADD CONSTRAINT prediction_log_request_id_key UNIQUE (request_id, received_at)')
    create_indexes(INDEXES_0004)
    op.execute('ALTER SEQUENCE prediction_log_id_seq OWNED BY prediction_log.id')

    months = {month_start(row[0]) for row in op.get_bind().execute(sa.text(
        "SELECT DISTINCT date_trunc('month', received_at AT TIME ZONE 'UTC') FROM prediction_log_0003"))}
    this_month = month_start(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    months.update(add_months(this_month, n) for n in range(MONTHS_AHEAD + 1))
    for month in sorted(months):
        op.execute(f'CREATE TABLE prediction_log_p{month:%Y%m} PARTITION OF prediction_log'
                   f" FOR VALUES FROM ('{month:%Y-%m-%d} 00:00:00+00')"
                   f" TO ('{add_months(month, 1):%Y-%m-%d} 00:00:00+00')")
    op.execute('CREATE TABLE prediction_log_default PARTITION OF prediction_log DEFAULT')

    op.execute('INSERT INTO prediction_log SELECT * FROM prediction_log_0003')
    op.execute('DROP TABLE prediction_log_0003')
    op.execute('ANALYZE prediction_log')


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        swap_indexes(INDEXES_0004, INDEXES_0003)
        return
    op.execute('LOCK TABLE prediction_log IN ACCESS EXCLUSIVE MODE')
    set_aside('prediction_log_0004', INDEXES_0004)
    op.execute('CREATE TABLE prediction_log (LIKE prediction_log_0004 INCLUDING DEFAULTS INCLUDING STORAGE'
               ' INCLUDING COMPRESSION)')
    op.execute('ALTER TABLE prediction_log ADD CONSTRAINT prediction_log_pkey PRIMARY KEY (id),'
               ' ADD CONSTRAINT prediction_log_request_id_key UNIQUE (request_id)')
    create_indexes(INDEXES_0003)
    op.execute('ALTER SEQUENCE prediction_log_id_seq OWNED BY prediction_log.id')
    others = ', '.join(column for column in COLUMNS if column not in ('id', 'request_id'))
    op.execute(f"""
        INSERT INTO prediction_log (id, request_id, {others})
        SELECT id, CASE WHEN row_number() OVER (PARTITION BY request_id ORDER BY id) = 1 THEN request_id
                        ELSE left(request_id, 100) || '.' || id END,
               {others}
        FROM prediction_log_0004 ORDER BY id""")
    op.execute('DROP TABLE prediction_log_0004')  # and its partitions


def set_aside(new_name, indexes):
    """Rename the current table with its constraints and indexes, freeing their names."""
    suffix = new_name.removeprefix('prediction_log')
    op.execute(f'ALTER TABLE prediction_log RENAME TO {new_name}')
    for constraint in ('prediction_log_pkey', 'prediction_log_request_id_key'):
        op.execute(f'ALTER TABLE {new_name} RENAME CONSTRAINT {constraint} TO {constraint}{suffix}')
    for index in indexes:
        op.execute(f'ALTER INDEX {index} RENAME TO {index}{suffix}')


def create_indexes(indexes):
    for index, columns in indexes.items():
        op.execute(f'CREATE INDEX {index} ON prediction_log ({columns})')


def swap_indexes(old, new):
    """The index change alone (SQLite)."""
    for index in MODEL_INDEXES:
        if index in old:
            op.drop_index(index, table_name='prediction_log')
    for index in MODEL_INDEXES:
        if index in new:
            op.create_index(index, 'prediction_log', [column.strip() for column in new[index].split(',')])


def month_start(moment):
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month, n):
    years, index = divmod(month.month - 1 + n, 12)
    return month.replace(year=month.year + years, month=index + 1)
