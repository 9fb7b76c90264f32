"""POST /predict and POST /models/<name>/predict: parse, validate, predict, answer.

The log row is written by the request cycle after this returns, before the
answer leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g
from flask_restful import Resource

from .. import metrics
from ..errors import DriftRejected
from ..registry import Prediction, ServedModel
from ..validation import Batch
from .common import json_response, read_json_body, registry, settings


@dataclass
class Outcome:
    """What the predict path made of a request: the validated batch, the prediction, the drift report."""

    batch: Batch
    prediction: Prediction
    drift: dict | None


def predict_with(served: ServedModel):
    """The whole predict path for one model; the resources differ only in which model."""
    g.served = served
    outcome = run_prediction(served, read_json_body())
    batch, prediction, drift = outcome.batch, outcome.prediction, outcome.drift
    answer = {
        "request_id": g.request_id,
        "model": served.identity,
        "predictions": prediction.values,
        "warnings": batch.warnings,
        "ood": prediction.ood,
    }
    if prediction.probabilities is not None:
        answer["probabilities"] = prediction.probabilities
    if drift is not None:
        answer["drift"] = drift
    return json_response(answer)


def run_prediction(served: ServedModel, payload: Any) -> Outcome:
    """Validate, test for drift, predict and count: the one predict path both protocols take."""
    batch = served.validator.validate(payload)
    g.n_rows = batch.n_rows
    drift = batch_drift(served, batch)
    prediction = served.predict(batch.X)
    metrics.PREDICTIONS.labels(served.name, served.version).inc(batch.n_rows)
    n_flagged = sum(1 for item in prediction.ood if item["flagged"])
    g.n_ood_flagged = n_flagged if prediction.ood else None
    if n_flagged:
        metrics.OOD_FLAGGED.labels(served.name, served.version).inc(n_flagged)
    return Outcome(batch, prediction, drift)


def batch_drift(served: ServedModel, batch: Batch) -> dict | None:
    """KS report for a large enough batch; raises under DRIFT_POLICY=reject when a feature drifted."""
    config = settings()
    if batch.n_rows < config.DRIFT_MIN_ROWS or served.reference is None:
        return None
    report = served.drift_report(batch.X, config.DRIFT_ALPHA)
    if report["drifted"] and config.DRIFT_POLICY == "reject":
        raise DriftRejected(
            f"The batch differs from the training data in {', '.join(report['drifted'])} (KS test).",
            [{"location": f"instances/*/{name}",
              "message": f"drifted: KS statistic {report['features'][name]['statistic']}, "
                         f"p={report['features'][name]['p_value']:.2e} < {report['per_feature_alpha']:.2e}"}
             for name in report["drifted"]],
            drift=report,
        )
    return report


class Predict(Resource):
    def post(self):
        """Predict with the default model (MODEL_NAME)."""
        return predict_with(registry().get())


class ModelPredict(Resource):
    def post(self, name: str):
        """Predict with the named model's active version."""
        return predict_with(registry().get(name))
