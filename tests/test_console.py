"""The operations console, in-process: sign-in, cookies, CSRF, the policy, escaping, and what each page shows."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time

import pytest

from ml_models import bundle

from .conftest import ADMIN, ADMIN_TOKEN, BOSTON_ROW, train_into
from .test_multi_model import HEART_ROW

PAGES = ["/console/models", "/console/traffic", "/console/log", "/console/drift"]
XSS = "<script>document.title='pwned'</script>"
XSS_KEY = '<img src=x onerror="document.title=1">'


@pytest.fixture
def client(app, both):
    return app.test_client()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    form = client.get("/console/login").get_data(as_text=True)
    response = client.post("/console/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form),
                                                    "next": "/console/models"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/models")
    return csrf_of(client.get("/console/models").get_data(as_text=True))


def wait_for_log(client, n: int) -> None:
    """Log rows may reach the table a moment after their answers."""
    deadline = time.monotonic() + 10
    while client.get("/predictions", headers=ADMIN).get_json()["total"] < n:
        assert time.monotonic() < deadline, f"fewer than {n} log rows"
        time.sleep(0.05)


# --- access --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [*PAGES, "/console/", "/console/models/boston-knn/x", "/console/log/abc"])
def test_nothing_is_shown_without_sign_in(client, page):
    client.post("/predict", json={"instances": [BOSTON_ROW]})
    response = client.get(page)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login?next=")
    assert b"verified" not in response.data and b"/predict" not in response.data


def test_state_changing_posts_without_a_session_are_refused(client, both):
    second = train_into(both, "--max-neighbors", "1").name
    for action in ("activate", "dry-run"):
        response = client.post(f"/console/models/boston-knn/{second}/{action}", data={"csrf_token": "x"})
        assert response.status_code in (400, 403)
    assert bundle.read_active(both, "boston-knn") != second


def test_sign_in_sets_an_http_only_strict_cookie_for_the_console_only(client):
    form = client.get("/console/login")
    cookie = form.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http
    response = client.post("/console/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form.text)})
    assert response.status_code == 302
    assert "console_session=" in response.headers["Set-Cookie"]
    assert client.get("/console/models").status_code == 200


def test_the_cookie_is_secure_over_https(app):
    client = app.test_client()
    form = client.get("/console/login", base_url="https://localhost")
    assert "Secure" in form.headers["Set-Cookie"]


def test_a_wrong_token_is_refused(client):
    form = client.get("/console/login").text
    response = client.post("/console/login", data={"token": "not-it", "csrf_token": csrf_of(form)})
    assert response.status_code == 200 and b"not the admin token" in response.data
    assert client.get("/console/models").status_code == 302


def test_the_sign_in_form_needs_its_csrf_token(client):
    client.get("/console/login")
    response = client.post("/console/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 400
    assert client.get("/console/models").status_code == 302


@pytest.mark.parametrize("target", ["//example.com/x", "https://example.com/", "/predict", "/console\\..\\x"])
def test_sign_in_only_returns_to_console_pages(client, target):
    form = client.get("/console/login").text
    response = client.post("/console/login", data={"token": ADMIN_TOKEN, "csrf_token": csrf_of(form),
                                                   "next": target})
    assert response.headers["Location"] == "/console/models"


def test_sign_out_ends_the_session(client):
    csrf = sign_in(client)
    assert client.post("/console/logout", data={"csrf_token": csrf}).status_code == 302
    assert client.get("/console/models").status_code == 302


def test_changing_the_admin_token_signs_everyone_out(settings, both, make_app):
    first = make_app(settings).test_client()
    sign_in(first)
    cookie = first.get_cookie("console_session", path="/console")
    other = make_app(dict(settings, ADMIN_TOKEN="another-token")).test_client()
    other.set_cookie("console_session", cookie.value, path="/console")
    assert other.get("/console/models").status_code == 302
    same = make_app(settings).test_client()  # another worker with the same token
    same.set_cookie("console_session", cookie.value, path="/console")
    assert same.get("/console/models").status_code == 200


@pytest.mark.parametrize("extra", [{}, {"DEV_MODE": True}])
def test_the_console_is_disabled_without_an_admin_token(settings, both, extra, make_app):
    client = make_app(dict(settings, ADMIN_TOKEN="", **extra)).test_client()
    response = client.get("/console/login")
    assert response.status_code == 403 and b"no ADMIN_TOKEN is configured" in response.data
    assert "Set-Cookie" not in response.headers


def test_api_requests_never_open_a_session(client):
    sign_in(client)
    response = client.post("/predict", json={"instances": [BOSTON_ROW]},
                           headers={"Cookie": "console_session=forged"})
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert "Set-Cookie" not in client.get("/model").headers


def test_forms_need_the_csrf_token_and_the_same_origin(client, both):
    second = train_into(both, "--max-neighbors", "1").name
    csrf = sign_in(client)
    url = f"/console/models/boston-knn/{second}/activate"
    assert client.post(url).status_code == 400
    assert client.post(url, data={"csrf_token": "wrong"}).status_code == 400
    assert client.post(url, data={"csrf_token": csrf}, headers={"Origin": "https://evil.example"}).status_code == 403
    assert bundle.read_active(both, "boston-knn") != second
    assert client.post(url, data={"csrf_token": csrf}, headers={"Origin": "http://localhost"}).status_code == 302
    assert bundle.read_active(both, "boston-knn") == second


@pytest.mark.parametrize("page", ["/console/login", *PAGES])
def test_pages_allow_only_their_own_and_nonced_scripts(client, page):
    if page != "/console/login":
        sign_in(client)
    first, second = client.get(page), client.get(page)
    policy = first.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "script-src 'self' 'nonce-" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert nonce not in second.headers["Content-Security-Policy"]
    scripts = re.findall(r"<script[^>]*>", first.text)
    assert scripts and all(f'nonce="{nonce}"' in tag for tag in scripts)
    assert first.headers["Cache-Control"] == "no-store" and first.headers["X-Frame-Options"] == "DENY"


# --- escaping -----------------------------------------------------------------------------------------------


def test_text_from_requests_is_escaped_on_every_page(client):
    client.post("/predict", json={"instances": [{**BOSTON_ROW, "CRIM": XSS, XSS_KEY: 1}]})
    client.post("/predict", data=XSS, content_type="text/plain")
    client.post("/v2/models/boston-knn/infer", json={"inputs": [{"name": XSS, "shape": [1], "datatype": "FP64",
                                                                 "data": [1]}], "id": XSS})
    wait_for_log(client, 3)
    sign_in(client)
    log_page = client.get("/console/log").text
    ids = set(re.findall(r'href="(/console/log/[^"?]+)', log_page))
    assert len(ids) == 3
    for html in [log_page, *(client.get(url).text for url in ids)]:
        assert "<script>document" not in html and "<img src=x" not in html
    details = "".join(client.get(url).text for url in ids)
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in details
    assert "&lt;img src=x onerror=" in details


# --- models and activation ------------------------------------------------------------------------------------


def test_models_page_shows_every_version_with_its_verdict_and_metrics(client, both, keys):
    second = train_into(both, "--max-neighbors", "1", "--families", "knn", signing_key=keys["trusted"]).name
    active = bundle.read_active(both, "boston-knn")
    shutil.copytree(both / "boston-knn" / active, both / "boston-knn" / "20990101T000000Z")
    sign_in(client)
    html = client.get("/console/models").text
    for text in ("boston-knn", "heart-knn", active, second, "20990101T000000Z", "refused: wrong_location",
                 "ROC AUC", "RMSE", "n_neighbors=1", "scikit-learn 1."):
        assert text in html, text
    info = bundle.read_info(both / "boston-knn" / active)
    assert f"{info['metrics']['baseline']['rmse']:.4g}" in html


def test_version_page_shows_the_info_file_and_the_cv_plot(client, both):
    sign_in(client)
    active = bundle.read_active(both, "boston-knn")
    html = client.get(f"/console/models/boston-knn/{active}").text
    for text in ("Holdout metrics", "CV MSE", "boston_housing.csv", "reference.npz", "PTRATIO", "scikit-learn",
                 "This version is active"):
        assert text in html, text
    with client.get(f"/console/models/boston-knn/{active}/cv_plot.png") as plot:
        assert plot.status_code == 200 and plot.data.startswith(b"\x89PNG")
    shutil.copytree(both / "boston-knn" / active, both / "boston-knn" / "20990101T000000Z")
    assert client.get("/console/models/boston-knn/20990101T000000Z/cv_plot.png").status_code == 404
    refused = client.get("/console/models/boston-knn/20990101T000000Z").text
    assert "does not verify" in refused and "PTRATIO" not in refused
    missing = client.get("/console/models/boston-knn/20000101T000000Z")
    assert missing.status_code == 404 and missing.content_type.startswith("text/html")


def test_dry_run_is_shown_before_activation(client, both, keys):
    second = train_into(both, "--max-neighbors", "1", "--families", "knn", signing_key=keys["trusted"]).name
    for _ in range(3):
        client.post("/predict", json={"instances": [BOSTON_ROW, dict(BOSTON_ROW, RM=7.0)]})
    wait_for_log(client, 3)
    csrf = sign_in(client)
    page = client.get(f"/console/models/boston-knn/{second}").text
    assert 'id="dry-run"' in page and 'id="activate"' not in page
    report = client.post(f"/console/models/boston-knn/{second}/dry-run", data={"csrf_token": csrf, "n": "50"}).text
    assert "Dry run: 3 requests (6 rows) replayed" in report and 'id="activate"' in report
    done = client.post(f"/console/models/boston-knn/{second}/activate", data={"csrf_token": csrf})
    assert done.status_code == 302
    assert f"{second} is active now" in client.get(done.headers["Location"]).text
    assert client.get("/model").get_json()["version"] == second


# --- traffic, log, drift ----------------------------------------------------------------------------------------


def make_traffic(client) -> None:
    for _ in range(4):
        client.post("/predict", json={"instances": [BOSTON_ROW, BOSTON_ROW]})
    client.post("/models/heart-knn/predict", json={"instances": [HEART_ROW]})
    client.post("/predict", json={"instances": [dict(BOSTON_ROW, CHAS=3)]})
    client.post("/predict", data="x", content_type="text/plain")
    client.post("/v2/models/boston-knn/infer", json={"inputs": []})
    wait_for_log(client, 8)


def test_traffic_totals_and_buckets_add_up(app, client):
    from flask_app import log as prediction_log
    from flask_app.log.query import _traffic_filter, _traffic_rows, aggregate_traffic

    make_traffic(client)
    now = dt.datetime.now(dt.UTC)
    since, until = now - dt.timedelta(hours=1), now + dt.timedelta(minutes=1)
    with app.app_context():
        totals = prediction_log.traffic_totals(since, until)
        buckets = prediction_log.traffic(since, until, 60)
        boston = prediction_log.traffic_totals(since, until, "boston-knn")
        in_python = aggregate_traffic(_traffic_rows(_traffic_filter(since, until, None)), since, 60)
    assert (totals["n_requests"], totals["n_accepted"], totals["n_rejected"]) == (8, 5, 3)
    assert totals["by_status"] == {200: 5, 400: 2, 415: 1}
    assert totals["n_rows"] == 9 and 0 < totals["p50_ms"] <= totals["p99_ms"]
    assert boston["n_requests"] == 7  # the heart request is not boston's
    assert sum(b["n_requests"] for b in buckets) == 8 and sum(b["n_rows"] for b in buckets) == 9
    # PostgreSQL's percentile_cont and the Python path other databases take agree.
    assert [(b["start"], b["n_requests"], b["n_rows"]) for b in buckets] == [
        (b["start"], b["n_requests"], b["n_rows"]) for b in in_python]
    for ours, theirs in zip(buckets, in_python, strict=True):
        assert ours["p50_ms"] == pytest.approx(theirs["p50_ms"]) and ours["p99_ms"] == pytest.approx(theirs["p99_ms"])


def test_traffic_page_draws_its_charts(client):
    make_traffic(client)
    sign_in(client)
    html = client.get("/console/traffic").text
    assert html.count('<svg class="chart"') == 4
    assert re.search(r'id="total-requests">8<', html) and re.search(r'id="total-rejected">3<', html)
    assert "400: 2" in html and "415: 1" in html
    assert client.get("/console/traffic?range=24h&model=heart-knn").status_code == 200
    assert client.get("/console/traffic?range=nonsense&model=nope").status_code == 200


def test_log_page_filters_like_the_api(client):
    make_traffic(client)
    sign_in(client)
    html = client.get("/console/log?status=400").text
    assert re.search(r'id="log-total">2<', html) and html.count('class="badge warn">400<') == 2
    html = client.get("/console/log?model=heart-knn").text
    assert re.search(r'id="log-total">1<', html)
    client.post("/predict", json={"instances": [BOSTON_ROW]}, headers={"X-Request-ID": "order-42"})
    html = client.get("/console/log?client_request_id=order-42").text
    assert re.search(r'id="log-total">1<', html) and "order-42" in html
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert re.search(r'id="log-total">0<', client.get(f"/console/log?since={future}").text)
    bad = client.get("/console/log?status=abc&since=yesterday")
    assert bad.status_code == 200 and b"status must be a number" in bad.data and b"since must be" in bad.data
    paged = client.get("/console/log?limit=25&offset=0").text
    assert 'id="older"' not in paged


def test_request_page_shows_both_bodies_and_the_error_locations(client):
    rejected = client.post("/predict", json={"instances": [dict(BOSTON_ROW, CHAS=3)]},
                           headers={"X-Request-ID": "client-order-17"})
    sign_in(client)
    html = client.get(f"/console/log/{rejected.headers['X-Request-ID']}").text
    assert "instances/0/CHAS" in html and "must be one of 0, 1" in html
    assert "<code>client-order-17</code>" in html
    assert 'id="request-body"' in html and "&#34;CHAS&#34;: 3" in html and 'id="response-body"' in html
    missing = client.get("/console/log/no-such-request")
    assert missing.status_code == 404 and b"no-such-request" in missing.data


def test_drift_page_tests_every_feature_and_draws_both_distributions(client):
    sign_in(client)
    assert "needs at least 30" in client.get("/console/drift").text
    rows = [dict(BOSTON_ROW, RM=5.0 + i / 10, LSTAT=2 + i / 5) for i in range(40)]
    client.post("/predict", json={"instances": rows})
    wait_for_log(client, 1)
    html = client.get("/console/drift?model=boston-knn&window=40").text
    assert html.count('class="card feature-card') == 12
    assert html.count('<svg class="chart"') == 12
    assert "KS statistic" in html and 'id="feature-RM"' in html
    api = client.get("/monitoring/drift?window=40", headers=ADMIN).get_json()["report"]
    assert f"{api['features']['RM']['statistic']:.4g}" in html


def test_unknown_console_pages_are_html_404s(client):
    sign_in(client)
    response = client.get("/console/nothing-here")
    assert response.status_code == 404 and response.content_type.startswith("text/html")
