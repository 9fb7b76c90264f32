"""The prediction log: the table, the journal every row is made durable in, the shipper, reading it back.

The rest of the service uses the names below; the modules behind them are
``table`` (the SQL tables), ``record`` (a row as storable text and as a
journal record), ``journal`` (appending), ``shipper`` (journal -> database,
exactly once), ``destinations`` (PostgreSQL and SQLite, where batches go),
``recorder`` (all of them as the app uses them) and ``query`` (reading the
log).
"""

from .journal import JournalUnavailable
from .query import find, query, recent_accepted, recent_request_bodies, serialize, traffic, traffic_totals
from .record import RawJSON, raw_text, safe_json_dumps
from .recorder import Recorder
from .table import PredictionLog

__all__ = [
    "JournalUnavailable",
    "PredictionLog",
    "RawJSON",
    "Recorder",
    "find",
    "query",
    "raw_text",
    "recent_accepted",
    "recent_request_bodies",
    "safe_json_dumps",
    "serialize",
    "traffic",
    "traffic_totals",
]
