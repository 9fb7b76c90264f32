"""Store request and response bodies as json (their text) rather than jsonb, compressed with lz4.

jsonb decomposes every document on insert; for a 1,000-row batch that took
two thirds of the time a log row costs. json keeps the text as received
(the better record for an audit log) and is still queryable with the JSON
operators. lz4 compresses large bodies several times faster than the
default pglz where the server supports it.

Revision ID: 0002
Revises: 0001

"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

BODY_COLUMNS = ('request_body', 'response_body')


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return  # SQLite stores JSON as text already
    for column in BODY_COLUMNS:
        op.execute(f'ALTER TABLE prediction_log ALTER COLUMN {column} TYPE json USING {column}::json')
    op.execute("""
        DO $$
        BEGIN
            ALTER TABLE prediction_log ALTER COLUMN request_body SET COMPRESSION lz4,
                                       ALTER COLUMN response_body SET COMPRESSION lz4;
        EXCEPTION WHEN feature_not_supported OR syntax_error OR invalid_parameter_value THEN
            RAISE NOTICE 'lz4 is not available: bodies keep the default compression';
        END
        $$""")


# json keeps any number as written (1e999999 in a refused request, say); jsonb cannot hold such a
# document. Downgrading keeps it as a jsonb string of its text instead of failing on it.
KEEPING_TEXT = """
    CREATE FUNCTION pg_temp.jsonb_keeping_text(value json) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN
        RETURN value::jsonb;
    EXCEPTION WHEN data_exception THEN
        RETURN to_jsonb(value::text);
    END
    $$"""


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(KEEPING_TEXT)
    for column in BODY_COLUMNS:
        op.execute(f'ALTER TABLE prediction_log ALTER COLUMN {column} TYPE jsonb '
                   f'USING pg_temp.jsonb_keeping_text({column})')
        op.execute(f'ALTER TABLE prediction_log ALTER COLUMN {column} SET COMPRESSION default')
