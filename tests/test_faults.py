"""The reduced fault run: database restarts, a killed worker and SIGTERM lose no answered request."""

from __future__ import annotations

import pytest

from . import fault_run

pytestmark = pytest.mark.slow


def test_reduced_fault_run_loses_nothing(pg_server):
    summary = fault_run.run(duration=12, workers=2, concurrency=6)
    assert summary["answered_missing_from_log"] == 0
    assert summary["duplicate_log_rows"] == 0
    assert summary["spool_rows_left"] == 0
    assert summary["by_status_class"].get("5xx", 0) == 0
    assert summary["by_status_class"]["2xx"] > 100 and summary["by_status_class"]["4xx"] > 10
    assert summary["master_exit_code"] == 0
    assert sum(summary["rows_spooled_peak"]) > 0, "the restarts should have sent rows through the spool"
    assert summary["in_flight_completed_at_sigterm"] >= 1
