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


def ood_scores(train_distances: np.ndarray, mean_distances: np.ndarray) -> np.ndarray:
    """Quantile of each row's mean neighbour distance among the training rows' (sorted) ones."""
    return np.searchsorted(train_distances, mean_distances, side="right") / len(train_distances)


def ks_report(
    reference: np.ndarray, X: np.ndarray, names: list[str], alpha: float
) -> dict[str, Any]:
    """Per-feature KS test of the rows in X against the reference rows."""
    per_feature_alpha = alpha / len(names)
    features = {}
    drifted = []
    for col, name in enumerate(names):
        result = stats.ks_2samp(X[:, col], reference[:, col])
        is_drifted = bool(result.pvalue < per_feature_alpha)
        features[name] = {
            "statistic": round(float(result.statistic), 6),
            "p_value": float(result.pvalue),
            "drifted": is_drifted,
        }
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
