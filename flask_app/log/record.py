"""A log row's values as storable text: JSON bodies kept as their text, raw bodies cut to a bound."""

from __future__ import annotations

import json
import math
from typing import Any


class RawJSON(str):
    """JSON text that is stored as it is, so a large body is not serialised a second time.

    Only for text that is valid JSON already: a request body that parsed,
    or an answer this service serialised.
    """

    @classmethod
    def from_text(cls, text: str) -> RawJSON:
        # jsonb refuses U+0000; line breaks outside strings are insignificant and would split a spool line.
        if "\\u0000" in text:
            text = text.replace("\\u0000", "\\ufffd")
        if "\n" in text or "\r" in text:
            text = text.replace("\r", " ").replace("\n", " ")
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


