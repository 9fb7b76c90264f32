"""Shared fixtures: trained bundles, keys, and (in later modules) the app and the database."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ml_models import bundle, learn

DATA_DIR = Path(learn.__file__).parent / "data"


def train_into(model_dir: Path, *extra: str, signing_key: Path | None = None) -> Path:
    """Train with learn.main in-process; returns the new version directory."""
    argv = ["--model-dir", str(model_dir), "--quiet", *extra]
    if signing_key is not None:
        argv += ["--signing-key", str(signing_key)]
    before = set(model_dir.glob("*/*")) if model_dir.exists() else set()
    assert learn.main(argv) == 0
    (new,) = set(model_dir.glob("*/*")) - before - {p for p in model_dir.glob("*/ACTIVE")}
    return new


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two Ed25519 key pairs: the trusted one and another."""
    root = tmp_path_factory.mktemp("keys")
    pairs = {}
    for label in ("trusted", "other"):
        private, public = root / f"{label}.pem", root / f"{label}.pub.pem"
        bundle.generate_key_pair(private, public)
        pairs[label] = private
        pairs[f"{label}_public"] = public
    return pairs


@pytest.fixture(scope="session")
def signed_store(tmp_path_factory, keys) -> Path:
    """A model store with one signed Boston bundle (trained once per session; copy before changing)."""
    store = tmp_path_factory.mktemp("signed-store")
    train_into(store, "--max-neighbors", "8", signing_key=keys["trusted"])
    return store


@pytest.fixture
def store(tmp_path, signed_store) -> Path:
    """A private copy of the signed store."""
    copy = tmp_path / "models"
    shutil.copytree(signed_store, copy)
    return copy


@pytest.fixture
def bundle_dir(store) -> Path:
    name = "boston-knn"
    return store / name / bundle.read_active(store, name)
