"""The drift test gives scipy's answers, and its false-alarm rate is what the docs say."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from flask_app.drift import ks_report, ks_two_sample, ood_scores


@pytest.mark.parametrize("method", ["exact", "asymp"])
@pytest.mark.parametrize("n_rows", [30, 200, 1000])
def test_ks_matches_scipy(n_rows, method):
    rng = np.random.default_rng(n_rows)
    reference = np.column_stack([rng.normal(size=455), rng.integers(0, 3, 455), rng.exponential(size=455)])
    X = np.column_stack([rng.normal(0.2, 1, n_rows), rng.integers(0, 3, n_rows), rng.exponential(size=n_rows)])
    statistic, p_value = ks_two_sample(reference, X)
    for col in range(3):
        expected = stats.ks_2samp(X[:, col], reference[:, col], method=method)
        assert statistic[col] == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value[col] == pytest.approx(expected.pvalue, abs=0.02)
        if expected.pvalue < 0.01:  # where decisions are made
            assert p_value[col] == pytest.approx(expected.pvalue, rel=0.35)


def test_false_alarms_on_training_like_batches_stay_under_alpha():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(455, 12))
    alarms = sum(bool(ks_report(reference, rng.normal(size=(100, 12)), [f"f{i}" for i in range(12)],
                                0.01)["drifted"]) for _ in range(300))
    # At most 1 % of batches by design (Bonferroni); 300 batches: expect about 3 or fewer.
    assert alarms <= 9


def test_ood_score_is_the_quantile_among_training_distances():
    train = np.sort(np.arange(1, 101, dtype=float))
    assert ood_scores(train, np.array([0.5, 50.0, 100.0, 1000.0])).tolist() == [0.0, 0.5, 1.0, 1.0]


# --- GET /monitoring/drift over the log -------------------------------------------------

def _log_batches(app, n_requests: int, rows_per_request: int, response_padding: int) -> None:
    """Accepted 1,000-row-style requests written straight into the log, with large responses."""
    import datetime as dt

    import sqlalchemy as sa

    from flask_app.extensions import db
    from flask_app.log import PredictionLog

    with app.app_context():
        served = app.extensions["model_registry"].get()
        rng = np.random.default_rng(1)
        rows = served.reference[rng.choice(len(served.reference), rows_per_request)].round(4).tolist()
        now = dt.datetime.now(dt.UTC)
        for index in range(n_requests):
            db.session.execute(sa.insert(PredictionLog), [{
                "request_id": f"drift-{index}", "received_at": now - dt.timedelta(seconds=index),
                "endpoint": "/predict", "status": 200, "model_name": served.name, "model_version": served.version,
                "model_sha256": served.sha256, "n_rows": rows_per_request, "latency_ms": 1.0,
                "request_body": {"instances": rows}, "request_truncated": False,
                "response_body": {"predictions": [0.0] * rows_per_request, "padding": "x" * response_padding},
            }])
        db.session.commit()


def _statements_during(app, call):
    import sqlalchemy as sa

    from flask_app.extensions import db

    seen = []
    with app.app_context():
        engine = db.engine

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        result = call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return result, seen


def test_drift_window_reads_only_the_request_bodies_it_needs(app, client):
    """Regression: window=N read N whole log rows, responses included, into every worker's memory."""
    import tracemalloc

    from .conftest import ADMIN

    _log_batches(app, n_requests=40, rows_per_request=1000, response_padding=2_000_000)
    tracemalloc.start()
    try:
        response, statements = _statements_during(
            app, lambda: client.get("/monitoring/drift?window=100000", headers=ADMIN))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    assert response.get_json()["n_rows"] == 40_000
    # 80 MB of responses sit in those rows; none of it is read.
    assert not any("response_body" in statement for statement in statements)
    assert peak < 40_000_000, f"peak {peak / 1e6:.0f} MB"

    response, statements = _statements_during(app, lambda: client.get("/monitoring/drift?window=1500",
                                                                       headers=ADMIN))
    assert response.get_json()["n_rows"] == 1500  # two newest requests, cut to 1,500 rows


def test_drift_window_stops_at_its_byte_cap(app, settings, make_app):
    from .conftest import ADMIN

    _log_batches(app, n_requests=10, rows_per_request=100, response_padding=0)
    capped = make_app(dict(settings, DRIFT_WINDOW_MAX_BYTES=25_000))  # room for about two 100-row bodies
    body = capped.test_client().get("/monitoring/drift?window=1000", headers=ADMIN).get_json()
    assert 100 <= body["n_rows"] <= 300


def test_drift_is_for_the_admin_only(client):
    assert client.get("/monitoring/drift").status_code == 401
    assert client.get("/monitoring/drift", headers={"Authorization": "Bearer wrong"}).status_code == 403
