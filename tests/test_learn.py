"""learn.py end to end: the bundle it writes, reproducibility, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ml_models import bundle, learn

from .conftest import DATA_DIR, train_into

LEARN = Path(learn.__file__)


def run_learn(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LEARN), *argv], capture_output=True, text=True, timeout=120)


def test_default_run_writes_a_complete_active_bundle(tmp_path):
    result = run_learn("--model-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "boston-knn"
    (version,) = bundle.list_versions(tmp_path, "boston-knn")
    assert bundle.read_active(tmp_path, "boston-knn") == version
    path = root / version
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [bundle.MODEL_FILE, bundle.REFERENCE_FILE, bundle.PLOT_FILE, bundle.INFO_FILE]
    )
    info = yaml.safe_load((path / bundle.INFO_FILE).read_text())
    for key in ("name", "version", "created_at", "task", "estimator", "best_params", "search", "metrics",
                "data", "features", "target", "files", "golden", "versions"):
        assert key in info, key
    assert info["task"] == "regression"
    assert [f["name"] for f in info["features"]] == [
        "CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "LSTAT"]
    assert info["data"]["dropped"] == ["B"]
    chas = next(f for f in info["features"] if f["name"] == "CHAS")
    assert chas["allowed"] == [0, 1]
    assert info["data"]["n_rows"] == 506 and info["data"]["n_train"] + info["data"]["n_test"] == 506
    holdout, baseline = info["metrics"]["holdout"], info["metrics"]["baseline"]
    assert holdout["mse"] < baseline["mse"] / 3, "the model must beat the mean predictor clearly"
    assert holdout["rmse"] == pytest.approx(holdout["mse"] ** 0.5)
    assert set(info["versions"]) == {"python", "scikit-learn", "numpy", "scipy"}
    assert 1 <= info["best_params"]["n_neighbors"] <= 30
    assert info["best_params"]["weights"] in ("uniform", "distance")
    for filename, digests in info["files"].items():
        assert bundle.file_digests(path / filename) == digests
    assert (path / bundle.PLOT_FILE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    reference = np.load(path / bundle.REFERENCE_FILE, allow_pickle=False)
    assert reference["features"].shape == (info["data"]["n_train"], 12)
    assert len(reference["neighbour_distances"]) == info["data"]["n_train"]
    # The printed table names the choice, the metrics beside the baseline, and the bundle.
    for text in ("chosen", "CV MSE", "MAE", "R2", "baseline", str(path), "unsigned"):
        assert text in result.stdout
    assert "[ 60/60]" in result.stderr  # progress


def test_loaded_bundle_reproduces_its_golden_rows(bundle_dir, keys):
    loaded = bundle.load(bundle_dir, bundle.load_public_key(keys["trusted_public"]))
    assert loaded.version == bundle_dir.name
    assert loaded.verification.signed
    assert len(loaded.info["golden"]) == learn.N_GOLDEN_ROWS


def test_same_data_and_seed_give_a_byte_identical_pickle(tmp_path):
    first = train_into(tmp_path, "--max-neighbors", "10")
    second = train_into(tmp_path, "--max-neighbors", "10")
    assert first != second
    md5 = [bundle.file_digests(p / bundle.MODEL_FILE)["md5"] for p in (first, second)]
    assert md5[0] == md5[1]
    third = train_into(tmp_path, "--max-neighbors", "10", "--seed", "7")
    assert bundle.file_digests(third / bundle.MODEL_FILE)["md5"] != md5[0]


def test_activate_moves_the_pointer_and_first_version_is_active(tmp_path):
    first = train_into(tmp_path, "--max-neighbors", "3")
    assert bundle.read_active(tmp_path, "boston-knn") == first.name
    second = train_into(tmp_path, "--max-neighbors", "3")
    assert bundle.read_active(tmp_path, "boston-knn") == first.name
    third = train_into(tmp_path, "--max-neighbors", "3", "--activate")
    assert bundle.read_active(tmp_path, "boston-knn") == third.name
    assert bundle.list_versions(tmp_path, "boston-knn") == sorted([first.name, second.name, third.name])


def test_neighbour_grid_is_cut_to_the_smallest_fold(tmp_path, capsys):
    csv = tmp_path / "small.csv"
    rng = np.random.default_rng(0)
    rows = ["a,b,y"] + [f"{x:.3f},{z:.3f},{x + z:.3f}" for x, z in rng.normal(size=(30, 2))]
    csv.write_text("\n".join(rows) + "\n")
    path = train_into(tmp_path / "models", "--data", str(csv), "--target", "y", "--max-neighbors", "100")
    info = bundle.read_info(path)
    # 30 rows, 3 in the holdout, 27 for CV: the smallest of 5 training folds has 21 rows.
    assert info["search"]["n_neighbors"] == [1, 21]
    assert "cut to 21" in capsys.readouterr().err
    assert info["name"] == "small-knn"


def test_signed_bundle_says_so(tmp_path, keys):
    path = train_into(tmp_path, "--max-neighbors", "3", signing_key=keys["trusted"])
    assert (path / bundle.SIGNATURE_FILE).is_file()
    verification = bundle.verify(path, bundle.load_public_key(keys["trusted_public"]))
    assert verification.ok and verification.signed


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_HEADER = "a,b,y\n"
GOOD_ROWS = "".join(f"{i},{i % 3},{2 * i}\n" for i in range(40))


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({}, ["--data", "{tmp}/absent.csv", "--target", "y"], "data file not found"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS}, ["--data", "{tmp}/d.csv", "--target", "price"], "target column 'price'"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS + "x,1,2\n"}, ["--data", "{tmp}/d.csv", "--target", "y"], "not numeric"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS + "1,,2\n"}, ["--data", "{tmp}/d.csv", "--target", "y"], "is empty"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS + "1,nan,2\n"}, ["--data", "{tmp}/d.csv", "--target", "y"], "is nan"),
        ({"d.csv": GOOD_HEADER + "1,2,3\n2,3,4\n3,4,5\n"}, ["--data", "{tmp}/d.csv", "--target", "y"], "too few"),
        ({"d.csv": GOOD_HEADER}, ["--data", "{tmp}/d.csv", "--target", "y"], "no data rows"),
        ({"d.csv": ""}, ["--data", "{tmp}/d.csv", "--target", "y"], "is empty"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS + "1,2\n"}, ["--data", "{tmp}/d.csv", "--target", "y"], "fields"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS}, ["--data", "{tmp}/d.csv", "--target", "y", "--drop", "q"], "--drop"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS}, ["--data", "{tmp}/d.csv", "--target", "y", "--cv", "1"], "--cv"),
        ({"d.csv": GOOD_HEADER + GOOD_ROWS}, ["--data", "{tmp}/d.csv", "--target", "y", "--test-size", "1.5"],
         "--test-size"),
        ({"blocker": "a file where the store should be"},
         ["--data", str(DATA_DIR / "boston_housing.csv"), "--target", "MEDV", "--model-dir", "{tmp}/blocker/models"],
         "not writable"),
        ({}, ["--signing-key", "{tmp}/no-such-key.pem"], "signing key"),
    ],
    ids=["missing-file", "missing-target", "non-numeric", "empty-cell", "nan", "too-few-rows", "header-only",
         "empty-file", "ragged-row", "drop-unknown", "cv-1", "test-size", "unwritable-dir", "missing-key"],
)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, files, extra, message):
    for name, text in files.items():
        write_csv(tmp_path / name, text)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    if "--model-dir" not in argv:
        argv += ["--model-dir", str(tmp_path / "models")]
    result = run_learn(*argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert message in lines[0]
    versions = [p for p in tmp_path.glob("models/*/*") if p.is_dir()]
    assert versions == []


def test_help_explains_every_option():
    result = run_learn("--help")
    assert result.returncode == 0
    for option in ("--data", "--target", "--drop", "--name", "--model-dir", "--seed", "--test-size",
                   "--max-neighbors", "--cv", "--activate"):
        assert option in result.stdout
