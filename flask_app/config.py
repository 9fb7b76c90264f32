"""Configuration: one typed object, read once.

Sources, later wins: the defaults below, an optional YAML file named by
CONFIG_FILE (same keys), the environment, and the mapping passed to
``create_app`` (tests). Nothing else in the service reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DRIFT_POLICIES = ("warn", "reject")
DURABILITY_MODES = ("default", "strict")
LOG_FORMATS = ("text", "json")
# Older names still accepted: the first name is the setting, the second what it was called.
ALIASES = {"LOG_JOURNAL_DIR": "LOG_SPOOL_DIR"}


class ConfigError(ValueError):
    """A setting that is missing or malformed: the service refuses to start."""


@dataclass(frozen=True)
class Settings:
    # Where prediction-log rows go. Empty: an embedded SQLite file under var/.
    DATABASE_URL: str = ""
    MODEL_DIR: Path = PROJECT_ROOT / "models"
    # The model that POST /predict serves; every model in the store is served under /models/<name>.
    MODEL_NAME: str = "boston-knn"
    # Public Ed25519 key (PEM path). When set, unsigned or foreign-signed bundles are refused.
    MODEL_VERIFY_KEY: Path | None = None
    # Only learn.py uses the private key; the service accepts the setting to say it ignores it.
    MODEL_SIGNING_KEY: Path | None = None
    ADMIN_TOKEN: str = ""
    # Development mode lets admin endpoints run without ADMIN_TOKEN. Never in production.
    DEV_MODE: bool = False
    MAX_BATCH_ROWS: int = 1000
    MAX_CONTENT_LENGTH: int = 2 * 1024 * 1024
    DRIFT_MIN_ROWS: int = 30
    DRIFT_POLICY: str = "warn"
    # Family-wise significance level of the per-batch KS tests (Bonferroni over features).
    DRIFT_ALPHA: float = 0.01
    OOD_QUANTILE: float = 0.99
    # GET /monitoring/drift stops reading logged request bodies after this many bytes.
    DRIFT_WINDOW_MAX_BYTES: int = 64 * 1024 * 1024
    # Where each process appends log rows before its answer leaves (LOG_SPOOL_DIR is the older name).
    LOG_JOURNAL_DIR: Path = PROJECT_ROOT / "var" / "journal"
    # default: the row is written to the journal before the answer; strict: also fsync'ed.
    LOG_DURABILITY: str = "default"
    # How often the shipper moves journal rows into the database (seconds); 0: only on flush and at exit.
    LOG_SHIP_INTERVAL: float = 0.25
    # A process starts a new journal segment past this size.
    LOG_JOURNAL_SEGMENT_BYTES: int = 64 * 1024 * 1024
    # Rows are refused (503) while the journal holds more than this (the database is away).
    LOG_JOURNAL_MAX_BYTES: int = 1024 * 1024 * 1024
    # Journal bytes per shipped batch (one COPY).
    LOG_SHIP_BATCH_BYTES: int = 4 * 1024 * 1024
    # Statement and lock timeout of every log statement, reads included.
    LOG_DB_TIMEOUT_SECONDS: float = 5.0
    # /ready answers 503 while more rows than this wait in the journal.
    LOG_READY_MAX_BACKLOG_ROWS: int = 100_000
    # text: key=value lines; json: one JSON object per line.
    LOG_FORMAT: str = "text"
    # Raw (non-JSON) request bodies are stored cut to this many characters.
    LOG_RAW_BODY_LIMIT: int = 65536
    LOG_LEVEL: str = "INFO"
    # PostgreSQL: days a logged request is kept (0: forever); `flask log-partitions` drops whole months past it.
    LOG_RETENTION_DAYS: int = 0
    # PostgreSQL: monthly partitions `flask log-partitions` keeps created ahead of the current month.
    LOG_PARTITION_MONTHS_AHEAD: int = 3
    # Proxies in front of the service whose X-Forwarded-For is believed (nginx in docker compose,
    # the ingress in Kubernetes: 1). 0 when clients connect directly, or they could forge client_addr.
    TRUSTED_PROXY_HOPS: int = 0
    # How many logged requests a dry-run activation replays by default.
    SHADOW_DEFAULT_N: int = 200
    # How long a console sign-in lasts.
    CONSOLE_SESSION_HOURS: float = 8.0

    @property
    def database_uri(self) -> str:
        """The SQLAlchemy URL, with the psycopg 3 driver for plain postgresql:// URLs."""
        url = self.DATABASE_URL or f"sqlite:///{PROJECT_ROOT / 'var' / 'predictions.db'}"
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def admin_open(self) -> bool:
        """Admin endpoints without a token: only in explicit development mode."""
        return not self.ADMIN_TOKEN and self.DEV_MODE


def _coerce(name: str, kind: Any, value: Any) -> Any:
    if value is None:
        return None
    text = str(value).strip()
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind in (Path, Path | None):
            return Path(text) if text else None
        return text
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def _current_names(source: Mapping[str, Any]) -> dict[str, Any]:
    """A source's settings with older names read as their current ones (the current name wins)."""
    renamed = {name: source[older] for name, older in ALIASES.items() if older in source and name not in source}
    return {**{key: value for key, value in source.items() if key not in ALIASES.values()}, **renamed}


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults < CONFIG_FILE (YAML) < environment < overrides, checked."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    names = {f.name: f for f in fields(Settings)}
    values: dict[str, Any] = {}
    config_file = overrides.get("CONFIG_FILE") or environ.get("CONFIG_FILE")
    if config_file:
        try:
            from_file = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"CONFIG_FILE {config_file}: {exc}") from None
        if not isinstance(from_file, dict):
            raise ConfigError(f"CONFIG_FILE {config_file} is not a mapping")
        unknown = sorted(set(from_file) - set(names) - set(ALIASES.values()))
        if unknown:
            raise ConfigError(f"CONFIG_FILE {config_file}: unknown keys {', '.join(unknown)}")
        values.update(_current_names(from_file))
    values.update({key: value for key, value in _current_names(environ).items() if key in names})
    values.update({key: value for key, value in _current_names(overrides).items() if key in names})
    hints = typing.get_type_hints(Settings)
    typed = {
        key: value if isinstance(value, Path) else _coerce(key, hints[key], value) for key, value in values.items()
    }
    settings = dataclasses.replace(Settings(), **typed)
    check(settings)
    return settings


# (what must hold, what to say when it does not); checked in this order at start-up.
RULES: list[tuple[Callable[[Settings], bool], str]] = [
    (lambda s: s.MAX_BATCH_ROWS >= 1, "MAX_BATCH_ROWS must be at least 1"),
    (lambda s: s.MAX_CONTENT_LENGTH >= 1024, "MAX_CONTENT_LENGTH must be at least 1024 bytes"),
    (lambda s: s.DRIFT_MIN_ROWS >= 2, "DRIFT_MIN_ROWS must be at least 2"),
    (lambda s: 0 < s.DRIFT_ALPHA < 1, "DRIFT_ALPHA must be between 0 and 1"),
    (lambda s: 0 < s.OOD_QUANTILE < 1, "OOD_QUANTILE must be between 0 and 1"),
    (lambda s: s.LOG_SHIP_INTERVAL >= 0 and s.LOG_DB_TIMEOUT_SECONDS > 0,
     "LOG_SHIP_INTERVAL must be at least 0 and LOG_DB_TIMEOUT_SECONDS above 0"),
    (lambda s: s.LOG_JOURNAL_SEGMENT_BYTES >= 4096 and s.LOG_SHIP_BATCH_BYTES >= 4096,
     "LOG_JOURNAL_SEGMENT_BYTES and LOG_SHIP_BATCH_BYTES must be at least 4096"),
    (lambda s: s.LOG_JOURNAL_MAX_BYTES >= s.LOG_JOURNAL_SEGMENT_BYTES,
     "LOG_JOURNAL_MAX_BYTES must be at least LOG_JOURNAL_SEGMENT_BYTES"),
    (lambda s: s.LOG_RETENTION_DAYS >= 0, "LOG_RETENTION_DAYS must be 0 (keep forever) or more"),
    (lambda s: s.LOG_PARTITION_MONTHS_AHEAD >= 1, "LOG_PARTITION_MONTHS_AHEAD must be at least 1"),
    (lambda s: s.TRUSTED_PROXY_HOPS >= 0, "TRUSTED_PROXY_HOPS must be 0 or more"),
    (lambda s: 0 < s.CONSOLE_SESSION_HOURS <= 24 * 30, "CONSOLE_SESSION_HOURS must be more than 0 and at most 720"),
]
CHOICES = {"DRIFT_POLICY": DRIFT_POLICIES, "LOG_DURABILITY": DURABILITY_MODES, "LOG_FORMAT": LOG_FORMATS}


def check(settings: Settings) -> None:
    for name, allowed in CHOICES.items():
        value = getattr(settings, name)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    for holds, message in RULES:
        if not holds(settings):
            raise ConfigError(message)
    if settings.MODEL_VERIFY_KEY is not None and not settings.MODEL_VERIFY_KEY.is_file():
        raise ConfigError(f"MODEL_VERIFY_KEY {settings.MODEL_VERIFY_KEY} does not exist")
