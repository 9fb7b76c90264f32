"""The prediction log under faults, against a real gunicorn and PostgreSQL: a full disk, a database that is
away or locked, and reused client request ids lose no answered row and double none.

The database goes away for one test database only (connections refused and cut), so other work on the
same PostgreSQL server is not disturbed.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest
import sqlalchemy as sa

from .conftest import ADMIN, BOSTON_ROW, _admin_engine, tmpfs
from .servers import Server, call, exchange

pytestmark = pytest.mark.slow


def database_name(url: str) -> str:
    return sa.make_url(url).database


def block_database(url: str) -> None:
    """The database refuses connections and loses the ones it had: to the service, it is down."""
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{database_name(url)}" WITH ALLOW_CONNECTIONS false'))
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                     {"name": database_name(url)})
    engine.dispose()


def unblock_database(url: str) -> None:
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{database_name(url)}" WITH ALLOW_CONNECTIONS true'))
    engine.dispose()


@pytest.fixture
def outage(settings):
    """Call it to take the test's database away; it always comes back."""
    taken = []

    def take() -> None:
        block_database(settings["DATABASE_URL"])
        taken.append(True)

    yield take
    if taken:
        unblock_database(settings["DATABASE_URL"])


def logged(url: str) -> list[tuple[str, str | None, int]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT request_id, client_request_id, status FROM prediction_log")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def wait_for_rows(url: str, expected: int, timeout: float = 30) -> list[tuple[str, str | None, int]]:
    """The logged rows once there are at least ``expected`` of them (or when time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = logged(url)
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def predict(server: Server, client_id: str | None = None, timeout: float = 10) -> tuple[int, dict, dict]:
    headers = {"X-Request-ID": client_id} if client_id else None
    return exchange(f"{server.url}/predict", {"instances": [BOSTON_ROW]}, headers, timeout)


def journal_settings(settings: dict, directory) -> dict:
    # LOG_SPOOL_DIR too: the older name of the same setting.
    return dict(settings, LOG_JOURNAL_DIR=str(directory), LOG_SPOOL_DIR=str(directory))


def test_reused_client_ids_during_an_outage_keep_every_row(tmp_path, settings, app, outage):
    """Regression: 40 requests sent as 20 reused-id pairs during an outage kept 23 rows (3 workers)."""
    server = Server(tmp_path, journal_settings(settings, tmp_path / "journal"))
    try:
        outage()
        answers = []
        for pair in range(20):
            for _ in range(2):
                status, body, headers = predict(server, f"reused-{pair}")
                assert status == 200, body
                answers.append((headers["X-Request-ID"], body["request_id"], f"reused-{pair}"))
        unblock_database(settings["DATABASE_URL"])
        rows = wait_for_rows(settings["DATABASE_URL"], 40)
    finally:
        server.stop()
    assert all(header == body_id for header, body_id, _ in answers)  # the answer and its header agree
    rows = logged(settings["DATABASE_URL"])
    assert len(rows) == 40
    assert sorted((request_id, client_id) for request_id, client_id, _ in rows) == sorted(
        (request_id, client_id) for request_id, _, client_id in answers)  # and the stored row agrees too


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs for the journal."""
    with tmpfs(tmp_path / "disk", "256k") as mount:
        yield mount


def test_a_full_disk_during_an_outage_answers_503_and_loses_no_answered_row(tmp_path, settings, app, outage,
                                                                             small_disk):
    """Regression: on a full disk a short write was ignored: answered-200 rows were lost (3, and 9 more
    when space was freed mid-outage)."""
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 96 * 1024)
    server = Server(tmp_path, dict(journal_settings(settings, small_disk / "journal"),
                                   LOG_JOURNAL_SEGMENT_BYTES=32768, LOG_JOURNAL_MAX_BYTES=1 << 30))
    try:
        outage()
        answered, refused = [], []
        for _ in range(400):
            status, body, headers = predict(server)
            if status == 200:
                answered.append(headers["X-Request-ID"])
            else:
                assert status == 503 and body["title"] == "Prediction log unavailable", body
                refused.append(headers["X-Request-ID"])
                if len(refused) == 20:
                    filler.unlink()  # space comes back mid-outage
                if len(refused) > 40:
                    break
        assert refused, "the disk never filled"
        for _ in range(30):  # the disk has room again: answers and their rows resume
            status, body, headers = predict(server)
            if status == 200:
                answered.append(headers["X-Request-ID"])
        unblock_database(settings["DATABASE_URL"])
        wait_for_rows(settings["DATABASE_URL"], len(answered))
    finally:
        server.stop()
    rows = logged(settings["DATABASE_URL"])
    assert sorted(row[0] for row in rows) == sorted(answered)  # every 200 once, no 503
    assert not (small_disk / "journal" / "quarantine").exists(), "no torn record"


def test_a_locked_log_table_stalls_nothing(tmp_path, settings, app):
    """Regression: with the log table locked (VACUUM FULL, a migration) every worker waited on its insert."""
    server = Server(tmp_path, journal_settings(settings, tmp_path / "journal"))
    locker = sa.create_engine(settings["DATABASE_URL"])
    connection = locker.connect()
    transaction = connection.begin()
    try:
        connection.execute(sa.text("LOCK TABLE prediction_log IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: predict(server, timeout=5), range(80)))
        assert all(status == 200 for status, _, _ in answers)
        assert time.monotonic() - started < 10
        time.sleep(3)  # the shipper meets the lock and its timeout
        status, ready = call(f"{server.url}/ready", timeout=5)
        assert status == 200  # the journal takes the rows: the service stays ready
        assert ready["log"]["database"].startswith("not taking rows"), ready["log"]
        assert ready["log"]["backlog_rows"] >= 80
        transaction.rollback()
        wait_for_rows(settings["DATABASE_URL"], len(answers))
    finally:
        if transaction.is_active:
            transaction.rollback()
        connection.close()
        locker.dispose()
        server.stop()
    rows = logged(settings["DATABASE_URL"])
    assert sorted(row[0] for row in rows) == sorted(headers["X-Request-ID"] for _, _, headers in answers)


def test_a_row_can_be_read_back_the_moment_its_answer_arrives(tmp_path, settings, app):
    server = Server(tmp_path, dict(journal_settings(settings, tmp_path / "journal"), LOG_SHIP_INTERVAL=30))
    try:
        for _ in range(10):
            status, body, headers = predict(server)
            found, row = call(f"{server.url}/predictions/{headers['X-Request-ID']}", headers=ADMIN, method="GET")
            assert (status, found) == (200, 200), row
            assert row["response_body"] == body
    finally:
        server.stop()


def test_a_swapped_pickle_never_runs_in_the_service(tmp_path, settings, keys, store, app):
    """Regression: activations while model.pkl was swapped atomically ran the payload (161 times in 20 s)
    and served the tampered model under the genuine sha256."""
    import pickle

    from ml_models import bundle

    from .conftest import train_into
    from .tampering import Sentinel

    name = "boston-knn"
    first = store / name / bundle.read_active(store, name)
    second = train_into(store, "--max-neighbors", "2", signing_key=keys["trusted"])
    sentinel = tmp_path / "pwned"
    evil = pickle.dumps(Sentinel(str(sentinel)))
    genuine = {path.name: (path / bundle.MODEL_FILE).read_bytes() for path in (first, second)}
    hashes = {bundle.read_info(path)["files"][bundle.MODEL_FILE]["sha256"] for path in (first, second)}
    server = Server(tmp_path, dict(settings, MODEL_VERIFY_KEY=str(keys["trusted_public"])), workers=2)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for path in (first, second):
                for data in (evil, genuine[path.name]):
                    staged = path / ".swap"
                    staged.write_bytes(data)
                    staged.replace(path / bundle.MODEL_FILE)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    statuses = []
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            for version in (second.name, first.name):
                status, _ = call(f"{server.url}/models/{version}/activate", headers=ADMIN)
                statuses.append(status)
                status, body = server.predict()
                if status == 200:
                    assert body["model"]["sha256"] in hashes
    finally:
        stop.set()
        swapper.join()
        for path in (first, second):
            (path / bundle.MODEL_FILE).write_bytes(genuine[path.name])
        server.stop()
    assert not sentinel.exists(), "the swapped-in pickle ran in the service"
    assert set(statuses) <= {200, 409} and 200 in statuses and 409 in statuses
