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
