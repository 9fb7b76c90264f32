"""Shadow comparison before a swap: what would the candidate have answered? No Flask imports.

The newest accepted requests the active version answered are replayed
through the candidate; the report says how far its predictions move, next
to both bundles' holdout metrics, so a swap is a decision made on the
traffic the service really sees.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ServiceError
from .registry import ServedModel
from .tensors import as_instances, logged_predictions


def compare(active: ServedModel, candidate: ServedModel, logged: list[tuple[Any, Any]],
            tolerance: float) -> dict[str, Any]:
    """Replay logged (request, response) pairs through ``candidate``; requests of either protocol count."""
    old, new = [], []
    n_requests = n_incompatible = 0
    for request_body, response_body in logged:
        answered = logged_predictions(response_body)
        if answered is None:
            continue
        try:
            batch = candidate.validator.validate(as_instances(request_body, candidate.validator.names))
        except ServiceError:
            n_incompatible += 1  # the candidate's schema refuses what the active model accepted
            continue
        n_requests += 1
        old.extend(answered)
        new.extend(candidate.predict(batch.X).values)
    report: dict[str, Any] = {
        "active": _summary(active),
        "candidate": _summary(candidate),
        "n_requests_replayed": n_requests,
        "n_requests_incompatible": n_incompatible,
        "n_rows": len(new),
        "tolerance": tolerance,
    }
    if not new:
        report["note"] = "no logged accepted requests of the active version to replay"
        return report
    if candidate.task == "classification":
        changed = np.array([a != b for a, b in zip(old, new, strict=True)])
        report["share_changed"] = float(changed.mean())
    else:
        diff = np.abs(np.array(new, dtype=float) - np.array(old, dtype=float))
        report.update(
            mean_abs_diff=float(diff.mean()),
            max_abs_diff=float(diff.max()),
            share_changed=float((diff > tolerance).mean()),
        )
    return report


def _summary(served: ServedModel) -> dict[str, Any]:
    return {
        "version": served.version,
        "sha256": served.sha256,
        "best_params": served.info.get("best_params"),
        "holdout": served.info.get("metrics", {}).get("holdout"),
        "baseline": served.info.get("metrics", {}).get("baseline"),
    }
