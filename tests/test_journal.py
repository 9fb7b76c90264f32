"""The journal and its shipper: every answered row reaches the table exactly once, whatever fails.

In-process, against the real PostgreSQL: rows written while the database is
away, many shippers at once, a full disk, torn records, records the
database refuses, memory that does not grow with the journal, a stale
connection at exit, and writers in separate pid namespaces on one directory.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_app.log import record
from flask_app.log.destinations import CheckpointMoved, PostgresDestination
from flask_app.log.journal import Journal, JournalUnavailable, segment_paths
from flask_app.log.shipper import QUARANTINE_DIR, Shipper
from flask_app.log.table import COLUMNS, JSON_COLUMNS
from flask_app.request_ids import new_request_id

from .conftest import ADMIN, BOSTON_ROW, tmpfs

ROOT = Path(__file__).resolve().parent.parent
DEAD = "postgresql://postgres@127.0.0.1:1/nowhere"


def make_row(index: int = 0, **changes) -> dict:
    request_id, received_at = new_request_id()
    row = {"request_id": request_id, "received_at": received_at, "endpoint": "/predict", "status": 200,
           "model_name": "m", "model_version": "v", "n_rows": 1, "latency_ms": 1.5 + index,
           "request_body": record.RawJSON('{"instances": [[1, 2]]}'), "request_truncated": False,
           "response_body": {"predictions": [index]}}
    row.update(changes)
    return row


def encoded(row: dict) -> bytes:
    return record.encode(row, COLUMNS, JSON_COLUMNS)


def sealed_segment(directory: Path, rows: list[dict]) -> Path:
    """A segment holding ``rows`` whose writer has moved on (closed it)."""
    journal = Journal(directory, COLUMNS)
    for row in rows:
        journal.append(encoded(row))
    path = directory / journal.segment_name
    journal.close()
    return path


def conninfo(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def database(app, settings):
    """The session's migrated database, emptied by the app fixture; returns its URL."""
    return settings["DATABASE_URL"]


def stored(url: str) -> list[tuple]:
    """(request_id, status, response_body, request_body) of every logged row, oldest first."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT request_id, status, response_body, request_body FROM prediction_log "
                                    "ORDER BY received_at, id")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def shipper_for(directory: Path, url: str, **kwargs) -> Shipper:
    return Shipper(directory, PostgresDestination(conninfo(url), 5.0), **kwargs)


# --- records ---------------------------------------------------------------------------------


def test_a_record_keeps_every_character_the_database_can_hold(tmp_path, database):
    nasty = "tab\there\nnewline\rcr back\\slash \\N nul\x00 é 𝄞 \u2028"
    row = make_row(error=nasty, client_request_id="c-1", endpoint="/predict",
                   request_body=record.RawJSON.from_text('{"instances":\t[["a\\tb", "\\\\N"]]}\n'))
    sealed_segment(tmp_path, [row])
    shipper = shipper_for(tmp_path, database)
    assert shipper.ship_once().shipped_rows == 1
    shipper.close()
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        error, body, received = conn.execute(sa.text(
            "SELECT error, request_body::text, received_at FROM prediction_log")).one()
    engine.dispose()
    assert error == nasty.replace("\x00", "\ufffd")
    assert body == '{"instances": [["a\\tb", "\\\\N"]]} '
    assert received == row["received_at"]
    assert record.decode(encoded(row), COLUMNS)["error"] == nasty.replace("\x00", "\ufffd")


# --- exactly once ------------------------------------------------------------------------------


def test_rows_written_while_the_database_is_away_reach_it_exactly_once(tmp_path, database):
    journal = Journal(tmp_path, COLUMNS)
    rows = [make_row(i) for i in range(40)]
    for row in rows:
        journal.append(encoded(row))
    away = shipper_for(tmp_path, DEAD)
    report = away.ship_once()
    assert report.shipped_rows == 0 and report.error
    assert away.backlog()["rows"] == 40
    back = shipper_for(tmp_path, database)
    assert back.ship_once().shipped_rows == 40
    assert back.ship_once().shipped_rows == 0  # nothing left, nothing doubled
    assert [row[0] for row in stored(database)] == [row["request_id"] for row in rows]
    journal.close()
    assert back.ship_once().deleted_segments == 1  # sealed and shipped: gone
    assert segment_paths(tmp_path) == []
    back.close()


def test_many_shippers_at_once_store_each_row_once(tmp_path, database):
    """Shippers of several processes (here threads with their own connections) race over one directory."""
    journals = [Journal(tmp_path, COLUMNS) for _ in range(3)]
    ids = []
    for index in range(600):
        row = make_row(index)
        ids.append(row["request_id"])
        journals[index % 3].append(encoded(row))
    for journal in journals[:2]:
        journal.close()  # two sealed segments, one live
    shippers = [shipper_for(tmp_path, database, batch_bytes=4096) for _ in range(4)]
    threads = [threading.Thread(target=shipper.ship_once) for shipper in shippers for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shippers[0].ship_once()
    assert sorted(row[0] for row in stored(database)) == sorted(ids)
    assert [path.name for path in segment_paths(tmp_path)] == [journals[2].segment_name]  # the live one stays
    for shipper in shippers:
        shipper.close()


def test_a_batch_meeting_a_stored_request_id_keeps_every_other_row(tmp_path, database):
    """Regression: with reused ids in one replay batch, ON CONFLICT skipped rows and the loop counted them."""
    rows = [make_row(i) for i in range(10)]
    sealed_segment(tmp_path, rows)
    first = shipper_for(tmp_path, database)
    first.ship_once()
    # The checkpoints are lost (a restored database, say) and the segment is shipped again, with new rows.
    engine = sa.create_engine(database)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM prediction_log WHERE request_id = ANY(:ids)"),
                     {"ids": [row["request_id"] for row in rows[5:]]})
    engine.dispose()
    extra = [make_row(20 + i) for i in range(3)]
    sealed_segment(tmp_path, rows + extra)
    shipper = shipper_for(tmp_path, database)
    shipper.ship_once()
    assert sorted(row[0] for row in stored(database)) == sorted(row["request_id"] for row in rows + extra)
    first.close()
    shipper.close()


# --- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs: writes fail with ENOSPC part-way through a record."""
    with tmpfs(tmp_path / "tiny", "64k") as mount:
        yield mount


def test_a_full_disk_refuses_the_row_and_every_record_starts_cleanly(tiny_disk, database):
    """Regression: a short write on a full disk was ignored, the answer went out, and replay dropped the row."""
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 24 * 1024)
    journal = Journal(tiny_disk / "journal", COLUMNS)
    accepted, refused = [], 0
    for index in range(200):
        row = make_row(index, response_body={"padding": "x" * 700, "i": index})
        try:
            journal.append(encoded(row))
        except JournalUnavailable:
            refused += 1
            continue
        accepted.append(row["request_id"])
    assert refused and len(accepted) > 10
    filler.unlink()  # space comes back: rows are taken again, and none is glued to a torn one
    for index in range(5):
        row = make_row(1000 + index)
        journal.append(encoded(row))
        accepted.append(row["request_id"])
    journal.close()
    shipper = shipper_for(tiny_disk / "journal", database)
    report = shipper.ship_once()
    assert report.error is None and not report.set_aside
    assert sorted(row[0] for row in stored(database)) == sorted(accepted)
    assert not (tiny_disk / "journal" / QUARANTINE_DIR).exists()
    shipper.close()


def test_an_unwritable_journal_withholds_the_answer(app, client, tmp_path):
    recorder = app.extensions["prediction_log"]
    (tmp_path / "blocked").write_text("not a directory")
    recorder.journal.directory = tmp_path / "blocked" / "journal"
    recorder.journal.close()
    response = client.post("/predict", json={"instances": [BOSTON_ROW]})
    assert response.status_code == 503
    assert response.get_json()["title"] == "Prediction log unavailable"
    assert "predictions" not in response.get_json()


def test_over_its_cap_the_journal_refuses_rows(tmp_path):
    journal = Journal(tmp_path, COLUMNS, segment_bytes=4096, max_bytes=8192)
    with pytest.raises(JournalUnavailable, match="cap"):
        for index in range(100):
            journal.append(encoded(make_row(index)))
    journal.close()


# --- torn and refused records -------------------------------------------------------------------


def test_a_torn_record_is_kept_and_reported_not_skipped(tmp_path, database):
    rows = [make_row(i) for i in range(3)]
    path = sealed_segment(tmp_path, rows)
    torn = encoded(make_row(9))[:57]
    with open(path, "ab") as handle:
        handle.write(torn)  # what a writer that died mid-write leaves
    shipper = shipper_for(tmp_path, database)
    report = shipper.ship_once()
    assert report.shipped_rows == 3 and report.set_aside == {"torn": 1}
    assert [row[0] for row in stored(database)] == [row["request_id"] for row in rows]
    assert (tmp_path / QUARANTINE_DIR / f"{path.name}.torn").read_bytes() == torn
    assert not path.exists()
    shipper.close()


def test_a_record_the_database_refuses_is_stored_as_text_and_the_batch_goes_on(tmp_path, database):
    good = [make_row(i) for i in range(3)]
    bad = make_row(5, request_body=record.RawJSON('{"not json'))
    sealed_segment(tmp_path, [good[0], bad, good[1], good[2]])
    shipper = shipper_for(tmp_path, database)
    report = shipper.ship_once()
    assert report.shipped_rows == 4 and not report.set_aside
    assert {row[0] for row in stored(database)} == {row["request_id"] for row in [*good, bad]}
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        raw, error = conn.execute(sa.text("SELECT request_raw, error FROM prediction_log WHERE request_id = :id"),
                                  {"id": bad["request_id"]}).one()
    engine.dispose()
    assert '{\\"not json' in raw and "stored as text" in error
    shipper.close()


# --- bounded memory ---------------------------------------------------------------------------------


def test_counting_and_shipping_a_large_journal_read_it_in_bounded_pieces(tmp_path, database):
    """Regression: every /ready, /metrics and replay read the whole spool into memory."""
    journal = Journal(tmp_path, COLUMNS, segment_bytes=1 << 30, max_bytes=1 << 31)
    body = record.RawJSON('{"instances": [' + ",".join(["[1.5, 2.5, 3.5]"] * 4000) + "]}")
    for index in range(400):
        journal.append(encoded(make_row(index, request_body=body)))  # about 25 MB
    size = sum(path.stat().st_size for path in segment_paths(tmp_path))
    assert size > 20_000_000
    away = shipper_for(tmp_path, DEAD, batch_bytes=1 << 20)
    tracemalloc.start()
    try:
        away.ship_once()
        assert away.backlog()["rows"] == 400
        _, counting_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        shipper = shipper_for(tmp_path, database, batch_bytes=1 << 20)
        assert shipper.ship_once().shipped_rows == 400
        _, shipping_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the batch (1 MiB) and the counting chunk, not by the 25 MB journal.
    assert counting_peak < 4_000_000, counting_peak
    assert shipping_peak < 6_000_000, shipping_peak
    journal.close()
    away.close()
    shipper.close()


# --- durability details -------------------------------------------------------------------------------


def test_a_new_segment_is_fsynced_into_its_directory(tmp_path, monkeypatch):
    """Regression: the directory was not fsync'ed after a new spool file, so a power loss could drop the file."""
    synced_dirs = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced_dirs.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    journal = Journal(tmp_path, COLUMNS)
    journal.append(encoded(make_row()))
    assert str(tmp_path) in synced_dirs
    journal.close()


def test_strict_durability_syncs_before_append_returns_and_threads_share_syncs(tmp_path, monkeypatch):
    syncs = []
    real = os.fdatasync

    def slow_fdatasync(fd):
        syncs.append(fd)
        time.sleep(0.01)
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    journal = Journal(tmp_path, COLUMNS, durability="strict")
    journal.append(encoded(make_row()))
    assert len(syncs) == 1
    threads = [threading.Thread(target=lambda: [journal.append(encoded(make_row(i))) for i in range(10)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert journal.appended == 81
    assert len(syncs) < 81  # group commit: one sync covers the writes before it
    journal.close()


def test_the_final_flush_survives_a_stale_connection(app, client, database):
    """Regression: the last replay at SIGTERM was skipped on a stale pooled connection, leaving rows behind."""
    recorder = app.extensions["prediction_log"]
    client.post("/predict", json={"instances": [BOSTON_ROW]})
    assert recorder.flush().shipped_rows == 1  # the shipper's connection is open now
    engine = sa.create_engine(database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        killed = conn.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE application_name = 'prediction-log-shipper'")).scalar()
    engine.dispose()
    assert killed >= 1
    answered = [client.post("/predict", json={"instances": [BOSTON_ROW]}).headers["X-Request-ID"] for _ in range(4)]
    recorder.stop()
    assert {row[0] for row in stored(database)} >= set(answered)
    assert segment_paths(recorder.directory) == []


def test_a_row_is_readable_as_soon_as_its_answer_is_sent(app, client):
    response = client.post("/predict", json={"instances": [BOSTON_ROW]})
    found = client.get(f"/predictions/{response.headers['X-Request-ID']}", headers=ADMIN)
    assert found.status_code == 200
    assert found.get_json()["response_body"] == response.get_json()


# --- ownership across pid namespaces ----------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from flask_app.log import record
    from flask_app.log.journal import Journal
    from flask_app.log.table import COLUMNS, JSON_COLUMNS
    from flask_app.request_ids import new_request_id
    journal = Journal({directory!r}, COLUMNS, segment_bytes=8192)
    for index in range({n}):
        request_id, received_at = new_request_id()
        row = {{"request_id": request_id, "received_at": received_at, "endpoint": "/predict", "status": 200,
               "latency_ms": 1.0, "request_truncated": False, "response_body": {{"writer": {label!r}}}}}
        journal.append(record.encode(row, COLUMNS, JSON_COLUMNS))
        print(request_id, flush=True)
        time.sleep(0.004)
""")


def test_writers_in_separate_pid_namespaces_share_a_directory_without_losing_rows(tmp_path, database):
    """Replicas share one journal volume and see each other's pids as meaningless: ownership is a lock, not a pid."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for the pid-namespace test")
    directory = tmp_path / "shared"
    directory.mkdir()
    writers = [subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         WRITER.format(root=str(ROOT), directory=str(directory), n=400, label=label)],
        stdout=subprocess.PIPE, text=True) for label in ("a", "b")]
    shipper = shipper_for(directory, database, batch_bytes=4096)
    while any(writer.poll() is None for writer in writers):
        shipper.ship_once()  # ships and deletes sealed segments while both writers append and rotate
        time.sleep(0.02)
    answered = []
    for writer in writers:
        out, _ = writer.communicate()
        assert writer.returncode == 0
        answered += out.split()
    shipper.ship_once()
    assert len(answered) == 800
    assert sorted(row[0] for row in stored(database)) == sorted(answered)
    assert segment_paths(directory) == []
    shipper.close()


def test_received_at_and_the_request_id_come_from_one_clock_reading():
    from flask_app.request_ids import minted_at

    request_id, received_at = new_request_id()
    assert minted_at(request_id) == received_at.replace(microsecond=received_at.microsecond // 1000 * 1000)
    assert received_at.tzinfo == dt.UTC


def test_a_deleted_segments_checkpoint_tells_a_late_shipper_it_is_done(tmp_path, database):
    """A shipper that opened a segment before another shipped and deleted it must not offer its rows again."""
    path = sealed_segment(tmp_path, [make_row(i) for i in range(5)])
    name, data = path.name, path.read_bytes()
    first = shipper_for(tmp_path, database)
    assert first.ship_once().deleted_segments == 1
    header_bytes = data.index(b"\n") + 1
    late = PostgresDestination(conninfo(database), 5.0)
    with pytest.raises(CheckpointMoved) as moved:
        late.ship(name, header_bytes, len(data), 0, data[header_bytes:], 5, COLUMNS)
    assert (moved.value.offset, moved.value.rows) == (len(data), 5)
    assert len(stored(database)) == 5
    first.close()
    late.close()


def test_recorders_stopping_together_ship_each_row_once_without_retries(tmp_path, database, monkeypatch):
    """Every worker flushes at SIGTERM at the same moment: no batch may be offered twice."""
    from flask_app.log import Recorder
    from flask_app.log.destinations import PostgresDestination as Destination

    offered_twice = []
    monkeypatch.setattr(Destination, "_skipping_duplicates",
                        lambda self, *args: offered_twice.append(args) or [])
    engine = sa.create_engine(database)
    recorders = [Recorder(engine, tmp_path, ship_interval=0) for _ in range(3)]
    for index in range(300):
        recorders[index % 3].append(make_row(index))
    threads = [threading.Thread(target=recorder.stop) for recorder in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert len(stored(database)) == 300
    assert offered_twice == []
    assert segment_paths(tmp_path) == []
