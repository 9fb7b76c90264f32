"""The prediction log: the table, the writer that makes each row durable, and reading it back.

The rest of the service uses the names below; the modules behind them are
``table`` (the SQL table), ``record`` (values as storable text), ``writer``
(the durable write path) and ``query`` (reading the log).
"""

from .query import find, query, recent_accepted, recent_request_bodies, serialize, traffic, traffic_totals
from .record import RawJSON, raw_text, safe_json_dumps
from .table import PredictionLog
from .writer import PredictionLogWriter, SpoolError, spooled_rows

__all__ = [
    "PredictionLog",
    "PredictionLogWriter",
    "RawJSON",
    "SpoolError",
    "find",
    "query",
    "raw_text",
    "recent_accepted",
    "recent_request_bodies",
    "safe_json_dumps",
    "serialize",
    "spooled_rows",
    "traffic",
    "traffic_totals",
]
