"""Request ids: minted by the service for every request, unique and time-ordered (UUID version 7).

The id and the request's ``received_at`` come from one clock reading: the
id's first 48 bits are that reading in milliseconds, and ``received_at`` is
the same reading in microseconds. So an id always belongs to one instant,
and to the one log partition that holds that instant. The remaining 74 bits
are random: two requests in the same millisecond collide with probability
2**-74, and the log's unique index catches even that.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def new_request_id() -> tuple[str, dt.datetime]:
    """A fresh request id and the instant it was minted at."""
    now_ns = time.time_ns()
    random = int.from_bytes(os.urandom(10), "big")
    value = ((now_ns // 1_000_000) << 80) | (0x7 << 76) | ((random & 0xFFF) << 64) | (0b10 << 62) | (
        (random >> 12) & ((1 << 62) - 1))
    text = f"{value:032x}"
    request_id = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
    return request_id, EPOCH + dt.timedelta(microseconds=now_ns // 1000)


def minted_at(request_id: str) -> dt.datetime | None:
    """The millisecond a request id was minted at; None for anything that is not a version-7 UUID."""
    try:
        value = uuid.UUID(request_id)
    except ValueError:
        return None
    if value.version != 7:
        return None
    return EPOCH + dt.timedelta(milliseconds=value.int >> 80)
