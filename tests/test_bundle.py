"""Bundle verification: every tampering is caught before anything is unpickled."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ml_models import bundle

from .tampering import Sentinel, recompute_hashes, rewrite_info


def public(keys, label="trusted"):
    return bundle.load_public_key(keys[f"{label}_public"])


def test_untouched_bundle_verifies(bundle_dir, keys):
    assert bundle.verify(bundle_dir, public(keys)).verdict is bundle.Verdict.OK
    assert bundle.verify(bundle_dir).verdict is bundle.Verdict.OK


def test_flipped_byte_with_recomputed_hashes_breaks_the_signature(bundle_dir, keys):
    model = bytearray((bundle_dir / bundle.MODEL_FILE).read_bytes())
    model[len(model) // 2] ^= 0x01
    (bundle_dir / bundle.MODEL_FILE).write_bytes(bytes(model))
    rewrite_info(bundle_dir, recompute_hashes(bundle_dir, bundle.MODEL_FILE))
    assert bundle.verify(bundle_dir, public(keys)).verdict is bundle.Verdict.BAD_SIGNATURE


def test_flipped_byte_alone_is_a_corrupted_file_even_without_a_key(bundle_dir):
    model = bytearray((bundle_dir / bundle.MODEL_FILE).read_bytes())
    model[100] ^= 0xFF
    (bundle_dir / bundle.MODEL_FILE).write_bytes(bytes(model))
    verification = bundle.verify(bundle_dir)
    assert verification.verdict is bundle.Verdict.CORRUPTED_FILE
    assert "model.pkl" in verification.detail


def test_edited_metric_breaks_the_signature(bundle_dir, keys):
    def better_r2(info):
        info["metrics"]["holdout"]["r2"] = 0.999

    rewrite_info(bundle_dir, better_r2)
    assert bundle.verify(bundle_dir, public(keys)).verdict is bundle.Verdict.BAD_SIGNATURE


def test_deleted_signature_is_unsigned(bundle_dir, keys):
    (bundle_dir / bundle.SIGNATURE_FILE).unlink()
    assert bundle.verify(bundle_dir, public(keys)).verdict is bundle.Verdict.UNSIGNED
    with pytest.raises(bundle.BundleError) as caught:
        bundle.load(bundle_dir, public(keys))
    assert caught.value.verdict is bundle.Verdict.UNSIGNED


def test_signature_by_another_key_is_refused(bundle_dir, keys):
    rewrite_info(bundle_dir, lambda info: None, signing_key=keys["other"])
    assert bundle.verify(bundle_dir, public(keys)).verdict is bundle.Verdict.BAD_SIGNATURE
    assert bundle.verify(bundle_dir, public(keys, "other")).verdict is bundle.Verdict.OK


def test_validly_signed_bundle_in_another_version_directory_is_refused(bundle_dir, keys):
    impostor = bundle_dir.parent / "29990101T000000Z"
    shutil.copytree(bundle_dir, impostor)
    verification = bundle.verify(impostor, public(keys))
    assert verification.verdict is bundle.Verdict.WRONG_LOCATION
    assert bundle_dir.name in verification.detail


@pytest.mark.parametrize("filename", [bundle.MODEL_FILE, bundle.REFERENCE_FILE, bundle.PLOT_FILE,
                                      bundle.LEARNING_CURVE_FILE, bundle.INFO_FILE])
def test_missing_file(bundle_dir, keys, filename):
    (bundle_dir / filename).unlink()
    verification = bundle.verify(bundle_dir, public(keys))
    assert verification.verdict is bundle.Verdict.MISSING_FILE
    assert filename in verification.detail


def test_a_replaced_plot_breaks_the_signature(bundle_dir, keys):
    # Every plot is listed with its hashes in the signed info file, like the model.
    (bundle_dir / bundle.LEARNING_CURVE_FILE).write_bytes(bundle.PNG_SIGNATURE + b"a doctored curve")
    assert bundle.verify(bundle_dir).verdict is bundle.Verdict.CORRUPTED_FILE
    rewrite_info(bundle_dir, recompute_hashes(bundle_dir, bundle.LEARNING_CURVE_FILE))
    assert bundle.verify(bundle_dir, public(keys)).verdict is bundle.Verdict.BAD_SIGNATURE


def write_small_bundle(root, plots):
    info = {"task": "regression", "features": [], "golden": [], "versions": {}}
    return bundle.write_bundle(root, "tiny", "20260101T000000Z", {"a": 1}, info, {"x": np.zeros(2)}, plots)


def test_every_plot_is_written_and_listed_with_its_hashes(tmp_path):
    plots = {"cv_plot.png": bundle.PNG_SIGNATURE + b"one", "learning_curve.png": bundle.PNG_SIGNATURE + b"two",
             "extra-view.png": bundle.PNG_SIGNATURE + b"three"}
    path = write_small_bundle(tmp_path, plots)
    info = bundle.read_info(path)
    assert set(info["files"]) == {bundle.MODEL_FILE, bundle.REFERENCE_FILE, *plots}
    for filename, png in plots.items():
        assert (path / filename).read_bytes() == png
        assert info["files"][filename] == bundle.file_digests(path / filename)
        assert info["files"][filename]["size"] == len(png)


@pytest.mark.parametrize(("plots", "message"), [
    ({"../escape.png": bundle.PNG_SIGNATURE}, "invalid plot file name"),
    ({"model.pkl": bundle.PNG_SIGNATURE}, "invalid plot file name"),
    ({".hidden.png": bundle.PNG_SIGNATURE}, "invalid plot file name"),
    ({"plot.png": b"GIF89a"}, "is not a PNG"),
])
def test_bad_plots_are_refused_before_anything_is_written(tmp_path, plots, message):
    with pytest.raises(ValueError, match=message):
        write_small_bundle(tmp_path, plots)
    assert not (tmp_path / "tiny").exists() or list((tmp_path / "tiny").iterdir()) == []


def test_other_scikit_learn_version_is_refused_before_unpickling(bundle_dir, keys):
    def older(info):
        info["versions"]["scikit-learn"] = "0.24.2"

    rewrite_info(bundle_dir, older, signing_key=keys["trusted"])
    verification = bundle.verify(bundle_dir, public(keys))
    assert verification.verdict is bundle.Verdict.VERSION_MISMATCH
    assert "0.24.2" in verification.detail


def test_wrong_golden_prediction_is_refused_after_unpickling(bundle_dir, keys):
    def wrong(info):
        info["golden"][0]["prediction"] += 1.0

    rewrite_info(bundle_dir, wrong, signing_key=keys["trusted"])
    with pytest.raises(bundle.BundleError) as caught:
        bundle.load(bundle_dir, public(keys))
    assert caught.value.verdict is bundle.Verdict.GOLDEN_MISMATCH


@pytest.mark.parametrize("with_key", [True, False], ids=["verify-key", "hashes-only"])
def test_malicious_pickle_is_never_unpickled(bundle_dir, keys, tmp_path, with_key):
    sentinel = tmp_path / "pwned"
    (bundle_dir / bundle.MODEL_FILE).write_bytes(pickle.dumps(Sentinel(str(sentinel))))
    key = public(keys) if with_key else None
    if with_key:
        # An attacker who can write the store recomputes the hashes; only the signature stops them.
        rewrite_info(bundle_dir, recompute_hashes(bundle_dir, bundle.MODEL_FILE))
    with pytest.raises(bundle.BundleError) as caught:
        bundle.load(bundle_dir, key)
    expected = bundle.Verdict.BAD_SIGNATURE if with_key else bundle.Verdict.CORRUPTED_FILE
    assert caught.value.verdict is expected
    assert not sentinel.exists()
    # The sentinel really would have fired: the test is not vacuous.
    with open(bundle_dir / bundle.MODEL_FILE, "rb") as handle:
        pickle.load(handle).close()
    assert sentinel.exists()


def test_active_pointer_is_replaced_atomically(store):
    name = "boston-knn"
    (version,) = bundle.list_versions(store, name)
    before = os.stat(store / name / bundle.ACTIVE_FILE).st_ino
    bundle.write_active(store, name, version)
    assert bundle.read_active(store, name) == version
    assert os.stat(store / name / bundle.ACTIVE_FILE).st_ino != before  # a new file renamed over the old
    with pytest.raises(FileNotFoundError):
        bundle.write_active(store, name, "20000101T000000Z")
    assert [p.name for p in (store / name).iterdir() if p.name.startswith(".")] == []


# --- files read once: no swap between the check and the load -----------------------------------

SWAP_AFTER_FIRST_READ = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from ml_models import bundle
    from cryptography.hazmat.primitives import serialization

    target, evil = {target!r}, {evil!r}
    state = {{"model_opens": 0, "swapped": False}}

    def swap_once_model_pkl_was_read(event, args):
        # Once model.pkl has been opened (and read), the next file opened is the moment to swap it.
        if event != "open" or not isinstance(args[0], (str, bytes)):
            return
        if os.fsdecode(args[0]).endswith("model.pkl"):
            state["model_opens"] += 1
        elif state["model_opens"] and not state["swapped"]:
            os.replace(evil, target)
            state["swapped"] = True

    sys.addaudithook(swap_once_model_pkl_was_read)
    key = serialization.load_pem_public_key(open({public!r}, "rb").read())
    loaded = bundle.load(bundle.Path({bundle_dir!r}), key)
    print(loaded.sha256, state["model_opens"], state["swapped"])
""")


def test_a_pickle_swapped_after_its_check_is_never_unpickled(bundle_dir, keys, tmp_path):
    """Regression: verify() hashed model.pkl by path and load() opened the path again (TOCTOU)."""
    sentinel = tmp_path / "pwned"
    evil = bundle_dir.parent / ".evil.pkl"
    evil.write_bytes(pickle.dumps(Sentinel(str(sentinel))))
    genuine = bundle.read_info(bundle_dir)["files"][bundle.MODEL_FILE]["sha256"]
    script = SWAP_AFTER_FIRST_READ.format(root=str(Path(__file__).resolve().parent.parent),
                                          target=str(bundle_dir / bundle.MODEL_FILE), evil=str(evil),
                                          public=str(keys["trusted_public"]), bundle_dir=str(bundle_dir))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert not sentinel.exists(), "the swapped-in pickle ran"
    assert done.returncode == 0, done.stderr[-2000:]
    sha256, opens, swapped = done.stdout.split()
    assert (sha256, opens, swapped) == (genuine, "1", "True")
    # The swap did happen: the file on disk is now the attacker's, and loading it again is refused.
    assert bundle.file_digests(bundle_dir / bundle.MODEL_FILE)["sha256"] != genuine
    with pytest.raises(bundle.BundleError) as caught:
        bundle.load(bundle_dir, public(keys))
    assert caught.value.verdict is bundle.Verdict.CORRUPTED_FILE
    assert not sentinel.exists()


@pytest.mark.parametrize("linked", [bundle.MODEL_FILE, bundle.INFO_FILE, "directory"])
def test_symbolic_links_in_a_bundle_are_refused(bundle_dir, keys, tmp_path, linked):
    if linked == "directory":
        moved = tmp_path / "elsewhere"
        shutil.move(bundle_dir, moved)
        bundle_dir.symlink_to(moved, target_is_directory=True)
    else:
        moved = tmp_path / linked
        shutil.move(bundle_dir / linked, moved)
        (bundle_dir / linked).symlink_to(moved)
    verification = bundle.verify(bundle_dir, public(keys))
    assert verification.verdict is bundle.Verdict.UNREADABLE
    with pytest.raises(bundle.BundleError):
        bundle.load(bundle_dir, public(keys))


def test_a_verified_pickle_that_cannot_be_unpickled_is_a_refusal(bundle_dir, keys):
    """Regression: EOFError or UnpicklingError from a signed bundle escaped as a 500."""
    data = (bundle_dir / bundle.MODEL_FILE).read_bytes()
    (bundle_dir / bundle.MODEL_FILE).write_bytes(data[: len(data) // 2])
    rewrite_info(bundle_dir, recompute_hashes(bundle_dir, bundle.MODEL_FILE), signing_key=keys["trusted"])
    assert bundle.verify(bundle_dir, public(keys)).ok  # signed and hashed: only unpickling can tell
    with pytest.raises(bundle.BundleError) as caught:
        bundle.load(bundle_dir, public(keys))
    assert caught.value.verdict is bundle.Verdict.UNLOADABLE
    assert "cannot be unpickled" in caught.value.detail


def test_the_active_pointer_is_world_readable_and_its_stamp_is_what_was_written(store):
    """Regression: ACTIVE was created 0600, so a service running as another user could not read it."""
    name = "boston-knn"
    (version,) = bundle.list_versions(store, name)
    written = bundle.write_active(store, name, version)
    assert stat.S_IMODE(os.stat(store / name / bundle.ACTIVE_FILE).st_mode) == 0o644
    assert written == bundle.active_stamp(store, name)
