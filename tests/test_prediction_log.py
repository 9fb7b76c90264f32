"""The prediction log on PostgreSQL: what a row holds, reading it back, the schema and its migrations."""

from __future__ import annotations

import datetime as dt
import sys

import pytest
import sqlalchemy as sa

from .conftest import ADMIN, BOSTON_ROW, create_database, drop_database, head_revision, migrate_to, migrate_to_head

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


def predict(client, body=None, **kwargs):
    return client.post("/predict", json={"instances": [BOSTON_ROW]} if body is None else body, **kwargs)


def test_accepted_request_row_has_every_field(client, log_rows):
    response = predict(client)
    answer = response.get_json()
    (row,) = log_rows()
    assert row["request_id"] == answer["request_id"]
    assert row["status"] == 200
    assert row["endpoint"] == "/predict"
    assert (row["model_name"], row["model_version"], row["model_sha256"]) == (
        answer["model"]["name"], answer["model"]["version"], answer["model"]["sha256"])
    assert row["request_body"] == {"instances": [BOSTON_ROW]}
    assert row["response_body"] == answer
    assert row["n_rows"] == 1 and row["n_ood_flagged"] == 0
    assert row["latency_ms"] > 0
    assert row["error"] is None and row["request_raw"] is None
    assert row["received_at"].tzinfo is not None
    assert abs(row["received_at"] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert row["client_addr"] == "127.0.0.1"


def test_rejected_request_row_names_the_errors(client, log_rows):
    response = predict(client, {"instances": [dict(BOSTON_ROW, CHAS=5)]})
    assert response.status_code == 400
    (row,) = log_rows()
    assert row["status"] == 400
    assert "instances/0/CHAS" in row["error"]
    assert row["response_body"]["errors"][0]["location"] == "instances/0/CHAS"
    assert row["request_body"] == {"instances": [dict(BOSTON_ROW, CHAS=5)]}


def test_non_json_body_is_logged_as_raw_text_without_a_500(client, log_rows):
    response = client.post("/predict", data=b"CRIM=0.1&ZN=0\x00\xff", content_type="application/json")
    assert response.status_code == 400
    (row,) = log_rows()
    assert row["request_body"] is None
    assert row["request_raw"] == "CRIM=0.1&ZN=0\\x00\\xff"
    assert not row["request_truncated"]


def test_long_raw_body_is_cut_and_flagged(app, client, log_rows):
    limit = app.config["SETTINGS"].LOG_RAW_BODY_LIMIT
    response = client.post("/predict", data=b"x" * (limit + 10), content_type="application/json")
    assert response.status_code == 400
    (row,) = log_rows()
    assert len(row["request_raw"]) == limit and row["request_truncated"]


def test_nul_characters_do_not_lose_the_row(client, log_rows):
    response = predict(client, {"instances": [dict(BOSTON_ROW, **{"bad\u0000key": 1})]})
    assert response.status_code == 400
    (row,) = log_rows()
    assert row["status"] == 400
    assert "bad\ufffdkey" in row["request_body"]["instances"][0]


def seed_rows(client, n_ok: int, n_bad: int) -> list[str]:
    ids = []
    for _ in range(n_ok):
        ids.append(predict(client).get_json()["request_id"])
    for _ in range(n_bad):
        ids.append(predict(client, {"instances": []}).get_json()["request_id"])
    return ids


def test_predictions_paginate_newest_first_and_filter(client):
    ids = seed_rows(client, 7, 3)
    page = client.get("/predictions?limit=4", headers=ADMIN).get_json()
    assert page["total"] == 10 and page["next_offset"] == 4
    assert [item["request_id"] for item in page["items"]] == ids[::-1][:4]
    rest = client.get("/predictions?limit=4&offset=8", headers=ADMIN).get_json()
    assert [item["request_id"] for item in rest["items"]] == ids[::-1][8:]
    assert rest["next_offset"] is None
    rejected = client.get("/predictions?status=400", headers=ADMIN).get_json()
    assert rejected["total"] == 3 and {item["status"] for item in rejected["items"]} == {400}
    version = rejected["items"][0]["model"]["version"]
    by_version = client.get(f"/predictions?model_version={version}&status=200", headers=ADMIN).get_json()
    assert by_version["total"] == 7
    assert client.get("/predictions?model_version=nope", headers=ADMIN).get_json()["total"] == 0
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert client.get("/predictions", query_string={"since": future}, headers=ADMIN).get_json()["total"] == 0
    assert client.get("/predictions", query_string={"until": future}, headers=ADMIN).get_json()["total"] == 10
    one = client.get(f"/predictions/{ids[0]}", headers=ADMIN)
    assert one.status_code == 200 and one.get_json()["request_id"] == ids[0]
    assert client.get("/predictions/absent", headers=ADMIN).status_code == 404


def test_the_count_stops_at_its_cap_and_paging_goes_on(client, monkeypatch):
    query = sys.modules["flask_app.log.query"]  # the module (the package exports its function `query`)
    ids = seed_rows(client, 6, 0)[::-1]
    monkeypatch.setattr(query, "COUNT_CAP", 4)
    first = client.get("/predictions?limit=3", headers=ADMIN).get_json()
    assert (first["total"], first["total_exact"], first["next_offset"]) == (4, False, 3)
    last = client.get("/predictions?limit=3&offset=3", headers=ADMIN).get_json()
    assert [item["request_id"] for item in first["items"] + last["items"]] == ids
    assert last["next_offset"] is None
    exact = client.get("/predictions?status=200&limit=2&offset=2", headers=ADMIN).get_json()
    assert exact["total"] == 4 and not exact["total_exact"] and exact["next_offset"] == 4
    monkeypatch.setattr(query, "COUNT_CAP", 6)
    assert client.get("/predictions", headers=ADMIN).get_json()["total_exact"] is True


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "offset=-1", "status=abc", "since=yesterday"])
def test_bad_log_queries_are_400(client, query):
    response = client.get(f"/predictions?{query}", headers=ADMIN)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 403),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
])
def test_log_reading_needs_the_admin_token(client, headers, status):
    response = client.get("/predictions", headers=headers)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"


def test_admin_endpoints_fail_closed_without_a_token(settings, make_app):
    app = make_app(dict(settings, ADMIN_TOKEN=""))
    client = app.test_client()
    assert client.get("/predictions").status_code == 403
    assert client.get("/predictions", headers=ADMIN).status_code == 403
    dev = make_app(dict(settings, ADMIN_TOKEN="", DEV_MODE="true")).test_client()
    assert dev.get("/predictions").status_code == 200


def test_migrations_build_the_schema_from_an_empty_database(pg_server):
    url = create_database(pg_server)
    try:
        migrate_to_head(url)
        engine = sa.create_engine(url)
        inspector = sa.inspect(engine)
        columns = {column["name"]: column for column in inspector.get_columns("prediction_log")}
        assert type(columns["request_body"]["type"]).__name__ == "JSON"
        assert str(columns["received_at"]["type"]) == "TIMESTAMP"
        assert columns["received_at"]["type"].timezone
        indexes = {index["name"] for index in inspector.get_indexes("prediction_log")}
        assert {"ix_prediction_log_received_at", "ix_prediction_log_status_received_at",
                "ix_prediction_log_model_name_received_at", "ix_prediction_log_model_version_received_at"} <= indexes
        unique = inspector.get_unique_constraints("prediction_log")
        # Partitioned by month (0004): the unique key holds the partition key.
        assert any(constraint["column_names"] == ["request_id", "received_at"] for constraint in unique)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
            compression = conn.execute(sa.text(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = 'prediction_log'::regclass"
                " AND attname = 'request_body'")).scalar()
            assert compression == "l", "bodies are lz4-compressed"
        engine.dispose()
    finally:
        drop_database(url)


def test_the_same_code_runs_on_embedded_sqlite(tmp_path, store, make_app):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    migrate_to_head(url)
    app = make_app({"DATABASE_URL": url, "MODEL_DIR": str(store), "LOG_JOURNAL_DIR": str(tmp_path / "journal"),
                      "LOG_SHIP_INTERVAL": 0, "ADMIN_TOKEN": "t"})
    client = app.test_client()
    ok = predict(client)
    bad = predict(client, {"instances": [dict(BOSTON_ROW, ZN="x")]})
    assert (ok.status_code, bad.status_code) == (200, 400)
    listing = client.get("/predictions", headers={"Authorization": "Bearer t"}).get_json()
    assert [item["status"] for item in listing["items"]] == [400, 200]
    assert listing["items"][1]["response_body"] == ok.get_json()


def test_downgrading_to_jsonb_keeps_a_body_jsonb_cannot_hold(pg_server):
    """Regression: a logged body holding 1e999999 made the downgrade to jsonb fail (NumericValueOutOfRange)."""
    url = create_database(pg_server)
    overflowing = '{"instances": [[1e999999, 0]]}'
    try:
        migrate_to_head(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO prediction_log (request_id, received_at, endpoint, status, latency_ms, request_body,"
                " request_truncated, response_body) VALUES ('big', now(), '/predict', 400, 1, CAST(:body AS json),"
                " false, CAST('{\"status\": 400}' AS json))"), {"body": overflowing})
        migrate_to(url, "0001", downgrade=True)
        with engine.connect() as conn:
            kinds = dict(conn.execute(sa.text(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'prediction_log' AND column_name IN ('request_body', 'response_body')")).all())
            body, response = conn.execute(sa.text(
                "SELECT request_body, response_body FROM prediction_log WHERE request_id = 'big'")).one()
        assert kinds == {"request_body": "jsonb", "response_body": "jsonb"}
        assert body == overflowing  # kept as a jsonb string of the text as it was received
        assert response == {"status": 400}
        migrate_to_head(url)  # and back up again
        engine.dispose()
    finally:
        drop_database(url)
