"""The service's log lines: one event per line, whatever a client puts in a path, id or body."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from flask_app import logs

from .conftest import BOSTON_ROW

FORGED = "/predict\nrequest_id=forged status=200 method=POST path=/predict"


@pytest.fixture
def captured(settings, make_app):
    """An app in the given LOG_FORMAT whose log lines are returned by the call, one string per line."""
    def build(log_format: str):
        app = make_app(dict(settings, LOG_FORMAT=log_format))
        stream = io.StringIO()
        (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "service_handler", False)]
        handler.setStream(stream)
        return app.test_client(), lambda: stream.getvalue().splitlines()

    yield build
    logs.configure_logging("INFO", "text")


def test_a_path_holding_a_newline_cannot_write_a_line_of_its_own(captured):
    """Regression: a request path holding %0a split the access line, so a client could forge one."""
    client, lines = captured("text")
    client.post("/predict%0arequest_id=forged%20status=200%20method=POST%20path=/predict",
                json={"instances": [BOSTON_ROW]}, headers={"X-Request-ID": "ok-id"})
    access = [line for line in lines() if " flask_app.access " in line]
    assert len(access) == 1
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line) for line in lines())  # none forged
    assert 'path="/predict\\nrequest_id=forged status=200 method=POST path=/predict"' in access[0]


def test_json_lines_carry_request_model_and_replica(captured):
    client, lines = captured("json")
    response = client.post("/predict", json={"instances": [BOSTON_ROW]}, headers={"X-Request-ID": "mine-1"})
    client.post("/predict%0aforged", json={"instances": [BOSTON_ROW]})
    records = [json.loads(line) for line in lines()]  # every line is one JSON object
    access = [record for record in records if record["logger"] == "flask_app.access"]
    first = access[0]
    assert first["request_id"] == response.headers["X-Request-ID"]
    assert first["client_request_id"] == "mine-1"
    assert (first["model"], first["version"], first["status"]) == (
        "boston-knn", response.get_json()["model"]["version"], 200)
    assert first["replica"] == logs.REPLICA and first["level"] == "INFO"
    assert access[1]["path"] == "/predict\nforged" and access[1]["status"] == 404


@pytest.mark.parametrize("value", ["plain-1.2:3/x", "has space", 'quote"', "new\nline", "tab\t", "\u2028", ""])
def test_values_in_key_value_lines_are_plain_or_quoted(value):
    rendered = logs.plain(value)
    assert "\n" not in rendered and "\u2028" not in rendered and "\t" not in rendered
    if rendered != value:
        assert json.loads(rendered) == value


def test_a_traceback_is_indented_under_its_line():
    formatter = logs.TextFormatter()
    try:
        raise ValueError("bad\nrequest_id=forged status=200")
    except ValueError:
        record = logging.LogRecord("flask_app", logging.ERROR, __file__, 1, "failed: %s", ("x\ny",),
                                   exc_info=__import__("sys").exc_info())
    lines = formatter.format(record).splitlines()
    assert lines[0].endswith("failed: x\\ny")
    assert all(line.startswith("    ") for line in lines[1:])
