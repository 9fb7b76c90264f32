"""A binary classifier's decision threshold, chosen on out-of-fold probabilities by a stated objective.

A row is predicted positive when its probability of the positive class is
at least the threshold (scikit-learn's ``FixedThresholdClassifier`` rule).
The candidates are the midpoints between consecutive distinct out-of-fold
probabilities (and 0, everything positive), so a new row never lands on the
threshold by the accident of sharing a probability with a training row.

Objectives (``--threshold``):

- ``max-f1`` (default): the threshold with the highest F1;
- ``precision-at-recall:R``: the highest precision among thresholds whose
  recall is at least R (screening: catch at least R of the positives);
- ``recall-at-precision:P``: the highest recall among thresholds whose
  precision is at least P;
- ``fixed:T``: T, chosen by someone outside the data.

Ties go to the threshold closest to 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_OBJECTIVE = "max-f1"
OBJECTIVES = ("max-f1", "precision-at-recall", "recall-at-precision", "fixed")


@dataclass(frozen=True)
class Objective:
    kind: str
    target: float | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target:g}"

    def describe(self) -> str:
        if self.kind == "max-f1":
            return "maximum F1"
        return {
            "precision-at-recall": "highest precision with recall >= {:g}",
            "recall-at-precision": "highest recall with precision >= {:g}",
            "fixed": "fixed at {:g}",
        }[self.kind].format(self.target)


def parse_objective(text: str) -> Objective:
    """'max-f1', 'precision-at-recall:0.9', 'recall-at-precision:0.8' or 'fixed:0.3'; ValueError otherwise."""
    kind, _, value = text.strip().partition(":")
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown threshold objective {kind!r} (one of: {', '.join(OBJECTIVES)})")
    if kind == "max-f1":
        if value:
            raise ValueError("max-f1 takes no value")
        return Objective(kind)
    try:
        target = float(value)
    except ValueError:
        raise ValueError(f"{kind} needs a number between 0 and 1, as in {kind}:0.9") from None
    if not 0 <= target <= 1:
        raise ValueError(f"{kind} needs a number between 0 and 1, got {target:g}")
    return Objective(kind, target)


def rates(positive: np.ndarray, proba: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 (positive class) of the rule proba >= t, for each t (0 when undefined)."""
    predicted = proba[None, :] >= thresholds[:, None]
    tp = (predicted & positive[None, :]).sum(axis=1)
    n_predicted = predicted.sum(axis=1)
    n_positive = int(positive.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_predicted > 0, tp / n_predicted, 0.0)
        recall = tp / n_positive if n_positive else np.zeros(len(thresholds))
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    accuracy = ((predicted == positive[None, :]).sum(axis=1)) / len(positive)
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def candidate_thresholds(proba: np.ndarray) -> np.ndarray:
    distinct = np.unique(proba)
    return np.concatenate([[0.0], (distinct[1:] + distinct[:-1]) / 2])


def choose(positive: np.ndarray, proba: np.ndarray, objective: Objective) -> dict[str, Any]:
    """The threshold the objective picks on (positive-class indicator, positive-class probability) pairs.

    Returns the threshold and its precision, recall, F1 and accuracy on
    those pairs; raises ValueError when no threshold meets a constraint.
    """
    if objective.kind == "fixed":
        thresholds = np.array([objective.target])
        index = 0
        measured = rates(positive, proba, thresholds)
    else:
        thresholds = candidate_thresholds(proba)
        measured = rates(positive, proba, thresholds)
        if objective.kind == "max-f1":
            value, feasible = measured["f1"], np.ones(len(thresholds), dtype=bool)
        elif objective.kind == "precision-at-recall":
            value, feasible = measured["precision"], measured["recall"] >= objective.target
        else:
            value, feasible = measured["recall"], measured["precision"] >= objective.target
        if not feasible.any():
            raise ValueError(f"no threshold reaches {objective.describe().split(' with ')[-1]} "
                             "on the out-of-fold probabilities")
        best = value[feasible].max()
        tied = np.flatnonzero(feasible & (value == best))
        index = int(tied[np.argmin(np.abs(thresholds[tied] - 0.5))])
    return {
        "threshold": float(thresholds[index]),
        **{name: float(values[index]) for name, values in measured.items()},
    }


def default_rule(positive: np.ndarray, proba: np.ndarray, positive_index: int) -> dict[str, float]:
    """The same figures for scikit-learn's own rule: the most probable class (a tie goes to the first class)."""
    predicted = np.argmax(proba, axis=1) == positive_index
    tp = int((predicted & positive).sum())
    precision = tp / predicted.sum() if predicted.any() else 0.0
    recall = tp / positive.sum() if positive.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "accuracy": float(np.mean(predicted == positive))}
