"""Request body -> feature matrix, driven by the bundle's feature schema.

Two layers, both free of Flask:

- ``parse_json`` turns raw bytes into a JSON value, refusing what the standard
  library would let through: bad UTF-8, duplicate keys, NaN and Infinity,
  lone surrogates, and nesting deep enough to exhaust the parser.
- ``Validator`` turns ``{"instances": [...]}`` into a float matrix in the
  model's feature order. Well-formed batches take a vectorised fast path;
  anything else goes through a slow path that lists every problem with its
  location (``instances/3/CRIM``).
"""

from __future__ import annotations

import itertools
import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .errors import InvalidInput, MalformedBody

# Reported problems are capped so that a hostile batch cannot make the answer huge.
MAX_REPORTED_ERRORS = 100
MAX_REPORTED_WARNINGS = 200
# No feature a model here is trained on comes near this; larger magnitudes would
# overflow the scaled distances, so they are refused as outside every domain.
MAX_ABS_VALUE = 1e12
_NUMBER_TYPES = (int, float)
_NUMBER_TYPE_SET = frozenset(_NUMBER_TYPES)


class _DuplicateKey(ValueError):
    pass


class _NonFinite(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def parse_json(raw: bytes) -> Any:
    """Strict JSON: every refusal is a MalformedBody naming the reason.

    orjson reads the body when it can prove the strict reading would be the
    same: it refuses everything the strict parser refuses (bad UTF-8, a BOM,
    NaN and Infinity, overflowing numbers, lone surrogates, deep nesting)
    except duplicate keys, which it keeps the last of. A discarded key takes
    its quotes with it, so a document whose re-serialisation holds as many
    quote characters as the body had no duplicate key; ``\\u`` escapes (which
    can spell a quote without one) send the body to the strict parser.
    Anything orjson refuses is read again by the strict parser, which says why.
    """
    if b"\\u" not in raw:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            quotes = raw.count(b'"')
            # Two keys take four quotes: with fewer (rows as arrays) no key can repeat.
            if quotes < 4 or quotes == orjson.dumps(value).count(b'"'):
                return value
    return _parse_strict(raw)


def _parse_strict(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise MalformedBody("The body is empty; send a JSON object with 'instances'.")
    if text.startswith("\ufeff"):
        raise MalformedBody("The body starts with a byte order mark; send plain UTF-8 JSON.")
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise MalformedBody("The JSON is nested too deeply.") from None
    except _DuplicateKey as exc:
        raise MalformedBody(f"The JSON has a duplicate key {str(exc)[:100]!r}.") from None
    except _NonFinite as exc:
        raise MalformedBody(f"{exc} is not a JSON number; send finite numbers only.") from None
    except ValueError as exc:  # JSONDecodeError, and int conversion limits
        raise MalformedBody(f"The body is not valid JSON: {str(exc)[:200]}") from None
    if "\\u" in text and _has_lone_surrogate(value):
        raise MalformedBody("The JSON holds a lone UTF-16 surrogate escape, which is not valid Unicode.")
    return value


# --- the schema -------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    minimum: float
    maximum: float
    allowed: tuple[float, ...] | None = None
    nonnegative: bool = False

    @classmethod
    def from_info(cls, entry: dict[str, Any]) -> Feature:
        allowed = entry.get("allowed")
        return cls(
            name=entry["name"],
            dtype=entry.get("dtype", "float"),
            minimum=float(entry["min"]),
            maximum=float(entry["max"]),
            allowed=tuple(float(v) for v in allowed) if allowed else None,
            nonnegative=bool(entry.get("nonnegative", False)),
        )

    def domain_problem(self, value: float) -> str | None:
        """Why a finite value is outside the feature's domain, or None."""
        if self.allowed is not None and value not in self.allowed:
            shown = ", ".join(_format_number(v) for v in self.allowed)
            return f"must be one of {shown}"
        if self.nonnegative and value < 0:
            return "must not be negative (the training data has no negative values)"
        return None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass
class Batch:
    """A validated request: the matrix in feature order and the range warnings."""

    X: np.ndarray
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]


class Validator:
    """Checks payloads against one model's feature schema."""

    def __init__(self, features: list[dict[str, Any]], max_rows: int):
        self.features = [Feature.from_info(entry) for entry in features]
        self.names = [feature.name for feature in self.features]
        self.name_set = frozenset(self.names)
        self._pick = operator.itemgetter(*self.names)
        self.n_features = len(self.features)
        self.max_rows = max_rows
        self.minimum = np.array([f.minimum for f in self.features])
        self.maximum = np.array([f.maximum for f in self.features])
        self.nonnegative = np.array([f.nonnegative for f in self.features])
        self.categorical = [(i, np.array(f.allowed)) for i, f in enumerate(self.features) if f.allowed]

    # -- public ---------------------------------------------------------------

    def validate(self, payload: Any) -> Batch:
        rows = self._instances(payload)
        X = self._fast_matrix(rows)
        if X is None or not self._domain_ok(X):
            X = self._slow_matrix(rows)
        return Batch(X, self.range_warnings(X))

    def range_warnings(self, X: np.ndarray) -> list[dict[str, Any]]:
        """One warning per value outside the range seen in training."""
        if not ((self.minimum > X) | (self.maximum < X)).any():
            return []
        below = self.minimum > X
        above = self.maximum < X
        warnings = []
        for row, col in zip(*np.nonzero(below | above), strict=True):
            feature = self.features[col]
            value = float(X[row, col])
            if below[row, col]:
                reason = f"below the training minimum {_format_number(feature.minimum)}"
            else:
                reason = f"above the training maximum {_format_number(feature.maximum)}"
            warnings.append({"row": int(row), "feature": feature.name, "value": value,
                             "reason": f"outside the training range: {reason}"})
            if len(warnings) == MAX_REPORTED_WARNINGS:
                break
        return warnings

    # -- the envelope ---------------------------------------------------------

    def _instances(self, payload: Any) -> list[Any]:
        if not isinstance(payload, dict):
            raise InvalidInput(
                "The body must be a JSON object with an 'instances' list.",
                [{"location": "", "message": f"expected an object, got {_type_name(payload)}"}],
            )
        errors = [{"location": key[:100], "message": "unknown key; the body takes only 'instances'"}
                  for key in payload if key != "instances"][:MAX_REPORTED_ERRORS]
        if "instances" not in payload:
            errors.insert(0, {"location": "instances", "message": "required"})
            raise InvalidInput("The body has no 'instances'.", errors)
        rows = payload["instances"]
        if not isinstance(rows, list):
            errors.insert(0, {"location": "instances", "message": f"must be an array, got {_type_name(rows)}"})
        elif not rows:
            errors.insert(0, {"location": "instances", "message": "must hold at least one row"})
        elif len(rows) > self.max_rows:
            errors.insert(0, {"location": "instances",
                              "message": f"{len(rows)} rows; at most {self.max_rows} per request"})
        if errors:
            raise InvalidInput("The request cannot be used as it is.", errors)
        return rows

    # -- fast path: well-formed batches, vectorised ---------------------------

    def _fast_matrix(self, rows: list[Any]) -> np.ndarray | None:
        """The matrix of a well-formed batch, or None to let the slow path explain what is wrong."""
        n = self.n_features
        first = rows[0]
        if type(first) is list:
            if not all(type(row) is list and len(row) == n for row in rows):
                return None
            values = rows
        elif type(first) is dict:
            # C-level loops: a thousand rows are checked without a Python-level step per row.
            if set(map(type, rows)) != {dict} or not all(
                    map(operator.eq, map(dict.keys, rows), itertools.repeat(self.name_set))):
                return None
            values = list(map(self._pick, rows))
        else:
            return None
        # NumPy would turn True and "2.5" into numbers: only int and float may pass.
        if not set(map(type, itertools.chain.from_iterable(values))) <= _NUMBER_TYPE_SET:
            return None
        try:
            X = np.array(values, dtype=float)
        except (ValueError, TypeError, OverflowError):
            return None
        # NaN fails the comparison too.
        return X if X.ndim == 2 and (np.abs(X) <= MAX_ABS_VALUE).all() else None

    def _domain_ok(self, X: np.ndarray) -> bool:
        if self.nonnegative.any() and (X[:, self.nonnegative] < 0).any():
            return False
        # A handful of allowed values per column: comparing with each beats np.isin's set machinery.
        return all((X[:, col, None] == allowed).any(axis=1).all() for col, allowed in self.categorical)

    # -- slow path: every problem with its location ---------------------------

    def _slow_matrix(self, rows: list[Any]) -> np.ndarray:
        errors: list[dict[str, str]] = []
        n_errors = 0

        def report(location: str, message: str) -> None:
            nonlocal n_errors
            n_errors += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append({"location": location, "message": message})

        X = np.zeros((len(rows), self.n_features))
        for index, row in enumerate(rows):
            where = f"instances/{index}"
            if isinstance(row, dict):
                for key in row:
                    if key not in self.name_set:
                        report(f"{where}/{str(key)[:100]}", "unknown feature")
                cells = []
                for col, feature in enumerate(self.features):
                    if feature.name in row:
                        cells.append((col, f"{where}/{feature.name}", row[feature.name]))
                    else:
                        report(f"{where}/{feature.name}", "required feature is missing")
            elif isinstance(row, list):
                if len(row) != self.n_features:
                    report(where, f"row has {len(row)} values; the model takes {self.n_features} "
                                  f"({', '.join(self.names)})")
                    continue
                cells = [(col, f"{where}/{col}", value) for col, value in enumerate(row)]
            else:
                report(where, f"row must be an object keyed by feature name or an array, got {_type_name(row)}")
                continue
            for col, location, value in cells:
                problem = self._cell_problem(self.features[col], value)
                if problem:
                    label = "" if location.endswith(self.features[col].name) else f" ({self.features[col].name})"
                    report(location, problem + label)
                else:
                    X[index, col] = float(value)
        if n_errors:
            more = f"; the first {MAX_REPORTED_ERRORS} are listed" if n_errors > MAX_REPORTED_ERRORS else ""
            raise InvalidInput(f"{n_errors} problem{'s' if n_errors > 1 else ''} in 'instances'{more}.", errors)
        return X

    @staticmethod
    def _cell_problem(feature: Feature, value: Any) -> str | None:
        if type(value) not in _NUMBER_TYPES:
            return f"must be a number, got {_type_name(value)}"
        try:
            number = float(value)
        except OverflowError:
            return "number is too large"
        if not math.isfinite(number):
            return "number is not finite (it overflows a 64-bit float)"
        if abs(number) > MAX_ABS_VALUE:
            return f"number is too large (the magnitude may be at most {MAX_ABS_VALUE:g})"
        return feature.domain_problem(number)
