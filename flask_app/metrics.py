"""Prometheus metrics, added up across gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (start_server.sh and the image set it),
every worker writes its figures there and /metrics merges them; without it
the figures are this process's own.
"""

from __future__ import annotations

import functools
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
LOG_WRITES = Counter("prediction_log_writes_total",
                     "Log rows by outcome: journaled (the answer went out) or refused (the answer was withheld)",
                     ["outcome"])
LOG_SHIPPED = Counter("prediction_log_shipped_rows_total", "Log rows moved from the journal into the database")
LOG_SHIP_LAG = Histogram("prediction_log_shipping_lag_seconds", "From a row's answer to its commit in the database",
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
LOG_SHIP_FAILURES = Counter("prediction_log_ship_failures_total",
                            "Shipping passes the database refused, and journal records kept aside", ["kind"])
LOG_BACKLOG_ROWS = Gauge("prediction_log_journal_backlog_rows", "Rows in the journal not yet in the database",
                         multiprocess_mode="mostrecent")
LOG_BACKLOG_BYTES = Gauge("prediction_log_journal_backlog_bytes", "Journal bytes not yet in the database",
                          multiprocess_mode="mostrecent")
LOG_OLDEST = Gauge("prediction_log_journal_oldest_seconds",
                   "Age of the oldest row not yet in the database (0 when none waits)",
                   multiprocess_mode="mostrecent")


def record_shipping(report) -> None:
    """Count one shipping pass (called in whichever process ships)."""
    if report.shipped_rows:
        LOG_SHIPPED.inc(report.shipped_rows)
        for lag in report.lags:
            LOG_SHIP_LAG.observe(lag)
    if report.error:
        LOG_SHIP_FAILURES.labels("database").inc()
    for kind, count in report.set_aside.items():
        LOG_SHIP_FAILURES.labels(kind).inc(count)


def record_log_status(status: dict) -> None:
    """Backlog gauges from the shipper's published status (set when /metrics is read)."""
    LOG_BACKLOG_ROWS.set(status.get("backlog_rows") or 0)
    LOG_BACKLOG_BYTES.set(status.get("backlog_bytes") or 0)
    LOG_OLDEST.set(status.get("oldest_unshipped_seconds") or 0)


@functools.cache
def _request_series(endpoint: str, method: str, status: int):
    return REQUESTS.labels(endpoint, method, str(status))


@functools.cache
def _latency_series(endpoint: str):
    return LATENCY.labels(endpoint)


def record_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """One answered request (the labelled series are looked up once per label set, not per request)."""
    _request_series(endpoint, method, status).inc()
    _latency_series(endpoint).observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
