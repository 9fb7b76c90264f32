"""Prometheus metrics, added up across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (start_server.sh and the image set it),
every worker writes its figures there and /metrics merges them; without it
the figures are this process's own.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("http_requests_total", "HTTP requests by endpoint, method and status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("http_request_duration_seconds", "Time to answer, by endpoint", ["endpoint"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
PREDICTIONS = Counter("predictions_total", "Rows predicted, by model and version", ["model", "version"])
OOD_FLAGGED = Counter("ood_flagged_rows_total", "Rows flagged as out of distribution", ["model", "version"])
VALIDATION_FAILURES = Counter("validation_failures_total", "Rejected predict requests by reason", ["reason"])
MODEL_LOAD_FAILURES = Counter("model_load_failures_total", "Bundles refused at load, by verdict",
                              ["model", "verdict"])
LOG_WRITES = Counter("prediction_log_writes_total", "Log rows by where they went", ["outcome"])
SPOOL_ROWS = Gauge("prediction_log_spool_rows", "Log rows waiting in the spool for the database",
                   multiprocess_mode="mostrecent")


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
