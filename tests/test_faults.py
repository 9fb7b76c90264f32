"""The reduced fault run in both durability modes: PostgreSQL restarts and a crash, killed workers (the shipping
one too) and SIGTERM lose no answered request and double none."""

from __future__ import annotations

import pytest

from . import fault_run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("durability", ["default", "strict"])
def test_reduced_fault_run_loses_nothing(pg_server, durability):
    summary = fault_run.run(duration=16, workers=3, concurrency=6, durability=durability)
    assert summary["answered_missing_from_log"] == 0
    assert summary["duplicate_log_rows"] == 0
    assert summary["journal_rows_left"] == 0
    assert summary["by_status_class"].get("5xx", 0) == 0
    assert summary["by_status_class"]["2xx"] > 100 and summary["by_status_class"]["4xx"] > 10
    assert summary["master_exit_code"] == 0
    assert max(summary["journal_backlog_peaks"]) > 0, "the outages should have left rows waiting in the journal"
    assert summary["in_flight_completed_at_sigterm"] >= 1
