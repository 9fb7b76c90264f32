"""A corpus of hostile request bodies: each is a 4xx problem+json, logged once, never a 5xx or a traceback."""

from __future__ import annotations

import gzip
import json

import pytest

from .conftest import BOSTON_FEATURES, BOSTON_ROW

BOSTON_VALUES = [BOSTON_ROW[name] for name in BOSTON_FEATURES]
JSON = "application/json"


def instances(*rows) -> bytes:
    return json.dumps({"instances": list(rows)}).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def array_row_with(text: str) -> bytes:
    """A one-row array body whose first cell is the raw JSON text given."""
    rest = ",".join(json.dumps(value) for value in BOSTON_VALUES[1:])
    return f'{{"instances": [[{text},{rest}]]}}'.encode()


CORPUS = [
    # (id, body bytes, content type, extra headers, expected status)
    ("empty-body", b"", JSON, {}, 400),
    ("whitespace-only", b"  \n ", JSON, {}, 400),
    ("null", b"null", JSON, {}, 400),
    ("bare-number", b"42", JSON, {}, 400),
    ("bare-string", b'"instances"', JSON, {}, 400),
    ("nested-10000", nested(10_000), JSON, {}, 400),
    ("nested-10000-in-instances", b'{"instances": ' + nested(10_000) + b"}", JSON, {}, 400),
    ("utf8-bom", b"\xef\xbb\xbf" + instances(BOSTON_ROW), JSON, {}, 400),
    ("invalid-utf8", b'{"instances": [{"CRIM": "\xc3\x28"}]}', JSON, {}, 400),
    ("lone-surrogate", b'{"instances": [{"CRIM": "\\ud800"}]}', JSON, {}, 400),
    ("lone-surrogate-key", b'{"\\ud800": 1}', JSON, {}, 400),
    ("duplicate-keys", b'{"instances": [], "instances": [[1]]}', JSON, {}, 400),
    ("duplicate-feature", b'{"instances": [{"CRIM": 1, "CRIM": 2}]}', JSON, {}, 400),
    ("1e999", array_row_with("1e999"), JSON, {}, 400),
    ("-1e999", array_row_with("-1e999"), JSON, {}, 400),
    ("1e300", array_row_with("1e300"), JSON, {}, 400),
    ("huge-integer", array_row_with("9" * 400), JSON, {}, 400),
    ("NaN", array_row_with("NaN"), JSON, {}, 400),
    ("Infinity", array_row_with("Infinity"), JSON, {}, 400),
    ("5-MB-body", instances(*[BOSTON_ROW] * 20_000)[: 5 * 2**20], JSON, {}, 413),
    ("10000-extra-keys", instances({**BOSTON_ROW, **{f"x{i}": i for i in range(10_000)}}), JSON, {}, 400),
    ("100001-rows", b'{"instances": [' + b",".join([b"[1]"] * 100_001) + b"]}", JSON, {}, 400),
    ("numeric-strings", instances({name: str(value) for name, value in BOSTON_ROW.items()}), JSON, {}, 400),
    ("booleans", instances(dict(BOSTON_ROW, CHAS=True, RM=False)), JSON, {}, 400),
    ("nested-object-value", instances(dict(BOSTON_ROW, RM={"value": 6.2})), JSON, {}, 400),
    ("nested-array-value", instances(dict(BOSTON_ROW, RM=[6.2])), JSON, {}, 400),
    ("array-row-of-arrays", instances([[value] for value in BOSTON_VALUES]), JSON, {}, 400),
    ("text-plain", instances(BOSTON_ROW), "text/plain", {}, 415),
    ("form-urlencoded", b"instances=1", "application/x-www-form-urlencoded", {}, 415),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", {}, 415),
    ("no-content-type", instances(BOSTON_ROW), "", {}, 415),
    ("json-latin1", instances(BOSTON_ROW), JSON + "; charset=latin-1", {}, 415),
    ("gzip", gzip.compress(instances(BOSTON_ROW)), JSON, {"Content-Encoding": "gzip"}, 415),
    ("br", instances(BOSTON_ROW), JSON, {"Content-Encoding": "br"}, 415),
]


@pytest.mark.parametrize(("body", "content_type", "headers", "status"), [case[1:] for case in CORPUS],
                         ids=[case[0] for case in CORPUS])
def test_hostile_body_is_a_logged_problem(client, log_rows, body, content_type, headers, status):
    response = client.post("/predict", data=body, headers={"Content-Type": content_type, **headers})
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:500]
    assert response.content_type == "application/problem+json"
    assert "Traceback" not in text and 'File "' not in text
    problem = json.loads(text)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert len(text) < 64_000, "an error answer stays small whatever the body"
    (row,) = log_rows()
    assert row["request_id"] == response.headers["X-Request-ID"] == problem["request_id"]
    assert row["status"] == status and row["response_body"] == problem
    assert row["error"], "a refused request records why"


def test_the_service_still_answers_after_the_corpus(client, log_rows):
    for _, body, content_type, headers, _ in CORPUS:
        client.post("/predict", data=body, headers={"Content-Type": content_type, **headers})
    good = client.post("/predict", json={"instances": [BOSTON_ROW]})
    assert good.status_code == 200
    rows = log_rows()
    assert len(rows) == len(CORPUS) + 1
    assert [row["status"] for row in rows[:-1]] == [case[-1] for case in CORPUS]


THREE_MB = instances(*[BOSTON_ROW] * 25_000)[: 3 * 2**20]
assert len(THREE_MB) == 3 * 2**20


@pytest.mark.parametrize(("method", "path", "content_type", "headers", "status"), [
    ("POST", "/predict", "text/plain", {}, 415),
    ("POST", "/predict", JSON, {"Content-Encoding": "gzip"}, 415),
    ("POST", "/models/nosuch/predict", JSON, {}, 404),
    ("PUT", "/predict", JSON, {}, 405),
], ids=["text-plain", "gzip", "unknown-model", "put"])
def test_an_oversized_body_on_a_refused_path_keeps_its_own_answer_and_row(client, log_rows, method, path,
                                                                          content_type, headers, status):
    """Regression: building the log row read the body after the 4xx was built, and the request ended as a 500
    with no log row and no X-Request-ID."""
    response = client.open(path, method=method, data=THREE_MB, headers={"Content-Type": content_type, **headers})
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    (row,) = log_rows()
    assert row["request_id"] == response.headers["X-Request-ID"] == response.get_json()["request_id"]
    assert row["status"] == status and row["request_truncated"] and row["request_raw"] is None
