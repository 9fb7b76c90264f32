"""A log row's values as storable text, and a row as one journal record.

A journal record is one line of PostgreSQL's COPY text format: the columns
in the order the segment's header names, tab-separated, ``\\N`` for null,
backslash, tab, newline and carriage return escaped. A record is complete
when its line ends with a newline, so a write that did not finish can
always be told from one that did, and a batch of records can be handed to
``COPY ... FROM STDIN`` as the bytes they are.

JSON bodies are kept as the text they were received or sent as, never
serialised a second time.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from typing import Any


class RawJSON(str):
    """JSON text that is stored as it is, so a large body is not serialised a second time.

    Only for text that is valid JSON already: a request body that parsed,
    or an answer this service serialised.
    """

    @classmethod
    def from_text(cls, text: str) -> RawJSON:
        # jsonb refuses U+0000. Raw line breaks and tabs can only be whitespace between tokens in valid
        # JSON: as spaces they keep the document the same and the record free of escapes.
        if "\\u0000" in text:
            text = text.replace("\\u0000", "\\ufffd")
        if "\n" in text or "\r" in text or "\t" in text:
            text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
        return cls(text)


def safe_json_dumps(value: Any) -> str:
    """JSON that PostgreSQL's jsonb accepts.

    jsonb has no U+0000 (it becomes U+FFFD) and no NaN or Infinity (a number
    that overflowed, such as 1e999 in a refused request, is stored as the
    string "Infinity").
    """
    if isinstance(value, RawJSON):
        return value
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), ensure_ascii=False, separators=(",", ":"))
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def raw_text(raw: bytes, limit: int) -> tuple[str, bool]:
    """A body that is not JSON, as storable text cut to ``limit`` characters."""
    text = raw[: limit * 4].decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    truncated = len(text) > limit or len(raw) > limit * 4
    return text[:limit], truncated




# --- journal records -------------------------------------------------------------------

HEADER_PREFIX = b"#prediction-log journal 1 "
NULL = "\\N"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": "\ufffd"}
_NEEDS_ESCAPE = re.compile("[\\\\\t\n\r\x00]")
_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", "N": ""}


def header(columns: Sequence[str]) -> bytes:
    """The first line of a segment: what follows, and in which column order."""
    return HEADER_PREFIX + ",".join(columns).encode() + b"\n"


def parse_header(line: bytes) -> list[str] | None:
    if not line.startswith(HEADER_PREFIX) or not line.endswith(b"\n"):
        return None
    return line[len(HEADER_PREFIX):-1].decode().split(",")


def _text(value: str) -> str:
    if _NEEDS_ESCAPE.search(value):
        return _NEEDS_ESCAPE.sub(lambda match: _ESCAPES[match.group()], value)
    return value


def _field(value: Any) -> str:
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, RawJSON):
        return value.replace("\\", "\\\\") if "\\" in value else value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else NULL
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return _text(safe_json_dumps(value))


def encode(row: dict[str, Any], columns: Sequence[str], json_columns: frozenset[str]) -> bytes:
    """One journal record for ``row``: a COPY text line, newline-terminated."""
    fields = []
    for name in columns:
        value = row.get(name)
        if name in json_columns and value is not None and not isinstance(value, RawJSON):
            value = RawJSON(safe_json_dumps(value))
        fields.append(_field(value))
    return ("\t".join(fields) + "\n").encode("utf-8", "replace")


def decode(record: bytes, columns: Sequence[str]) -> dict[str, str | None]:
    """The fields of one record as text (None for null), keyed by column; ValueError when malformed."""
    text = record.decode("utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text or "\x00" in text:
        raise ValueError("a journal record holds a raw newline or NUL")
    fields = text.split("\t")
    if len(fields) != len(columns):
        raise ValueError(f"a journal record has {len(fields)} fields, its segment names {len(columns)} columns")
    return {name: None if field == NULL else _unescape(field) for name, field in zip(columns, fields, strict=True)}


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    return _UNESCAPE.sub(lambda match: _UNESCAPED.get(match.group(1), match.group(1)), field)
