"""Ways to tamper with a bundle, shared by the unit and end-to-end tests."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import yaml

from ml_models import bundle


class Sentinel:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def rewrite_info(path: Path, change, signing_key: Path | None = None) -> None:
    """Edit model_info.yaml; re-sign it with ``signing_key`` when given (an insider's edit)."""
    info = yaml.safe_load((path / bundle.INFO_FILE).read_bytes())
    change(info)
    data = bundle.dump_info(info)
    (path / bundle.INFO_FILE).write_bytes(data)
    if signing_key is not None:
        (path / bundle.SIGNATURE_FILE).write_bytes(bundle.sign_bytes(bundle.load_private_key(signing_key), data))


def recompute_hashes(path: Path, filename: str):
    def change(info):
        info["files"][filename] = bundle.file_digests(path / filename)

    return change


def signed_copy(source: Path, version: str, signing_key: Path) -> Path:
    """A validly signed copy of ``source`` under a new version id."""
    target = source.parent / version
    shutil.copytree(source, target)
    rewrite_info(target, lambda info: info.update(version=version), signing_key)
    return target


def flip_byte_keep_hashes(path: Path, keys) -> None:
    model = bytearray((path / bundle.MODEL_FILE).read_bytes())
    model[len(model) // 2] ^= 0x01
    (path / bundle.MODEL_FILE).write_bytes(bytes(model))
    rewrite_info(path, recompute_hashes(path, bundle.MODEL_FILE))


def edit_metric(path: Path, keys) -> None:
    rewrite_info(path, lambda info: info["metrics"]["holdout"].update(r2=0.999))


def delete_signature(path: Path, keys) -> None:
    (path / bundle.SIGNATURE_FILE).unlink()


def sign_with_other_key(path: Path, keys) -> None:
    rewrite_info(path, lambda info: None, signing_key=keys["other"])


def another_versions_bundle(path: Path, keys) -> None:
    """Replace the directory's content by the active version's validly signed bundle."""
    other = path.parent / bundle.read_active(path.parent.parent, path.parent.name)
    shutil.rmtree(path)
    shutil.copytree(other, path)


def delete_file(path: Path, keys) -> None:
    (path / bundle.REFERENCE_FILE).unlink()


def malicious_pickle(path: Path, keys) -> None:
    sentinel = path.parent.parent.parent / "pwned"
    (path / bundle.MODEL_FILE).write_bytes(pickle.dumps(Sentinel(str(sentinel))))
    rewrite_info(path, recompute_hashes(path, bundle.MODEL_FILE))


TAMPERS = {
    "flipped-byte": (flip_byte_keep_hashes, bundle.Verdict.BAD_SIGNATURE),
    "edited-metric": (edit_metric, bundle.Verdict.BAD_SIGNATURE),
    "deleted-signature": (delete_signature, bundle.Verdict.UNSIGNED),
    "other-key": (sign_with_other_key, bundle.Verdict.BAD_SIGNATURE),
    "another-versions-bundle": (another_versions_bundle, bundle.Verdict.WRONG_LOCATION),
    "missing-file": (delete_file, bundle.Verdict.MISSING_FILE),
    "malicious-pickle": (malicious_pickle, bundle.Verdict.BAD_SIGNATURE),
}
