"""Is the input like the training data? Per row and per batch. No Flask imports.

Per row: a KNN knows how far a row lies from its neighbours. The bundle
stores, for every training row, its mean distance to its k neighbours (in the
scaled space, leaving the row itself out). A request row's out-of-distribution
score is the share of training rows that lie closer to their neighbours than
it does; above OOD_QUANTILE (0.99) it is flagged, so about 1 % of rows drawn
from the training distribution are flagged by design.

Per batch: a two-sample Kolmogorov-Smirnov test per feature against the
training features. With m features tested at once, each test uses
alpha / m (Bonferroni), so a batch drawn from the training distribution
raises a false alarm with probability at most alpha (default 0.01, one
batch in a hundred) whatever the number of features. KS is conservative on
discrete features (ties), which only lowers that rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

EXACT_MAX_PAIRS = 20_000


def ood_scores(train_distances: np.ndarray, mean_distances: np.ndarray) -> np.ndarray:
    """Quantile of each row's mean neighbour distance among the training rows' (sorted) ones."""
    return np.searchsorted(train_distances, mean_distances, side="right") / len(train_distances)


def ks_report(
    reference: np.ndarray, X: np.ndarray, names: list[str], alpha: float
) -> dict[str, Any]:
    """Per-feature two-sample KS test of the rows in X against the reference rows."""
    per_feature_alpha = alpha / len(names)
    statistics, p_values = ks_two_sample(reference, X)
    features = {}
    drifted = []
    for name, statistic, p_value in zip(names, statistics.tolist(), p_values.tolist(), strict=True):
        is_drifted = p_value < per_feature_alpha
        features[name] = {"statistic": round(statistic, 6), "p_value": p_value, "drifted": is_drifted}
        if is_drifted:
            drifted.append(name)
    return {
        "test": "two-sample Kolmogorov-Smirnov per feature",
        "alpha": alpha,
        "per_feature_alpha": per_feature_alpha,
        "n_rows": int(X.shape[0]),
        "n_reference_rows": int(reference.shape[0]),
        "drifted": drifted,
        "features": features,
    }


def ks_two_sample(reference: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and two-sided p-value per column, as ``scipy.stats.ks_2samp`` computes them.

    Small samples use scipy's exact p-value column by column; larger ones get
    the statistic for all columns at once and scipy's asymptotic p-value
    (the ``kstwo`` distribution), which is what ks_2samp(method="asymp") does.
    """
    n, m = X.shape[0], reference.shape[0]
    if n * m <= EXACT_MAX_PAIRS:
        results = [stats.ks_2samp(X[:, col], reference[:, col], method="exact") for col in range(X.shape[1])]
        return np.array([r.statistic for r in results]), np.array([r.pvalue for r in results])
    statistic = np.empty(X.shape[1])
    for col in range(X.shape[1]):
        a, b = np.sort(X[:, col]), np.sort(reference[:, col])
        points = np.concatenate([a, b])
        cdf_a = np.searchsorted(a, points, side="right") / n
        cdf_b = np.searchsorted(b, points, side="right") / m
        statistic[col] = np.abs(cdf_a - cdf_b).max()
    larger, smaller = max(n, m), min(n, m)
    effective_n = np.round(larger * smaller / (larger + smaller))
    p_value = np.clip(stats.kstwo.sf(statistic, effective_n), 0.0, 1.0)
    return statistic, p_value
