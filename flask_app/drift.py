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

import itertools
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import stats

from .errors import ServiceError
from .tensors import as_instances
from .validation import Validator


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
    """KS statistic (exactly ``scipy.stats.ks_2samp``'s) and an asymptotic two-sided p-value per column.

    The statistic is exactly scipy's; the p-value is an asymptotic one (see
    below) close to what ks_2samp gives, exact or asymptotic, for the batch
    sizes the drift report runs on (DRIFT_MIN_ROWS and up).
    """
    n, m = X.shape[0], reference.shape[0]
    # Both samples in one sort per column (all columns at once): walking the merged order, the two
    # empirical CDFs are running counts; their gap is compared only after the last of equal values.
    stacked = np.concatenate([X, reference])
    order = np.argsort(stacked, axis=0, kind="stable")
    values = np.take_along_axis(stacked, order, axis=0)
    from_sample = order < n
    gap = np.cumsum(from_sample, axis=0) / n - np.cumsum(~from_sample, axis=0) / m
    last_of_equal = np.ones(values.shape, dtype=bool)
    last_of_equal[:-1] = values[:-1] != values[1:]
    statistic = np.abs(np.where(last_of_equal, gap, 0.0)).max(axis=0)
    effective_n = n * m / (n + m)
    # Stephens' approximation of the Kolmogorov distribution for finite samples: within 0.02 of
    # scipy's kstwo p-value everywhere, within 35 % of it where decisions are made (p < 0.01),
    # and a thousand times cheaper than kstwo's exact series at the sizes served here.
    root = np.sqrt(effective_n)
    p_value = np.clip(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * statistic), 0.0, 1.0)
    return statistic, p_value


def window_matrix(bodies: Iterable[str], validator: Validator, n_rows: int) -> np.ndarray:
    """The newest ``n_rows`` data rows of logged request bodies (JSON text, newest first), as one matrix.

    Bodies of either protocol count (V2 tensors are translated as on the way in); a body the
    validator refuses now (a schema that changed) is passed over.
    """
    parts, total = [], 0
    for text in bodies:
        try:
            X = validator.validate(as_instances(json.loads(text), validator.names)).X
        except (ValueError, ServiceError):
            continue
        parts.append(X[: n_rows - total])
        total += len(parts[-1])
        if total >= n_rows:
            break
    return np.vstack(parts) if parts else np.empty((0, validator.n_features))


def histograms(reference: np.ndarray, X: np.ndarray, features: list[dict[str, Any]],
               n_bins: int = 20) -> list[dict[str, Any]]:
    """Per feature, the training and the recent distribution over the same bins, as shares of their rows.

    Categorical features (``allowed`` values) get one bin per value; numeric
    ones ``n_bins`` equal bins over the range both samples span.
    """
    result = []
    for col, feature in enumerate(features):
        train, recent = reference[:, col], X[:, col]
        if feature.get("allowed"):
            values = sorted({*map(float, feature["allowed"]), *np.unique(recent).tolist()})
            labels = [_number(value) for value in values]
            train_counts = np.array([(train == value).sum() for value in values])
            recent_counts = np.array([(recent == value).sum() for value in values])
            edges = None
        else:
            low, high = float(min(train.min(), recent.min())), float(max(train.max(), recent.max()))
            if high <= low:
                high = low + 1.0
            edges = np.linspace(low, high, n_bins + 1)
            train_counts, _ = np.histogram(train, edges)
            recent_counts, _ = np.histogram(recent, edges)
            labels = [f"{_number(a)} – {_number(b)}" for a, b in itertools.pairwise(edges)]
        result.append({
            "name": feature["name"],
            "labels": labels,
            "edges": None if edges is None else edges.tolist(),
            "training": (train_counts / max(len(train), 1)).tolist(),
            "recent": (recent_counts / max(len(recent), 1)).tolist(),
        })
    return result


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
