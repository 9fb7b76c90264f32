"""Holdout figures with bootstrap intervals, and the decision threshold: measured, seeded, stated."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from ml_models import report, threshold


def regression_data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([2.0, -1.0, 0.5]) + rng.normal(size=n)


def classification_data(seed=0, n=80):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, (X[:, 0] + rng.normal(scale=1.0, size=n) > 0.3).astype(int)


# --- bootstrap ---------------------------------------------------------------------------


def test_bootstrap_intervals_are_seeded():
    X, y = regression_data()
    model = Ridge().fit(X[:40], y[:40])
    first = report.evaluate("regression", model, X[:40], y[:40], X[40:], y[40:], seed=42)
    again = report.evaluate("regression", model, X[:40], y[:40], X[40:], y[40:], seed=42)
    other = report.evaluate("regression", model, X[:40], y[:40], X[40:], y[40:], seed=7)
    assert first["intervals"] == again["intervals"]
    assert first["intervals"]["model"] != other["intervals"]["model"]
    assert first["intervals"]["seed"] == 42 and first["intervals"]["resamples"] == report.N_RESAMPLES
    assert first["n_rows"] == 20
    for name in report.REGRESSION_KEYS:
        low, high = first["intervals"]["model"][name]
        assert low < first["holdout"][name] < high, name
        low, high = first["intervals"]["baseline"][name]
        assert low <= first["baseline"][name] <= high, name


def test_resampled_regression_metrics_are_scikit_learns():
    X, y = regression_data(1)
    pred = Ridge().fit(X, y).predict(X)
    indices = report.resample_indices(len(y), seed=3, n_resamples=25)
    resampled = report.regression_resamples(y, pred, indices)
    for b, rows in enumerate(indices):
        assert resampled["mae"][b] == pytest.approx(mean_absolute_error(y[rows], pred[rows]), rel=1e-12)
        assert resampled["r2"][b] == pytest.approx(r2_score(y[rows], pred[rows]), rel=1e-12)


def test_resampled_classification_metrics_are_scikit_learns():
    X, y = classification_data(2)
    y = y + 3  # labels 3 and 4; 4 is positive
    model = LogisticRegression().fit(X, y)
    proba = np.round(model.predict_proba(X), 1)  # coarse: ties in the scores
    pred = model.classes_[(proba[:, 1] >= 0.4).astype(int)]
    indices = report.resample_indices(len(y), seed=4, n_resamples=25)
    resampled = report.classification_resamples(y, pred, proba, [3, 4], 4, indices)
    for b, rows in enumerate(indices):
        yt, yp = y[rows], pred[rows]
        assert resampled["accuracy"][b] == pytest.approx(accuracy_score(yt, yp), rel=1e-12)
        assert resampled["precision"][b] == pytest.approx(precision_score(yt, yp, pos_label=4, zero_division=0))
        assert resampled["recall"][b] == pytest.approx(recall_score(yt, yp, pos_label=4, zero_division=0))
        assert resampled["f1"][b] == pytest.approx(f1_score(yt, yp, pos_label=4, zero_division=0))
        assert resampled["roc_auc"][b] == pytest.approx(roc_auc_score(yt == 4, proba[rows, 1]), rel=1e-12)
        assert resampled["brier"][b] == pytest.approx(np.mean((proba[rows, 1] - (yt == 4)) ** 2), rel=1e-12)


def test_classifier_holdout_has_intervals_and_a_prior_baseline():
    X, y = classification_data(3, n=120)
    model = LogisticRegression().fit(X[:90], y[:90])
    result = report.evaluate("classification", model, X[:90], y[:90], X[90:], y[90:], seed=1, positive=1)
    assert result["baseline"]["strategy"] == "prior"
    prior = DummyClassifier(strategy="prior").fit(X[:90], y[:90]).predict_proba(X[90:])[:, 1]
    assert result["baseline"]["brier"] == pytest.approx(np.mean((prior - (y[90:] == 1)) ** 2))
    assert result["baseline"]["roc_auc"] == 0.5
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc", "brier"):
        low, high = result["intervals"]["model"][name]
        assert 0 <= low <= result["holdout"][name] <= high <= 1, name


# --- the threshold ------------------------------------------------------------------------


def scores(seed=0, n=300):
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.45
    proba = np.clip(0.5 + 0.25 * (positive - 0.5) * 2 + rng.normal(scale=0.2, size=n), 0, 1).round(2)
    return positive, proba


def brute_force(positive, proba):
    """Every distinct rule proba >= t (t an observed probability): (t, precision, recall, f1)."""
    out = []
    for t in np.unique(proba):
        predicted = proba >= t
        if not predicted.any():
            continue
        out.append((t, precision_score(positive, predicted, zero_division=0), recall_score(positive, predicted),
                    f1_score(positive, predicted)))
    return out


def test_max_f1_finds_the_best_threshold():
    positive, proba = scores()
    chosen = threshold.choose(positive, proba, threshold.parse_objective("max-f1"))
    best_f1 = max(f1 for _, _, _, f1 in brute_force(positive, proba))
    assert chosen["f1"] == pytest.approx(best_f1)
    assert chosen["f1"] == pytest.approx(f1_score(positive, proba >= chosen["threshold"]))
    # The threshold sits between two observed probabilities, never on one.
    assert chosen["threshold"] not in set(proba.tolist())


def test_precision_at_recall_keeps_the_recall_and_maximises_precision():
    positive, proba = scores(1)
    chosen = threshold.choose(positive, proba, threshold.parse_objective("precision-at-recall:0.9"))
    assert chosen["recall"] >= 0.9
    feasible = [p for _, p, r, _ in brute_force(positive, proba) if r >= 0.9]
    assert chosen["precision"] == pytest.approx(max(feasible))
    assert recall_score(positive, proba >= chosen["threshold"]) == pytest.approx(chosen["recall"])


def test_recall_at_precision_and_fixed():
    positive, proba = scores(2)
    chosen = threshold.choose(positive, proba, threshold.parse_objective("recall-at-precision:0.8"))
    assert chosen["precision"] >= 0.8
    feasible = [r for _, p, r, _ in brute_force(positive, proba) if p >= 0.8]
    assert chosen["recall"] == pytest.approx(max(feasible))
    fixed = threshold.choose(positive, proba, threshold.parse_objective("fixed:0.35"))
    assert fixed["threshold"] == 0.35
    assert fixed["precision"] == pytest.approx(precision_score(positive, proba >= 0.35))


def test_an_unreachable_constraint_is_an_error():
    positive = np.array([True, False, True, False])
    proba = np.array([0.2, 0.9, 0.3, 0.8])  # ranked backwards: precision 1.0 is out of reach
    with pytest.raises(ValueError, match="precision >= 1"):
        threshold.choose(positive, proba, threshold.parse_objective("recall-at-precision:1"))


@pytest.mark.parametrize("text", ["best", "max-f1:0.3", "precision-at-recall", "precision-at-recall:1.5",
                                  "fixed:x", "recall-at-precision:-0.1"])
def test_bad_objectives_are_refused(text):
    with pytest.raises(ValueError):
        threshold.parse_objective(text)


def test_most_probable_class_rule_breaks_ties_towards_the_first_class():
    positive = np.array([True, True, False])
    proba = np.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    assert threshold.default_rule(positive, proba, positive_index=1)["recall"] == 0.5
    assert threshold.default_rule(~positive, proba, positive_index=0)["recall"] == 1.0
