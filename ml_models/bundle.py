"""The model bundle format, shared by training and serving.

A bundle is one directory, ``MODEL_DIR/<name>/<version>/``, holding:

- ``model.pkl``: the fitted estimator (pickle protocol 5);
- ``reference.npz``: training features for drift tests and the
  leave-one-out neighbour-distance distribution for out-of-distribution
  scores (NumPy arrays only, loaded with ``allow_pickle=False``);
- ``cv_plot.png``, ``learning_curve.png`` and, for a classifier,
  ``reliability.png``: what the search saw and how good the model is
  (``PLOT_FILES``; any PNG a caller passes is hashed like the rest);
- ``model_info.yaml``: what produced the model, its metrics, its feature
  schema, golden predictions, and the md5, sha256 and size of every file
  above;
- ``model_info.yaml.sig``: an Ed25519 signature over the exact bytes of
  ``model_info.yaml`` (absent when the bundle is unsigned).

Because the info file carries every other file's hashes, one signature over
it vouches for the whole bundle. Verification runs in this order and stops at
the first failure: info file present and parseable, signature (when a verify
key is configured), name and version match the directory, every file's size,
md5 and sha256, the scikit-learn version. Only then is ``model.pkl``
unpickled, and the golden predictions must come out again.

Every file is read once, through the bundle's directory and without
following a symbolic link, and what is hashed is exactly what is unpickled:
a file swapped after it was checked is never the one that is loaded.

The active version of a model is named in ``MODEL_DIR/<name>/ACTIVE``,
replaced atomically.

This module must not import Flask: training imports it too.
"""

from __future__ import annotations

import base64
import enum
import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

MODEL_FILE = "model.pkl"
REFERENCE_FILE = "reference.npz"
PLOT_FILE = "cv_plot.png"
LEARNING_CURVE_FILE = "learning_curve.png"
RELIABILITY_FILE = "reliability.png"
PLOT_FILES = (PLOT_FILE, LEARNING_CURVE_FILE, RELIABILITY_FILE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.png$")
INFO_FILE = "model_info.yaml"
SIGNATURE_FILE = INFO_FILE + ".sig"
ACTIVE_FILE = "ACTIVE"
PICKLE_PROTOCOL = 5
FORMAT_VERSION = 1

# Versions are directory names: a UTC timestamp, optionally with a suffix.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_PATTERN = VERSION_PATTERN

GOLDEN_RTOL = 1e-9
GOLDEN_ATOL = 1e-9


class Verdict(enum.StrEnum):
    """Outcome of verifying a bundle; ``OK`` is the only one that may be loaded."""

    OK = "ok"
    MISSING_FILE = "missing_file"
    INVALID_INFO = "invalid_info"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    WRONG_LOCATION = "wrong_location"
    CORRUPTED_FILE = "corrupted_file"
    VERSION_MISMATCH = "version_mismatch"
    UNREADABLE = "unreadable"
    UNLOADABLE = "unloadable"
    GOLDEN_MISMATCH = "golden_mismatch"


class BundleError(Exception):
    """A bundle that must not be served, with the verdict that says why."""

    def __init__(self, verdict: Verdict, detail: str):
        super().__init__(f"{verdict.value}: {detail}")
        self.verdict = verdict
        self.detail = detail


@dataclass(frozen=True)
class Verification:
    """The result of ``verify``: the verdict, why, and whether it was signed."""

    verdict: Verdict
    detail: str
    signed: bool = False
    info: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


# --- hashing and atomic files -------------------------------------------------


def file_digests(path: Path) -> dict[str, Any]:
    """md5, sha256 and size of a file."""
    return digests(Path(path).read_bytes())


def digests(data: bytes) -> dict[str, Any]:
    """md5, sha256 and size of some bytes."""
    return {"md5": hashlib.md5(data, usedforsecurity=False).hexdigest(), "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def sha256_of(path: Path) -> str:
    return file_digests(path)["sha256"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes, mode: int = 0o644) -> tuple[int, int]:
    """Write ``data`` to ``path`` so a reader sees the old or the new file, never half.

    Returns the new file's stamp (inode, mtime): what ``active_stamp`` reads
    for as long as this file is the one at ``path``.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)  # mkstemp makes it 0600; a reader may run as another user
            os.fsync(handle.fileno())
            written = os.fstat(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return (written.st_ino, written.st_mtime_ns)


# --- keys and signatures -------------------------------------------------------


def generate_key_pair(private_path: Path, public_path: Path) -> None:
    """Write a new Ed25519 key pair as PEM files; the private one is mode 0600."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(public_pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def sign_bytes(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The detached signature as it is stored: base64 text and a newline."""
    return base64.b64encode(key.sign(data)) + b"\n"


def check_signature(key: Ed25519PublicKey, data: bytes, stored: bytes) -> bool:
    try:
        key.verify(base64.b64decode(stored.strip(), validate=True), data)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the store -----------------------------------------------------------------


def model_root(model_dir: Path, name: str) -> Path:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid model name {name!r}")
    return Path(model_dir) / name


def version_path(model_dir: Path, name: str, version: str) -> Path:
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"invalid version {version!r}")
    return model_root(model_dir, name) / version


def list_models(model_dir: Path) -> list[str]:
    """Names of the models in the store: directories holding at least one version."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and NAME_PATTERN.match(entry.name) and list_versions(root, entry.name)
    )


def list_versions(model_dir: Path, name: str) -> list[str]:
    """Version directories of a model, oldest first (versions sort by time)."""
    root = model_root(model_dir, name)
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and VERSION_PATTERN.match(entry.name) and not entry.name.startswith(".")
    )


def read_active(model_dir: Path, name: str) -> str | None:
    """The active version named in the store, or None when none is set."""
    try:
        text = (model_root(model_dir, name) / ACTIVE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    version = text.strip()
    return version if VERSION_PATTERN.match(version) else None


def write_active(model_dir: Path, name: str, version: str) -> tuple[int, int]:
    """Point the store at ``version``, atomically; every reader sees old or new.

    Returns the stamp of the pointer this call wrote (see ``active_stamp``).
    """
    if not version_path(model_dir, name, version).is_dir():
        raise FileNotFoundError(f"no version {version} of {name} in {model_dir}")
    return write_file_atomic(model_root(model_dir, name) / ACTIVE_FILE, f"{version}\n".encode())


def active_stamp(model_dir: Path, name: str) -> tuple[int, int] | None:
    """A cheap fingerprint of the ACTIVE pointer (inode, mtime): it changes on every write."""
    return file_stamp(str(model_root(model_dir, name) / ACTIVE_FILE))


def file_stamp(path: str) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when it does not exist: one stat."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


# --- writing -------------------------------------------------------------------


def dump_info(info: dict[str, Any]) -> bytes:
    return yaml.safe_dump(info, sort_keys=False, allow_unicode=True).encode("utf-8")


def write_bundle(
    model_dir: Path,
    name: str,
    version: str,
    model: Any,
    info: dict[str, Any],
    reference: dict[str, np.ndarray],
    plots: dict[str, bytes],
    signing_key: Ed25519PrivateKey | None = None,
) -> Path:
    """Write a complete bundle and return its directory.

    ``plots`` maps file names (``something.png``) to PNG bytes; each is
    listed in the info file with its hashes like every other file.
    Everything is written into a hidden temporary directory beside the target,
    fsync'ed, and renamed into place: the version directory appears complete
    or not at all.
    """
    check_plots(plots)
    root = model_root(model_dir, name)
    target = version_path(model_dir, name, version)
    root.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{version}."))
    try:
        with open(staging / MODEL_FILE, "wb") as handle:
            pickle.dump(model, handle, protocol=PICKLE_PROTOCOL)
        with open(staging / REFERENCE_FILE, "wb") as handle:
            np.savez(handle, **reference)
        for filename, png in plots.items():
            (staging / filename).write_bytes(png)
        info = dict(info, name=name, version=version, format=FORMAT_VERSION)
        info["files"] = {
            filename: file_digests(staging / filename)
            for filename in (MODEL_FILE, REFERENCE_FILE, *plots)
        }
        info_bytes = dump_info(info)
        (staging / INFO_FILE).write_bytes(info_bytes)
        if signing_key is not None:
            (staging / SIGNATURE_FILE).write_bytes(sign_bytes(signing_key, info_bytes))
        for entry in staging.iterdir():
            with open(entry, "rb") as handle:
                os.fsync(handle.fileno())
        # mkdtemp makes the directory private; a bundle is readable like any model file.
        os.chmod(staging, 0o755)  # noqa: S103
        fsync_dir(staging)
        os.rename(staging, target)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def check_plots(plots: dict[str, bytes]) -> None:
    """Plot files are plain PNG names that cannot collide with the bundle's other files."""
    for filename, png in plots.items():
        if not PLOT_NAME_PATTERN.match(filename):
            raise ValueError(f"invalid plot file name {filename!r}: letters, digits, '_' and '-', ending in .png")
        if not png.startswith(PNG_SIGNATURE):
            raise ValueError(f"{filename} is not a PNG")


# --- reading and verifying -----------------------------------------------------


def verify(
    path: Path,
    verify_key: Ed25519PublicKey | None = None,
    sklearn_version: str | None = None,
) -> Verification:
    """Check a bundle without unpickling anything.

    With ``verify_key`` the signature is required and must be by that key.
    ``sklearn_version`` defaults to the installed scikit-learn.
    """
    return _verify(Path(path), verify_key, sklearn_version)[0]


def verified_files(
    path: Path, verify_key: Ed25519PublicKey | None = None
) -> tuple[Verification, dict[str, bytes]]:
    """``verify``, with the exact bytes of the files it checked (for a caller that serves one of them)."""
    return _verify(Path(path), verify_key, None)


def _read(directory: int, name: str) -> bytes | None:
    """One file of a bundle, read once through the bundle's directory; no symlink is followed."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", name)
        return handle.read()


def _verify(
    path: Path,
    verify_key: Ed25519PublicKey | None,
    sklearn_version: str | None,
) -> tuple[Verification, dict[str, bytes]]:
    """The verification and the exact bytes it checked, each file read once.

    Whoever uses a file afterwards uses these bytes, never the path again:
    swapping a file after it was checked changes nothing that is loaded.
    """
    try:
        directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return Verification(Verdict.MISSING_FILE, f"{path} does not exist"), {}
    except OSError as exc:
        return Verification(Verdict.UNREADABLE, f"{path} cannot be opened as a directory: {exc.strerror}"), {}
    try:
        return _verify_files(path, directory, verify_key, sklearn_version)
    except OSError as exc:
        return Verification(Verdict.UNREADABLE, f"{exc.filename or path}: {exc.strerror}"), {}
    finally:
        os.close(directory)


def _verify_files(
    path: Path,
    directory: int,
    verify_key: Ed25519PublicKey | None,
    sklearn_version: str | None,
) -> tuple[Verification, dict[str, bytes]]:
    info_bytes = _read(directory, INFO_FILE)
    if info_bytes is None:
        return Verification(Verdict.MISSING_FILE, f"{INFO_FILE} is missing"), {}

    signature = _read(directory, SIGNATURE_FILE)
    signed = signature is not None
    if verify_key is not None:
        if signature is None:
            return Verification(Verdict.UNSIGNED, f"{SIGNATURE_FILE} is missing"), {}
        if not check_signature(verify_key, info_bytes, signature):
            return Verification(
                Verdict.BAD_SIGNATURE,
                f"the signature over {INFO_FILE} does not verify with the configured key",
                signed=True,
            ), {}

    try:
        info = yaml.safe_load(info_bytes)
    except yaml.YAMLError as exc:
        return Verification(Verdict.INVALID_INFO, f"{INFO_FILE} is not valid YAML: {exc}", signed), {}
    problem = _info_problem(info)
    if problem:
        return Verification(Verdict.INVALID_INFO, problem, signed), {}

    if info["version"] != path.name or info["name"] != path.parent.name:
        return Verification(
            Verdict.WRONG_LOCATION,
            f"the bundle says it is {info['name']}/{info['version']} "
            f"but lies in {path.parent.name}/{path.name}",
            signed,
        ), {}

    contents = {}
    for filename, expected in info["files"].items():
        if not isinstance(filename, str) or "/" in filename or filename.startswith("."):
            return Verification(Verdict.INVALID_INFO, f"bad file name {filename!r}", signed), {}
        data = _read(directory, filename)
        if data is None:
            return Verification(Verdict.MISSING_FILE, f"{filename} is missing", signed), {}
        actual = digests(data)
        for key in ("size", "md5", "sha256"):
            if actual[key] != expected.get(key):
                return Verification(
                    Verdict.CORRUPTED_FILE,
                    f"{filename}: {key} is {actual[key]}, the info file says {expected.get(key)}",
                    signed,
                ), {}
        contents[filename] = data

    if sklearn_version is None:
        import sklearn

        sklearn_version = sklearn.__version__
    trained_with = info.get("versions", {}).get("scikit-learn")
    if trained_with != sklearn_version:
        return Verification(
            Verdict.VERSION_MISMATCH,
            f"trained with scikit-learn {trained_with}, this process has {sklearn_version}",
            signed,
        ), {}
    verdict = Verification(Verdict.OK, "verified" if signed and verify_key else "hashes match", signed, info)
    return verdict, contents


def _info_problem(info: Any) -> str | None:
    if not isinstance(info, dict):
        return f"{INFO_FILE} is not a mapping"
    for key in ("name", "version", "files", "features", "golden", "task"):
        if key not in info:
            return f"{INFO_FILE} has no {key!r}"
    if not isinstance(info["files"], dict) or MODEL_FILE not in info["files"]:
        return f"{INFO_FILE} lists no {MODEL_FILE}"
    if not all(isinstance(v, dict) for v in info["files"].values()):
        return f"{INFO_FILE} has a malformed files entry"
    return None


@dataclass
class LoadedBundle:
    """A verified, unpickled bundle."""

    path: Path
    info: dict[str, Any]
    model: Any
    reference: dict[str, np.ndarray]
    verification: Verification

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def version(self) -> str:
        return self.info["version"]

    @property
    def sha256(self) -> str:
        return self.info["files"][MODEL_FILE]["sha256"]

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.info["features"]]


def load(path: Path, verify_key: Ed25519PublicKey | None = None) -> LoadedBundle:
    """Verify, then unpickle the very bytes that were verified, then check the golden predictions.

    Raises BundleError with the verdict when any step fails; nothing is
    unpickled unless verification passed.
    """
    path = Path(path)
    verification, contents = _verify(path, verify_key, None)
    if not verification.ok:
        raise BundleError(verification.verdict, verification.detail)
    info = verification.info
    try:
        model = pickle.loads(contents[MODEL_FILE])  # noqa: S301 - these bytes verified above
    except Exception as exc:  # a verified file that still cannot be unpickled here: refused, never a crash
        raise BundleError(Verdict.UNLOADABLE, f"{MODEL_FILE} cannot be unpickled: {type(exc).__name__}: {exc}") \
            from exc
    reference = {}
    if REFERENCE_FILE in contents:
        try:
            with np.load(io.BytesIO(contents[REFERENCE_FILE]), allow_pickle=False) as arrays:
                reference = {key: arrays[key] for key in arrays.files}
        except (ValueError, OSError, EOFError) as exc:
            raise BundleError(Verdict.UNLOADABLE, f"{REFERENCE_FILE} cannot be read: {exc}") from exc
    check_golden(model, info)
    return LoadedBundle(path, info, model, reference, verification)


def read_info(path: Path) -> dict[str, Any]:
    """The info file of a bundle, unverified: for display, never for trust decisions."""
    return yaml.safe_load((Path(path) / INFO_FILE).read_bytes())


def golden_matrix(info: dict[str, Any]) -> np.ndarray:
    names = [feature["name"] for feature in info["features"]]
    return np.array([[row["input"][n] for n in names] for row in info["golden"]], dtype=float)


def check_golden(model: Any, info: dict[str, Any]) -> None:
    """The model must reproduce the predictions stored when it was trained."""
    if not info["golden"]:
        raise BundleError(Verdict.GOLDEN_MISMATCH, "the info file holds no golden rows")
    expected = [row["prediction"] for row in info["golden"]]
    try:
        actual = model.predict(golden_matrix(info)).tolist()
    except Exception as exc:  # a model that cannot predict its own golden rows
        raise BundleError(Verdict.GOLDEN_MISMATCH, f"predict failed: {exc}") from exc
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if isinstance(want, (int, float)) and not isinstance(want, bool):
            same = bool(np.isclose(got, want, rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL))
        else:
            same = got == want
        if not same:
            raise BundleError(
                Verdict.GOLDEN_MISMATCH,
                f"golden row {index}: predicted {got!r}, the info file says {want!r}",
            )
