"""The service's own log lines: one line per event, collectable from every replica, unforgeable by clients.

Two formats (LOG_FORMAT):

- ``text``: ``<time> <level> <logger> <message>``; an access line's message is
  ``key=value`` pairs. Any value that is not plain (letters, digits and
  ``._:/-``) is written as a quoted JSON string, so a request path holding
  ``%0a`` cannot start a line of its own. A traceback's lines are indented:
  every line that starts at the margin is a line the service wrote.
- ``json``: one JSON object per line with ``time``, ``level``, ``logger``,
  ``replica`` and ``message``, plus an access line's fields (request id,
  model, version, status, ...) as keys of their own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import sys
from typing import Any

REPLICA = socket.gethostname()
_PLAIN = re.compile(r"[A-Za-z0-9._:/-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def plain(value: Any) -> str:
    """A value as it may stand in a key=value line: as is when plain, else a quoted JSON string."""
    text = value if isinstance(value, str) else str(value)
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def key_values(fields: dict[str, Any]) -> str:
    return " ".join(f"{key}={plain('-' if value is None else value)}" for key, value in fields.items())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if fields is not None:
            record.message = key_values(fields)
        elif _CONTROL.search(record.message):
            record.message = _CONTROL.sub(lambda match: json.dumps(match.group())[1:-1], record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return "\n".join("    " + line for line in super().formatException(ei).splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    " + line for line in stack_info.splitlines())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "replica": REPLICA,
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            line["message"] = "request"
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """One handler on the root logger, in the chosen format; gunicorn's own logger keeps its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "service_handler", False):
            root.removeHandler(existing)
    handler.service_handler = True
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("flask_app").setLevel(level.upper())
