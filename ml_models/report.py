"""What the chosen model is worth: holdout metrics with bootstrap intervals, calibration, learning curve.

Everything here measures; nothing chooses. The holdout is small (51 rows for
the Boston data, 31 for the heart data), so every holdout figure comes with a
seeded percentile-bootstrap 95 % interval, for the model and for the
baseline alike: the rows are resampled with replacement ``N_RESAMPLES`` times
and the metric recomputed on each resample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

N_RESAMPLES = 2000
LEVEL = 0.95
N_RELIABILITY_BINS = 10
N_LEARNING_SIZES = 8

REGRESSION_KEYS = ("mae", "mse", "rmse", "r2")
CLASSIFICATION_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")


# --- point metrics -----------------------------------------------------------------


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(y_true, y_pred))
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": float(r2_score(y_true, y_pred)),
    }


def classification_metrics(y_true, y_pred, proba, classes, positive) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 of the positive class (macro for more than two), ROC AUC, Brier score."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    classes = list(classes)
    binary = len(classes) == 2
    kwargs: dict[str, Any] = {"average": "binary" if binary else "macro", "zero_division": 0}
    if binary:
        kwargs["pos_label"] = positive
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, **kwargs)),
        "recall": float(recall_score(y_true, y_pred, **kwargs)),
        "f1": float(f1_score(y_true, y_pred, **kwargs)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }
    if binary:
        p_positive = proba[:, classes.index(positive)]
        metrics["roc_auc"] = float(roc_auc_score(y_true == positive, p_positive))
        metrics["brier"] = brier(y_true == positive, p_positive)
    else:
        metrics["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    return metrics


def brier(positive: np.ndarray, p_positive: np.ndarray) -> float:
    """Mean squared difference between the positive-class probability and the outcome (0 is perfect)."""
    return float(np.mean((p_positive - positive) ** 2))


# --- bootstrap intervals ---------------------------------------------------------------


def resample_indices(n_rows: int, seed: int, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_rows, size=(n_resamples, n_rows))


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def regression_resamples(y: np.ndarray, pred: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
    y_b, err = y[indices], pred[indices] - y[indices]
    mse = np.mean(err**2, axis=1)
    total = np.sum((y_b - y_b.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1 - np.sum(err**2, axis=1) / total, np.nan)
    return {"mae": np.mean(np.abs(err), axis=1), "mse": mse, "rmse": np.sqrt(mse), "r2": r2}


def classification_resamples(y: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes, positive,
                             indices: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric on each resample, from per-resample confusion counts (and pair counts for ROC AUC)."""
    classes = list(classes)
    n_classes = len(classes)
    true_code = np.searchsorted(classes, y)
    pred_code = np.searchsorted(classes, pred)
    n_resamples = len(indices)
    confusion = np.zeros((n_resamples, n_classes * n_classes))
    rows = np.repeat(np.arange(n_resamples), indices.shape[1])
    np.add.at(confusion, (rows, (true_code[indices] * n_classes + pred_code[indices]).ravel()), 1)
    confusion = confusion.reshape(n_resamples, n_classes, n_classes)
    diagonal = np.diagonal(confusion, axis1=1, axis2=2)
    n_true, n_pred = confusion.sum(axis=2), confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, diagonal / n_pred, 0.0)
        recall = np.where(n_true > 0, diagonal / n_true, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    out = {"accuracy": diagonal.sum(axis=1) / indices.shape[1]}
    if n_classes == 2:
        k = classes.index(positive)
        out.update(precision=precision[:, k], recall=recall[:, k], f1=f1[:, k])
        p_positive = proba[:, k]
        is_positive = y == positive
        out["roc_auc"] = resampled_roc_auc(is_positive, p_positive, indices)
        out["brier"] = np.mean((p_positive[indices] - is_positive[indices]) ** 2, axis=1)
    else:
        # Macro averages over the classes present in each resample.
        present = n_true > 0
        out.update(precision=precision.mean(axis=1), recall=(recall * present).sum(axis=1) / present.sum(axis=1),
                   f1=f1.mean(axis=1))
    return out


def resampled_roc_auc(positive: np.ndarray, scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """ROC AUC on each resample (NaN where a resample holds one class only), via pair counts."""
    counts = np.zeros((len(indices), len(positive)))
    np.add.at(counts, (np.repeat(np.arange(len(indices)), indices.shape[1]), indices.ravel()), 1)
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    counts_pos, counts_neg = counts[:, positive], counts[:, ~positive]
    pairs = counts_pos.sum(axis=1) * counts_neg.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, np.einsum("bi,ij,bj->b", counts_pos, wins, counts_neg) / pairs, np.nan)


def intervals(resampled: dict[str, np.ndarray]) -> dict[str, list[float] | None]:
    return {name: percentile_interval(values) for name, values in resampled.items()}


# --- the holdout ---------------------------------------------------------------------


def evaluate(task: str, model, X_train, y_train, X_test, y_test, seed: int,
             positive: int | None = None) -> dict[str, Any]:
    """Holdout metrics of the model and of a baseline fitted on the training part, with bootstrap intervals.

    The baseline predicts the training mean (regression) or the training
    class frequencies, hence the majority class (classification).
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor

    indices = resample_indices(len(y_test), seed)
    bootstrap = {"method": "percentile", "level": LEVEL, "resamples": N_RESAMPLES, "seed": seed}
    if task == "regression":
        baseline = DummyRegressor(strategy="mean").fit(X_train, y_train)
        pred, base_pred = model.predict(X_test), baseline.predict(X_test)
        return {
            "n_rows": len(y_test),
            "holdout": regression_metrics(y_test, pred),
            "baseline": {"strategy": "mean", **regression_metrics(y_test, base_pred)},
            "intervals": {
                **bootstrap,
                "model": intervals(regression_resamples(y_test, pred, indices)),
                "baseline": intervals(regression_resamples(y_test, base_pred, indices)),
            },
        }
    classes = model.classes_.tolist()
    baseline = DummyClassifier(strategy="prior").fit(X_train, y_train)
    outputs = {
        "model": (model.predict(X_test), model.predict_proba(X_test)),
        "baseline": (baseline.predict(X_test), baseline.predict_proba(X_test)),
    }
    metrics = {name: classification_metrics(y_test, pred, proba, classes, positive)
               for name, (pred, proba) in outputs.items()}
    resampled = {name: classification_resamples(y_test, pred, proba, classes, positive, indices)
                 for name, (pred, proba) in outputs.items()}
    n_single_class = int(np.isnan(resampled["model"].get("roc_auc", np.zeros(1))).sum())
    return {
        "n_rows": len(y_test),
        "holdout": metrics["model"],
        "baseline": {"strategy": "prior", **metrics["baseline"]},
        "positive_class": positive,
        "intervals": {
            **bootstrap,
            **({"resamples_with_one_class": n_single_class} if n_single_class else {}),
            "model": intervals(resampled["model"]),
            "baseline": intervals(resampled["baseline"]),
        },
    }


# --- calibration -------------------------------------------------------------------------


def reliability(positive: np.ndarray, p_positive: np.ndarray, n_bins: int = N_RELIABILITY_BINS) -> dict[str, list]:
    """Equal-width probability bins: mean predicted probability, observed frequency, row count (empty bins left out)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, p_positive, side="right") - 1, 0, n_bins - 1)
    table: dict[str, list] = {"predicted": [], "observed": [], "count": []}
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            table["predicted"].append(float(p_positive[mask].mean()))
            table["observed"].append(float(positive[mask].mean()))
            table["count"].append(int(mask.sum()))
    return table


def calibration(cv_positive: np.ndarray, cv_proba: np.ndarray, holdout_positive: np.ndarray,
                holdout_proba: np.ndarray, prior: float) -> dict[str, Any]:
    """Brier scores (CV out-of-fold, holdout, and the prior as a baseline) and the reliability tables."""
    return {
        "brier_cv": brier(cv_positive, cv_proba),
        "brier_holdout": brier(holdout_positive, holdout_proba),
        "brier_prior_cv": brier(cv_positive, np.full(len(cv_proba), prior)),
        "n_cv_predictions": len(cv_proba),
        "n_holdout_rows": len(holdout_proba),
        "reliability_cv": reliability(cv_positive, cv_proba),
        "reliability_holdout": reliability(holdout_positive, holdout_proba),
    }


# --- learning curve ------------------------------------------------------------------------


def learning_curve(estimator, X: np.ndarray, y: np.ndarray, folds, scorer: str, min_rows: int,
                   seed: int) -> dict[str, Any]:
    """CV and training score against the number of training rows, at the chosen hyperparameters.

    ``folds`` is one repeat of the search's folds; each training size is a
    seeded random subset of each training fold.
    """
    from sklearn.model_selection import learning_curve as sk_learning_curve

    largest = min(len(train) for train, _ in folds)
    smallest = min(max(min_rows, math.ceil(0.1 * largest)), largest)
    sizes = np.unique(np.linspace(smallest, largest, N_LEARNING_SIZES).round().astype(int))
    train_sizes, train_scores, cv_scores = sk_learning_curve(
        estimator, X, y, train_sizes=sizes, cv=folds, scoring=scorer, shuffle=True, random_state=seed
    )
    return {
        "train_sizes": [int(n) for n in train_sizes],
        "train_mean": train_scores.mean(axis=1).tolist(),
        "train_std": train_scores.std(axis=1).tolist(),
        "cv_mean": cv_scores.mean(axis=1).tolist(),
        "cv_std": cv_scores.std(axis=1).tolist(),
        "n_folds": len(folds),
    }


# --- the printed table ---------------------------------------------------------------------


def _size(params: dict[str, Any]) -> str:
    return f"k={params['n_neighbors']}" if params["family"] == "knn" else f"radius={params['radius']:g}"


def _setting(params: dict[str, Any]) -> str:
    return f"{params['scaler']}, p={params['p']}, {params['weights']}"


def _interval(bounds: list[float] | None) -> str:
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "[n/a]"


def render_summary(summary: dict[str, Any]) -> str:
    info = summary["info"]
    search_info = info["search"]
    metrics = info["metrics"]
    label = search_info["metric"]
    n_folds = search_info["cv_folds"] * search_info["cv_repeats"]
    lines = [
        f"task        {info['task']} ({info['estimator']}), target {info['target']}, "
        f"{len(info['features'])} features",
        f"data        {info['data']['file']}: {info['data']['n_train']} train / {info['data']['n_test']} holdout rows"
        + (f", dropped {', '.join(info['data']['dropped'])}" if info["data"]["dropped"] else ""),
        f"search      {search_info['n_candidates']} candidates ({', '.join(search_info['families'])}; "
        f"k 1..{search_info['n_neighbors'][1]}) x {n_folds} folds "
        f"({search_info['cv_folds']}-fold CV repeated {search_info['cv_repeats']}x) in {summary['seconds']:.1f} s",
        "",
        f"CV {label} (mean ± std over {n_folds} folds; difference to the chosen one paired over the same folds)",
    ]
    for family, record in search_info["family_results"].items():
        for role in ("winner", "runner_up"):
            entry = record[role]
            if entry is None:
                continue
            difference = entry["difference_to_chosen"]
            versus = "chosen" if entry["params"] == info["best_params"] else \
                f"{difference['mean']:+.4f} ± {difference['std']:.4f}"
            extra = ""
            if "mean_neighbours" in entry:
                extra = f"  ({entry['mean_neighbours']:.0f} neighbours, {100 * entry['outlier_share']:.1f} % none)"
            lines.append(f"  {family if role == 'winner' else '':<7s}{role.replace('_', '-'):<10s}"
                         f"{_size(entry['params']):<14s}{_setting(entry['params']):<26s}"
                         f"{entry['cv_score']:.4f} ± {entry['cv_score_std']:.4f}   {versus}{extra}")
    params = info["best_params"]
    lines += [
        f"chosen      {params['family']}: {_size(params)}, {_setting(params)}",
        f"CV {label:<8s} {search_info['cv_score']:.4f} (± {search_info['cv_score_std']:.4f} over {n_folds} folds, "
        f"± {search_info['cv_repeat_std']:.4f} between the {search_info['cv_repeats']} repeats' means)",
    ]
    decision = info.get("decision_threshold")
    if decision:
        cv, default = decision["cv"], decision["cv_most_probable_class"]
        lines += [
            f"threshold   {decision['threshold']:.4f} for class {decision['positive_class']} "
            f"({decision['description']}, on {decision['n_cv_predictions']} out-of-fold probabilities)",
            f"            CV precision {cv['precision']:.3f}, recall {cv['recall']:.3f}, F1 {cv['f1']:.3f}; "
            f"most probable class instead: {default['precision']:.3f}, {default['recall']:.3f}, {default['f1']:.3f}",
        ]
    calibration_info = info.get("calibration")
    if calibration_info:
        lines.append(f"calibration Brier {calibration_info['brier_cv']:.4f} out-of-fold "
                     f"(the prior alone: {calibration_info['brier_prior_cv']:.4f}), "
                     f"{calibration_info['brier_holdout']:.4f} holdout")
    holdout, baseline = metrics["holdout"], metrics["baseline"]
    bounds = metrics["intervals"]
    lines += [
        "",
        f"holdout: {metrics['n_rows']} rows; {100 * bounds['level']:.0f} % bootstrap intervals "
        f"({bounds['resamples']} resamples, seed {bounds['seed']})",
        f"{'':<12s}{'model':>9s}  {'interval':<18s}{'baseline':>9s}  interval",
    ]
    keys = REGRESSION_KEYS if info["task"] == "regression" else tuple(k for k in CLASSIFICATION_KEYS if k in holdout)
    for key in keys:
        lines.append(f"{key.upper():<12s}{holdout[key]:>9.4f}  {_interval(bounds['model'].get(key)):<18s}"
                     f"{baseline[key]:>9.4f}  {_interval(bounds['baseline'].get(key))}")
    if info["task"] == "classification":
        lines.append(f"confusion   {holdout['confusion_matrix']} (rows: true {info['classes']}, columns: predicted)")
    lines += [
        "",
        f"bundle      {summary['path']}",
        f"version     {info['version']}" + (" (active)" if summary["activated"] else " (not active; use --activate)"),
        f"model.pkl   md5 {info['files']['model.pkl']['md5']}",
        "signature   " + ("Ed25519, model_info.yaml.sig" if summary["signed"]
                          else "none: unsigned bundle (set MODEL_SIGNING_KEY to sign)"),
    ]
    return "\n".join(lines)
