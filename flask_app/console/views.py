"""The console's pages. Each reads through the modules the API uses: the registry, the log queries, drift, shadow."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException

from ml_models import bundle

from .. import log as prediction_log
from .. import shadow
from ..drift import histograms, window_matrix
from ..errors import ServiceError
from ..resources.common import flush_log
from . import access
from .charts import Series, distribution_chart, time_chart

console = Blueprint("console", __name__, url_prefix=access.PREFIX, template_folder="templates",
                    static_folder="static")
console.before_request(access.guard)
console.after_request(access.secure_headers)

# Traffic ranges: (label, length, bucket).
RANGES = {
    "1h": ("last hour", dt.timedelta(hours=1), 60),
    "6h": ("last 6 hours", dt.timedelta(hours=6), 5 * 60),
    "24h": ("last day", dt.timedelta(days=1), 15 * 60),
}
PAGE_SIZES = (25, 50, 100, 200)
DRIFT_WINDOWS = (100, 500, 1000, 5000)
DEFAULT_TOLERANCE = 0.5


def registry():
    return current_app.extensions["model_registry"]


def settings():
    return current_app.config["SETTINGS"]


@console.app_template_global()
def csrf_token() -> str:
    return access.csrf_token()


# --- sign-in ---------------------------------------------------------------------------------------


@console.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with the admin token."""
    target = access.safe_next(request.values.get("next"))
    if access.signed_in() and request.method == "GET":
        return redirect(target)
    if request.method == "POST":
        if access.sign_in(request.form.get("token", "")):
            return redirect(target)
        # 200 with the message, as sign-in forms answer: the browser shows the form again without an error entry.
        return render_template("console/login.html", next=target, failed=True)
    return render_template("console/login.html", next=target, failed=False)


@console.post("/logout")
def logout():
    """End the session."""
    access.sign_out()
    return redirect(url_for("console.login"))


@console.get("/")
def home():
    return redirect(url_for("console.models"))


# --- models -------------------------------------------------------------------------------------------


@console.get("/models")
def models():
    """Every model and version: verdict, signature, holdout metrics beside the baseline, parameters."""
    cards = []
    for name in registry().names():
        versions = registry().versions(name)
        try:
            served = registry().get(name)
            serving, problem = served.version, None
            task, target, n_features = served.task, served.info.get("target"), len(served.feature_names)
        except ServiceError as exc:
            serving, problem, task, target, n_features = None, exc.detail, None, None, None
        cards.append({"name": name, "versions": versions, "serving": serving, "problem": problem, "task": task,
                      "target": target, "n_features": n_features, "default": name == settings().MODEL_NAME})
    return render_template("console/models.html", cards=cards, signature_checked=registry().verify_key is not None)


def version_page(name: str, version: str, comparison: dict | None = None, status: int = 200):
    verification = registry().inspect(name, version)
    active = bundle.read_active(registry().model_dir, name)
    return render_template(
        "console/version.html", name=name, version=version, verification=verification, info=verification.info,
        active=active, is_active=version == active, comparison=comparison,
        signature_checked=registry().verify_key is not None,
        default_n=settings().SHADOW_DEFAULT_N, default_tolerance=DEFAULT_TOLERANCE,
    ), status


@console.get("/models/<string:name>/<string:version>")
def version_detail(name: str, version: str):
    """One version: everything its info file says, its CV plot, and activation."""
    return version_page(name, version)


@console.get("/models/<string:name>/<string:version>/cv_plot.png")
def cv_plot(name: str, version: str):
    """The CV plot of a version that verifies (its hash is in the signed info file)."""
    plot = registry().verified_file(name, version, bundle.PLOT_FILE)
    if plot is None:
        abort(404, "No verified CV plot for this version.")
    return send_file(io.BytesIO(plot), mimetype="image/png", max_age=3600)


@console.post("/models/<string:name>/<string:version>/dry-run")
def dry_run(name: str, version: str):
    """Replay logged traffic through the version and show the comparison, with the activate button."""
    n = _bounded_int(request.form.get("n"), settings().SHADOW_DEFAULT_N, 1, 10_000)
    tolerance = _bounded_float(request.form.get("tolerance"), DEFAULT_TOLERANCE, 0, 1e12)
    try:
        candidate = registry().candidate(name, version)
        active = registry().get(name)
    except ServiceError as exc:
        flash(f"{name} {version} cannot be compared: {exc.detail}", "error")
        return version_page(name, version, status=exc.status)
    flush_log()
    logged = prediction_log.recent_accepted(name, active.version, n)
    report = shadow.compare(active, candidate, logged, tolerance)
    return version_page(name, version, comparison={"report": report, "n": n, "tolerance": tolerance})


@console.post("/models/<string:name>/<string:version>/activate")
def activate(name: str, version: str):
    """Make the version active in every worker."""
    try:
        served = registry().activate(name, version)
    except ServiceError as exc:
        flash(f"{name} {version} was not activated: {exc.detail}", "error")
        return redirect(url_for("console.version_detail", name=name, version=version))
    flash(f"{served.name} {served.version} is active now; every worker serves it from its next request.", "ok")
    return redirect(url_for("console.models") + f"#model-{served.name}")


# --- traffic ------------------------------------------------------------------------------------------------


@console.get("/traffic")
def traffic():
    """Requests, rejections, latency, rows and OOD share per time bucket, as charts."""
    key = request.args.get("range", "1h")
    if key not in RANGES:
        key = "1h"
    label, length, bucket = RANGES[key]
    model = request.args.get("model") or None
    if model not in registry().names():
        model = None
    now = dt.datetime.now(dt.UTC)
    until = dt.datetime.fromtimestamp((now.timestamp() // bucket + 1) * bucket, dt.UTC)
    since = until - length
    flush_log()
    buckets = prediction_log.traffic(since, until, bucket, model)
    totals = prediction_log.traffic_totals(since, until, model)
    starts = [item["start"] for item in buckets]
    per_minute = 60 / bucket

    def chart(series: list[Series], title: str, **kwargs: Any):
        return time_chart(since, until, bucket, starts, series, label=title, **kwargs)

    rate = "requests per minute" if bucket == 60 else f"requests per minute (mean over {bucket // 60} min)"
    charts = [
        (rate, chart([Series("accepted", [b["n_accepted"] * per_minute for b in buckets], "accepted"),
                      Series("rejected", [b["n_rejected"] * per_minute for b in buckets], "rejected")],
                     rate, stacked=True)),
        ("latency, ms", chart([Series("p50", [b["p50_ms"] for b in buckets], "p50"),
                               Series("p99", [b["p99_ms"] for b in buckets], "p99")],
                              "latency in milliseconds", kind="lines", unit=" ms")),
        (f"rows predicted per {bucket // 60} min", chart([Series("rows", [b["n_rows"] for b in buckets], "rows")],
                                                         "rows predicted")),
        ("out-of-distribution share of rows", chart(
            [Series("OOD-flagged", [None if b["ood_share"] is None else b["ood_share"] * 100 for b in buckets],
                    "ood")], "share of rows flagged out of distribution", kind="lines", unit="%")),
    ]
    return render_template("console/traffic.html", charts=charts, totals=totals, ranges=RANGES, range_key=key,
                           range_label=label, since=since, until=until, model=model, names=registry().names(),
                           bucket_minutes=bucket // 60)


# --- the log ----------------------------------------------------------------------------------------------------


@console.get("/log")
def log():
    """Recent requests, filtered as GET /predictions filters them."""
    problems = []
    status = _optional_int(request.args.get("status"), 100, 599, "status", problems)
    model = request.args.get("model") or None
    version = (request.args.get("version") or "").strip() or None
    client_id = (request.args.get("client_request_id") or "").strip() or None
    since = _time(request.args.get("since"), "since", problems)
    until = _time(request.args.get("until"), "until", problems)
    limit = _bounded_int(request.args.get("limit"), 50, 1, max(PAGE_SIZES))
    offset = _bounded_int(request.args.get("offset"), 0, 0, 10**9)
    rows, total, total_exact, next_offset = [], 0, True, None
    if not problems:
        flush_log()
        found = prediction_log.query(status=status, model_name=model, model_version=version,
                                     client_request_id=client_id, since=since, until=until,
                                     limit=limit, offset=offset)
        rows, total, total_exact, next_offset = found.rows, found.total, found.total_exact, found.next_offset
    filters = {key: request.args.get(key, "")
               for key in ("status", "model", "version", "client_request_id", "since", "until")}
    kept = {key: value for key, value in filters.items() if value}

    def page(new_offset: int) -> str:
        return url_for("console.log", **kept, limit=limit, offset=new_offset)

    return render_template(
        "console/log.html", rows=[prediction_log.serialize(row) for row in rows], total=total,
        total_exact=total_exact, limit=limit, offset=offset, filters=filters, problems=problems,
        names=registry().names(), page_sizes=PAGE_SIZES,
        newer=page(max(offset - limit, 0)) if offset else None,
        older=page(next_offset) if next_offset is not None else None,
        back=url_for("console.log", **kept, limit=limit, offset=offset),
    )


@console.get("/log/<string:request_id>")
def request_detail(request_id: str):
    """One logged request: its body, the answer, and where the errors are."""
    row = prediction_log.find(request_id)
    if row is None:
        # Answered a moment ago: ship the journal and look again (whoever shipped it, it is there now).
        flush_log()
        row = prediction_log.find(request_id)
    if row is None:
        abort(404, f"No logged request {request_id[:128]!r}.")
    entry = prediction_log.serialize(row)
    body = entry["response_body"] if isinstance(entry["response_body"], dict) else {}
    errors = [item for item in body.get("errors", []) if isinstance(item, dict)]
    back = request.args.get("back", "")
    back = back if back.startswith(url_for("console.log")) else url_for("console.log")
    return render_template("console/request.html", entry=entry, errors=errors, back=back)


# --- drift ------------------------------------------------------------------------------------------------------


@console.get("/drift")
def drift():
    """Per feature: the KS test of the newest logged rows against training, and both distributions."""
    names = registry().names()
    name = request.args.get("model") or settings().MODEL_NAME
    if name not in names and names:
        name = names[0]
    window = _bounded_int(request.args.get("window"), 500, 2, 100_000)
    context: dict[str, Any] = {"names": names, "name": name, "window": window, "windows": DRIFT_WINDOWS,
                               "report": None, "features": [], "n_rows": 0, "problem": None,
                               "min_rows": settings().DRIFT_MIN_ROWS}
    try:
        served = registry().get(name)
    except ServiceError as exc:
        context["problem"] = exc.detail
        return render_template("console/drift.html", **context)
    flush_log()
    bodies = prediction_log.recent_request_bodies(served.name, served.version, window,
                                                   settings().DRIFT_WINDOW_MAX_BYTES)
    X = window_matrix(bodies, served.validator, window)
    context.update(served=served, n_rows=len(X))
    if len(X) >= settings().DRIFT_MIN_ROWS and served.reference is not None:
        report = served.drift_report(X, settings().DRIFT_ALPHA)
        context["report"] = report
        for item in histograms(served.reference, X, served.info["features"]):
            test = report["features"][item["name"]]
            chart = distribution_chart(item["labels"], item["training"], item["recent"],
                                       label=f"{item['name']}: training and recent distributions")
            context["features"].append({**test, "name": item["name"], "chart": chart})
    return render_template("console/drift.html", **context)


# --- errors and helpers ----------------------------------------------------------------------------------------


@console.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return _error_page(error.code or 500, error.name, error.description or error.name)


@console.errorhandler(ServiceError)
def service_error(error: ServiceError):
    return _error_page(error.status, error.title, error.detail)


@console.get("/<path:unknown>")
def not_found(unknown: str) -> Response:
    abort(404, "There is no such console page.")


def _error_page(status: int, title: str, detail: str):
    return render_template("console/error.html", status=status, title=title, detail=detail), status


def _bounded_int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError:
        return default
    return min(max(value, low), high)


def _bounded_float(raw: str | None, default: float, low: float, high: float) -> float:
    try:
        value = float(raw) if raw not in (None, "") else default
    except ValueError:
        return default
    return min(max(value, low), high) if math.isfinite(value) else default


def _optional_int(raw: str | None, low: int, high: int, name: str, problems: list[str]) -> int | None:
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        problems.append(f"{name} must be a number between {low} and {high}")
        return None
    return value


def _time(raw: str | None, name: str, problems: list[str]) -> dt.datetime | None:
    """A time from a datetime-local field (read as UTC) or ISO 8601 text."""
    if raw in (None, ""):
        return None
    text = re.sub(r"Z$", "+00:00", raw.strip().upper())
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} must be a date and time such as 2026-11-23T14:00")
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --- template helpers --------------------------------------------------------------------------------------------


@console.context_processor
def page_context() -> dict[str, Any]:
    return {"signed_in": access.signed_in(), "csp_nonce": g.get("csp_nonce", "")}


@console.app_template_filter("utc")
def format_utc(value: Any) -> str:
    """An ISO time or datetime as 'YYYY-MM-DD HH:MM:SS' in UTC."""
    if not value:
        return "–"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


@console.app_template_filter("num")
def format_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:,.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".")


@console.app_template_filter("pct")
def format_percent(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


@console.app_template_filter("pretty_json")
def pretty_json(value: Any, indent: str = "") -> str:
    """JSON indented for reading, a list of plain values on one line; the template escapes it like any text."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key, ensure_ascii=False)}: {pretty_json(item, inner)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and any(isinstance(item, (dict, list)) for item in value):
        return "[\n" + ",\n".join(inner + pretty_json(item, inner) for item in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
