"""The model registry: finds, verifies, loads and swaps models. No Flask imports.

Every model name in the store is served. Which version of a name is active
is written in the store (``MODEL_DIR/<name>/ACTIVE``), not kept in one
process: each worker checks that pointer (one ``stat``) when a request asks
for the model and loads the new version when it changed, so an activation
reaches every gunicorn worker on its next request. A version that fails
verification is never swapped in; the worker keeps serving what it had and
remembers why the new one was refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml_models import bundle

from .drift import ks_report, ood_scores
from .errors import ModelRefused, ModelUnavailable, NotFound
from .predictor import ExactKNN, build_predictor
from .validation import Validator

log = logging.getLogger("flask_app.registry")


@dataclass
class Prediction:
    """What a model said about a batch, aligned by row."""

    values: list[Any]
    probabilities: list[dict[str, float]] | None
    ood: list[dict[str, Any]]


class ServedModel:
    """A verified bundle ready to answer: schema validator, predictor, OOD scorer."""

    def __init__(self, loaded: bundle.LoadedBundle, max_rows: int, ood_quantile: float):
        self.loaded = loaded
        self.info = loaded.info
        self.name = loaded.name
        self.version = loaded.version
        self.sha256 = loaded.sha256
        self.task = self.info["task"]
        self.feature_names = loaded.feature_names
        self.validator = Validator(self.info["features"], max_rows)
        self.reference = loaded.reference.get("features")
        self.train_distances = loaded.reference.get("neighbour_distances")
        self.ood_quantile = ood_quantile
        self.loaded_at = time.time()
        self.classes = [int(c) for c in self.info.get("classes", [])]
        self.predictor = build_predictor(loaded.model, self.task, bundle.golden_matrix(self.info), self.reference)

    @property
    def identity(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    @property
    def fast_path(self) -> bool:
        return isinstance(self.predictor, ExactKNN)

    @property
    def decision_threshold(self) -> dict[str, Any] | None:
        """The threshold applied to a binary classifier's probabilities, with how training chose it."""
        rule = self.predictor.rule
        if rule is None:
            return None
        classes = np.asarray(self.predictor.pipeline.classes_)
        return {**(self.info.get("decision_threshold") or {}), "threshold": rule.threshold,
                "positive_class": int(classes[rule.positive_index])}

    def predict(self, X: np.ndarray) -> Prediction:
        output = self.predictor.predict(X)
        probabilities = None
        if output.proba is not None:
            names = [str(c) for c in self.classes]
            probabilities = [dict(zip(names, row, strict=True)) for row in np.round(output.proba, 6).tolist()]
        return Prediction(output.values.tolist(), probabilities, self.ood(output.mean_distance))

    def drift_report(self, X: np.ndarray, alpha: float) -> dict[str, Any]:
        """Per-feature KS test of X against the training features."""
        return ks_report(self.reference, X, self.feature_names, alpha)

    def ood(self, mean_distance: np.ndarray | None) -> list[dict[str, Any]]:
        if mean_distance is None or self.train_distances is None:
            return []
        scores = ood_scores(self.train_distances, mean_distance)
        threshold = self.ood_quantile
        return [{"score": score, "flagged": score > threshold} for score in np.round(scores, 4).tolist()]


@dataclass
class _Slot:
    """One model name in one process: what is served and what was last seen in the store."""

    pointer: str  # the path of the name's ACTIVE file
    served: ServedModel | None = None
    stamp: tuple[int, int] | None = None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelRegistry:
    def __init__(
        self,
        model_dir: Path,
        default_name: str,
        verify_key_path: Path | None,
        max_rows: int,
        ood_quantile: float,
        on_load_failure: Callable[[str, str], None] | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.default_name = default_name
        self.verify_key = bundle.load_public_key(verify_key_path) if verify_key_path else None
        self.max_rows = max_rows
        self.ood_quantile = ood_quantile
        self.on_load_failure = on_load_failure or (lambda name, reason: None)
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        if self.verify_key is None:
            log.warning("MODEL_VERIFY_KEY is not set: bundles are checked for corruption (md5, sha256) "
                        "but their authenticity is not checked")

    # -- serving ----------------------------------------------------------------

    def get(self, name: str | None = None) -> ServedModel:
        """The active model for ``name``, reloaded first if the store's pointer moved."""
        name = name or self.default_name
        slot = self._slot(name)
        if slot is None:
            raise NotFound(f"No model named {name!r} in the store.")
        try:
            stamp = bundle.file_stamp(slot.pointer)
        except OSError as exc:
            raise ModelUnavailable(f"The store's pointer for {name!r} cannot be read: {exc.strerror}.") from None
        if stamp != slot.stamp:
            self._refresh(name, slot, stamp)
        if slot.served is None:
            raise ModelUnavailable(f"No verified model is loaded for {name!r}: {slot.error or 'none is active'}.")
        return slot.served

    def names(self) -> list[str]:
        return bundle.list_models(self.model_dir)

    def load_all(self) -> None:
        """Load every model in the store (at start-up, so the first request does not pay)."""
        for name in {self.default_name, *self.names()}:
            slot = self._slot(name, create=True)
            self._refresh(name, slot, bundle.active_stamp(self.model_dir, name))

    def status(self) -> dict[str, dict[str, Any]]:
        """Per model name: what this process serves, or why nothing."""
        report = {}
        for name in sorted({self.default_name, *self.names(), *self._slots}):
            slot = self._slots.get(name)
            served = slot.served if slot else None
            report[name] = {
                "loaded": served is not None,
                "version": served.version if served else None,
                "error": slot.error if slot else "not loaded yet",
            }
        return report

    def _slot(self, name: str, create: bool = False) -> _Slot | None:
        slot = self._slots.get(name)
        if slot is None:
            if not create and not (bundle.NAME_PATTERN.match(name) and (self.model_dir / name).is_dir()):
                return None
            with self._slots_lock:
                slot = self._slots.setdefault(name, _Slot(str(bundle.model_root(self.model_dir, name) /
                                                                 bundle.ACTIVE_FILE)))
        return slot

    def _refresh(self, name: str, slot: _Slot, stamp: tuple[int, int] | None) -> None:
        """Serve what the pointer names. The stamp is recorded only with an outcome (loaded or refused),
        so nothing that failed half-way is mistaken for done."""
        with slot.lock:
            if stamp == slot.stamp and (slot.served is not None or slot.error):
                return  # another thread got here first
            try:
                version = bundle.read_active(self.model_dir, name)
            except OSError as exc:
                slot.error = f"the pointer {self.model_dir / name / bundle.ACTIVE_FILE} cannot be read: {exc.strerror}"
                log.error("model refused name=%s verdict=unreadable detail=%s", name, slot.error)
                return  # stamp left as it was: the next request tries again
            if version is None:
                slot.stamp, slot.error = stamp, f"no active version in {self.model_dir / name}"
                return
            if slot.served is not None and slot.served.version == version:
                slot.stamp, slot.error = stamp, None
                return
            try:
                slot.served = self._load(name, version)
                slot.error = None
                log.info("model loaded name=%s version=%s sha256=%s", name, version, slot.served.sha256)
            except ModelRefused as exc:
                slot.error = exc.detail
                log.error("still serving name=%s version=%s", name, slot.served.version if slot.served else "nothing")
            slot.stamp = stamp

    def _load(self, name: str, version: str) -> ServedModel:
        try:
            path = bundle.version_path(self.model_dir, name, version)
        except ValueError as exc:
            raise ModelRefused(str(exc), verdict="invalid_version") from None
        if not path.is_dir():
            raise ModelRefused(f"{name} has no version {version}", verdict="missing_file")
        try:
            loaded = bundle.load(path, self.verify_key)
        except bundle.BundleError as exc:
            raise self._refused(name, version, exc.verdict.value, exc.detail) from None
        try:
            return ServedModel(loaded, self.max_rows, self.ood_quantile)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a verified bundle this code cannot serve
            raise self._refused(name, version, bundle.Verdict.UNLOADABLE.value,
                                f"cannot be served: {type(exc).__name__}: {exc}") from None

    def _refused(self, name: str, version: str, verdict: str, detail: str) -> ModelRefused:
        # The audit line for every refused bundle, at start-up, on reload and on activation.
        log.error("model refused name=%s version=%s verdict=%s detail=%s", name, version, verdict, detail)
        self.on_load_failure(name, verdict)
        return ModelRefused(f"{name}/{version} refused: {verdict}: {detail}", verdict=verdict)

    # -- the store ----------------------------------------------------------------

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a model with whether it is active and whether it verifies."""
        if not bundle.NAME_PATTERN.match(name) or not (self.model_dir / name).is_dir():
            raise NotFound(f"No model named {name!r} in the store.")
        active = bundle.read_active(self.model_dir, name)
        listing = []
        for version in reversed(bundle.list_versions(self.model_dir, name)):
            path = bundle.version_path(self.model_dir, name, version)
            verification = bundle.verify(path, self.verify_key)
            entry: dict[str, Any] = {
                "version": version,
                "active": version == active,
                "verified": verification.ok,
                "verdict": verification.verdict.value,
                "detail": verification.detail,
                "signed": verification.signed,
            }
            if verification.info:
                entry["created_at"] = verification.info.get("created_at")
                entry["metrics"] = verification.info.get("metrics", {}).get("holdout")
                entry["baseline"] = verification.info.get("metrics", {}).get("baseline")
                entry["best_params"] = verification.info.get("best_params")
                entry["libraries"] = verification.info.get("versions")
            listing.append(entry)
        return listing

    def inspect(self, name: str, version: str) -> bundle.Verification:
        """Verify one version without unpickling it: the verdict, and the info file when it verifies."""
        if not self.has_version(name, version):
            raise NotFound(f"No version {version[:64]!r} of {name[:64]!r}.")
        return bundle.verify(bundle.version_path(self.model_dir, name, version), self.verify_key)

    def verified_file(self, name: str, version: str, filename: str) -> bytes | None:
        """The exact bytes of one file of a version that verifies (None when it does not or has no such file)."""
        if not self.has_version(name, version):
            raise NotFound(f"No version {version[:64]!r} of {name[:64]!r}.")
        verification, files = bundle.verified_files(bundle.version_path(self.model_dir, name, version),
                                                    self.verify_key)
        return files.get(filename) if verification.ok else None

    def has_version(self, name: str, version: str) -> bool:
        """Whether the store holds that version of that model (verified or not)."""
        if not bundle.NAME_PATTERN.match(name) or not bundle.VERSION_PATTERN.match(version):
            return False
        return (self.model_dir / name / version).is_dir()

    def candidate(self, name: str, version: str) -> ServedModel:
        """Verify and load a version without activating it (ModelRefused when it fails)."""
        if self._slot(name) is None:
            raise NotFound(f"No model named {name!r} in the store.")
        if not self.has_version(name, version):
            raise NotFound(f"No version {version!r} of {name!r}.")
        return self._load(name, version)

    def activate(self, name: str, version: str) -> ServedModel:
        """Verify, load, then point the store at the version and serve it here at once."""
        served = self.candidate(name, version)
        written = bundle.write_active(self.model_dir, name, version)
        slot = self._slot(name, create=True)
        with slot.lock:
            slot.served = served
            slot.error = None
            # The stamp of the pointer this call wrote: if another activation replaced it since, the
            # next request sees a different stamp and loads what that one named.
            slot.stamp = written
        log.info("model activated name=%s version=%s", name, version)
        return served
