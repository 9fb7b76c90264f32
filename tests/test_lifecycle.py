"""Versions, hot swap, shadow dry runs, out-of-distribution scores, drift and metrics (in-process)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from ml_models import bundle, learn

from .conftest import ADMIN, BOSTON_ROW, DATA_DIR, train_into

NAME = "boston-knn"


def predict(client, rows, path="/predict"):
    return client.post(path, json={"instances": rows})


def holdout_rows(test_size: float = 0.1, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """The rows learn.py held out (same split), and the training rows."""
    data = learn.load_data(DATA_DIR / "boston_housing.csv", "MEDV", ("B",))
    X_train, X_test, _, _ = train_test_split(data.X, data.y, test_size=test_size, random_state=seed)
    return X_test, X_train


@pytest.fixture
def second_version(store, keys):
    """A second signed version of the Boston model that predicts differently (k fixed by a small grid)."""
    return train_into(store, "--max-neighbors", "1", signing_key=keys["trusted"]).name


def test_activation_swaps_without_restart(client, store, second_version):
    before = predict(client, [BOSTON_ROW]).get_json()
    response = client.post(f"/models/{second_version}/activate", headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["activated"]["version"] == second_version
    after = predict(client, [BOSTON_ROW]).get_json()
    assert after["model"]["version"] == second_version != before["model"]["version"]
    assert bundle.read_active(store, NAME) == second_version
    listing = client.get("/models").get_json()["models"][NAME]
    assert [v["version"] for v in listing if v["active"]] == [second_version]


def test_activation_needs_the_admin_token(client, second_version):
    assert client.post(f"/models/{second_version}/activate").status_code == 401
    assert client.post(f"/models/{second_version}/activate",
                       headers={"Authorization": "Bearer nope"}).status_code == 403


def test_unknown_version_is_404(client):
    response = client.post("/models/20000101T000000Z/activate", headers=ADMIN)
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"


@pytest.fixture
def verified_client(settings, keys, make_app):
    return make_app(dict(settings, MODEL_VERIFY_KEY=str(keys["trusted_public"]))).test_client()


@pytest.mark.parametrize("tamper", ["flipped-byte", "unsigned", "other-key", "edited-metric"])
def test_tampered_version_is_refused_and_the_old_one_keeps_serving(verified_client, store, keys, tamper):
    old = predict(verified_client, [BOSTON_ROW]).get_json()["model"]["version"]
    extra = {"signing_key": keys["other"]} if tamper == "other-key" else {}
    if tamper == "unsigned":
        extra = {}
    elif tamper != "other-key":
        extra = {"signing_key": keys["trusted"]}
    path = train_into(store, "--max-neighbors", "2", **extra)
    if tamper == "flipped-byte":
        data = bytearray((path / bundle.MODEL_FILE).read_bytes())
        data[-20] ^= 0x01
        (path / bundle.MODEL_FILE).write_bytes(bytes(data))
    elif tamper == "edited-metric":
        text = (path / bundle.INFO_FILE).read_text().replace("r2: 0.", "r2: 0.99", 1)
        (path / bundle.INFO_FILE).write_text(text)
    response = verified_client.post(f"/models/{path.name}/activate", headers=ADMIN)
    assert response.status_code == 409
    problem = response.get_json()
    assert problem["title"] == "Model refused" and path.name in problem["detail"]
    assert bundle.read_active(store, NAME) == old
    assert predict(verified_client, [BOSTON_ROW]).get_json()["model"]["version"] == old
    listing = {v["version"]: v for v in verified_client.get("/models").get_json()["models"][NAME]}
    assert listing[path.name]["verified"] is False


def test_a_tampered_pointer_target_is_not_loaded_by_a_running_worker(verified_client, store, keys):
    """Someone moves ACTIVE to a bad version behind the service's back: it keeps the old model."""
    old = predict(verified_client, [BOSTON_ROW]).get_json()["model"]["version"]
    path = train_into(store, "--max-neighbors", "2")  # unsigned
    bundle.write_active(store, NAME, path.name)
    assert predict(verified_client, [BOSTON_ROW]).get_json()["model"]["version"] == old
    ready = verified_client.get("/ready").get_json()
    assert "unsigned" in ready["models"][NAME]["error"]
    assert "model_load_failures_total" in verified_client.get("/metrics").get_data(as_text=True)


def test_learn_activate_reaches_a_running_app(client, store):
    path = train_into(store, "--max-neighbors", "2", "--activate")
    assert predict(client, [BOSTON_ROW]).get_json()["model"]["version"] == path.name


def test_dry_run_compares_the_candidate_on_logged_traffic(client, store, second_version):
    X_test, _ = holdout_rows()
    rows = X_test.tolist()
    for start in range(0, 50, 10):
        assert predict(client, rows[start:start + 10]).status_code == 200
    active = bundle.read_active(store, NAME)
    response = client.post(f"/models/{second_version}/activate?dry_run=true&tolerance=0.5", headers=ADMIN)
    assert response.status_code == 200
    report = response.get_json()["shadow"]
    assert report["n_requests_replayed"] == 5 and report["n_rows"] == 50
    assert report["active"]["version"] == active and report["candidate"]["version"] == second_version
    assert 0 < report["mean_abs_diff"] <= report["max_abs_diff"]
    assert 0 < report["share_changed"] <= 1
    assert "mse" in report["candidate"]["holdout"] and "mse" in report["active"]["holdout"]
    assert bundle.read_active(store, NAME) == active  # nothing switched


def test_ood_flags_about_the_expected_share_of_held_out_rows(client):
    X_test, _ = holdout_rows(test_size=0.1)
    body = predict(client, X_test.tolist()).get_json()
    flagged = [item["flagged"] for item in body["ood"]]
    # The threshold is the 99th percentile of the training rows' leave-one-out distances:
    # held-out rows from the same data should be flagged rarely (51 rows here).
    assert sum(flagged) <= 3
    far = dict(BOSTON_ROW, CRIM=80.0, RM=3.6, LSTAT=37.0, NOX=0.87, DIS=12.0, TAX=711.0)
    far_body = predict(client, [far]).get_json()
    assert far_body["ood"][0]["flagged"] is True and far_body["ood"][0]["score"] == 1.0


def test_drift_is_reported_for_a_shifted_feature_and_not_for_training_like_rows(client):
    _, X_train = holdout_rows()
    rng = np.random.default_rng(1)
    sample = X_train[rng.choice(len(X_train), 100, replace=False)]
    calm = predict(client, sample.tolist()).get_json()
    assert calm["drift"]["drifted"] == []
    shifted = sample.copy()
    rm = learn.load_data(DATA_DIR / "boston_housing.csv", "MEDV", ("B",)).feature_names.index("RM")
    shifted[:, rm] += 1.0
    report = predict(client, shifted.tolist()).get_json()["drift"]
    assert report["drifted"] == ["RM"]
    assert report["features"]["RM"]["p_value"] < report["per_feature_alpha"]
    small = predict(client, shifted[:10].tolist()).get_json()
    assert "drift" not in small  # below DRIFT_MIN_ROWS


def test_drift_policy_reject_refuses_the_batch(settings, make_app):
    client = make_app(dict(settings, DRIFT_POLICY="reject")).test_client()
    _, X_train = holdout_rows()
    shifted = X_train[:60].copy()
    shifted[:, 5] += 1.5  # RM
    response = predict(client, shifted.tolist())
    assert response.status_code == 400
    problem = response.get_json()
    assert problem["title"] == "Input drift" and "RM" in problem["detail"]
    assert problem["errors"][0]["location"] == "instances/*/RM"
    assert predict(client, X_train[:60].tolist()).status_code == 200


def test_monitoring_drift_over_logged_rows(client):
    _, X_train = holdout_rows()
    shifted = X_train[:80].copy()
    shifted[:, 11] *= 2.0  # LSTAT
    for start in range(0, 80, 20):
        predict(client, shifted[start:start + 20].tolist())
    body = client.get("/monitoring/drift?window=80", headers=ADMIN).get_json()
    assert body["n_rows"] == 80
    assert "LSTAT" in body["report"]["drifted"]


def metric(text: str, series: str) -> float:
    """The value of one series (name with its labels) in a Prometheus exposition; 0 when absent."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " "))


def test_metrics_count_requests_predictions_and_failures(client):
    journaled = 'prediction_log_writes_total{outcome="journaled"}'
    before = client.get("/metrics").get_data(as_text=True)
    predict(client, [BOSTON_ROW, BOSTON_ROW])
    predict(client, [dict(BOSTON_ROW, CHAS=4)])
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'validation_failures_total{reason="invalid-input"}' in text
    assert "predictions_total{" in text and "http_request_duration_seconds_bucket" in text
    assert metric(text, journaled) - metric(before, journaled) == 2
    client.application.extensions["prediction_log"].flush()
    shipped = client.get("/metrics").get_data(as_text=True)
    assert metric(shipped, "prediction_log_shipped_rows_total") - metric(text, "prediction_log_shipped_rows_total") == 2
    assert metric(shipped, "prediction_log_shipping_lag_seconds_count") - metric(
        text, "prediction_log_shipping_lag_seconds_count") == 2
    assert metric(shipped, "prediction_log_journal_backlog_rows") == 0


def test_an_activation_racing_another_one_ends_on_what_the_pointer_names(app, store, second_version, monkeypatch):
    """Regression: activate() read the pointer's stamp after writing it; when another worker replaced the
    pointer in between, this worker recorded the newer stamp but kept its own version for good."""
    registry = app.extensions["model_registry"]
    first = bundle.read_active(store, NAME)
    write_active = bundle.write_active

    def raced(model_dir, name, version):
        written = write_active(model_dir, name, version)
        write_active(model_dir, name, first)  # another worker activates the first version right after
        return written

    monkeypatch.setattr(bundle, "write_active", raced)
    registry.activate(NAME, second_version)
    monkeypatch.undo()
    assert bundle.read_active(store, NAME) == first
    assert registry.get(NAME).version == first


def test_an_unreadable_pointer_is_a_refusal_not_a_crash(app, client, store, monkeypatch):
    """Regression: a pointer the service could not read (written 0600 by another user) failed every predict."""
    served = predict(client, [BOSTON_ROW]).get_json()["model"]["version"]
    real_read_active = bundle.read_active

    def denied(model_dir, name):
        raise PermissionError(13, "Permission denied", str(model_dir / name / bundle.ACTIVE_FILE))

    monkeypatch.setattr(bundle, "read_active", denied)
    (store / NAME / bundle.ACTIVE_FILE).touch()  # the pointer changed: the worker must read it again
    response = predict(client, [BOSTON_ROW])
    assert response.status_code == 200 and response.get_json()["model"]["version"] == served  # still serving
    status = app.extensions["model_registry"].status()[NAME]
    assert "cannot be read" in status["error"]
    monkeypatch.setattr(bundle, "read_active", real_read_active)
    assert predict(client, [BOSTON_ROW]).status_code == 200


def test_a_verified_but_unloadable_version_is_refused_with_409(client, store, keys):
    from .tampering import recompute_hashes, rewrite_info, signed_copy

    active = store / NAME / bundle.read_active(store, NAME)
    broken = signed_copy(active, "29990101T000000Z", keys["trusted"])
    data = (broken / bundle.MODEL_FILE).read_bytes()
    (broken / bundle.MODEL_FILE).write_bytes(data[:100])
    rewrite_info(broken, recompute_hashes(broken, bundle.MODEL_FILE), keys["trusted"])
    response = client.post(f"/models/{broken.name}/activate", headers=ADMIN)
    assert response.status_code == 409
    assert "unloadable" in response.get_json()["detail"]
    assert bundle.read_active(store, NAME) == active.name
