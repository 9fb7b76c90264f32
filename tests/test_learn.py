"""learn.py end to end: the bundle it writes, reproducibility, and bad input."""

from __future__ import annotations

import pickle
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
        [bundle.MODEL_FILE, bundle.REFERENCE_FILE, bundle.PLOT_FILE, bundle.LEARNING_CURVE_FILE, bundle.INFO_FILE]
    )
    info = yaml.safe_load((path / bundle.INFO_FILE).read_text())
    for key in ("name", "version", "created_at", "task", "estimator", "best_params", "search", "metrics",
                "learning_curve", "data", "features", "target", "files", "golden", "versions"):
        assert key in info, key
    assert info["task"] == "regression"
    assert [f["name"] for f in info["features"]] == [
        "CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "LSTAT"]
    assert info["data"]["dropped"] == ["B"]
    chas = next(f for f in info["features"] if f["name"] == "CHAS")
    assert chas["allowed"] == [0, 1]
    assert info["data"]["n_rows"] == 506 and info["data"]["n_train"] + info["data"]["n_test"] == 506
    metrics = info["metrics"]
    holdout, baseline = metrics["holdout"], metrics["baseline"]
    assert metrics["n_rows"] == info["data"]["n_test"] == 51
    assert holdout["mse"] < baseline["mse"] / 3, "the model must beat the mean predictor clearly"
    assert holdout["rmse"] == pytest.approx(holdout["mse"] ** 0.5)
    for name in ("mae", "mse", "rmse", "r2"):
        low, high = metrics["intervals"]["model"][name]
        assert low < holdout[name] < high
        assert metrics["intervals"]["baseline"][name][0] <= baseline[name] <= metrics["intervals"]["baseline"][name][1]
    assert metrics["intervals"]["seed"] == 42 and metrics["intervals"]["level"] == 0.95
    assert set(info["versions"]) == {"python", "scikit-learn", "numpy", "scipy"}

    # The whole space: every k the smallest CV training fold allows (455 rows, 5 folds: 364), both
    # families, both scalers, both metrics, both weightings, on 5x5 folds.
    search_info = info["search"]
    assert search_info["n_neighbors"] == [1, 364]
    assert search_info["families"] == ["knn", "radius"]
    assert search_info["cv_folds"] == 5 and search_info["cv_repeats"] == 5
    # One radius grid per (scaler, p), searched with both weightings.
    assert search_info["n_candidates"] == 8 * 364 + 2 * sum(n for _, _, n in search_info["radii"].values())
    assert len(search_info["by_setting"]) == 16
    best = max(search_info["by_setting"], key=lambda entry: -entry["cv_score"])
    assert search_info["cv_score"] == best["cv_score"]
    params = info["best_params"]
    assert params["family"] in ("knn", "radius") and params["scaler"] in ("standard", "robust")
    assert params["p"] in (1, 2) and params["weights"] in ("uniform", "distance")
    for family, record in search_info["family_results"].items():
        winner, runner_up = record["winner"], record["runner_up"]
        assert winner["params"]["family"] == runner_up["params"]["family"] == family
        assert winner["cv_score"] <= runner_up["cv_score"]  # MSE: lower is better
        assert {key: winner["params"][key] for key in ("scaler", "p", "weights")} != \
            {key: runner_up["params"][key] for key in ("scaler", "p", "weights")}
    chosen = search_info["family_results"][params["family"]]["winner"]
    assert chosen["params"] == params and chosen["difference_to_chosen"] == {"mean": 0.0, "std": 0.0}

    for filename, digests in info["files"].items():
        assert bundle.file_digests(path / filename) == digests
    for filename in (bundle.PLOT_FILE, bundle.LEARNING_CURVE_FILE):
        assert (path / filename).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert filename in info["files"]
    curve = info["learning_curve"]
    assert curve["train_sizes"] == sorted(curve["train_sizes"]) and curve["train_sizes"][-1] == 364
    reference = np.load(path / bundle.REFERENCE_FILE, allow_pickle=False)
    assert reference["features"].shape == (info["data"]["n_train"], 12)
    assert len(reference["neighbour_distances"]) == info["data"]["n_train"]
    # The printed table names the choice, both families' winners and runners-up, the metrics
    # beside the baseline with intervals, the holdout size, and the bundle.
    for text in ("chosen", "CV MSE", "winner", "runner-up", "radius=", "MAE", "R2", "baseline", "interval",
                 "holdout: 51 rows", "5-fold CV repeated 5x", str(path), "unsigned"):
        assert text in result.stdout, text
    assert "[100/100]" in result.stderr  # progress


def test_loaded_bundle_reproduces_its_golden_rows(bundle_dir, keys):
    loaded = bundle.load(bundle_dir, bundle.load_public_key(keys["trusted_public"]))
    assert loaded.version == bundle_dir.name
    assert loaded.verification.signed
    assert len(loaded.info["golden"]) == learn.N_GOLDEN_ROWS


@pytest.mark.parametrize("extra", [
    (),
    ("--data", str(DATA_DIR / "heart.csv"), "--target", "target", "--name", "heart-knn", "--families", "knn"),
], ids=["boston-regressor", "heart-thresholded-classifier"])
def test_same_data_and_seed_give_a_byte_identical_pickle(tmp_path, extra):
    first = train_into(tmp_path, "--max-neighbors", "10", "--repeats", "2", *extra)
    second = train_into(tmp_path, "--max-neighbors", "10", "--repeats", "2", *extra)
    assert first != second
    md5 = [bundle.file_digests(p / bundle.MODEL_FILE)["md5"] for p in (first, second)]
    assert md5[0] == md5[1]
    infos = [bundle.read_info(p) for p in (first, second)]
    assert infos[0]["metrics"] == infos[1]["metrics"]  # the bootstrap intervals too: seeded
    third = train_into(tmp_path, "--max-neighbors", "10", "--repeats", "2", "--seed", "7", *extra)
    assert bundle.file_digests(third / bundle.MODEL_FILE)["md5"] != md5[0]
    assert bundle.read_info(third)["metrics"]["intervals"] != infos[0]["metrics"]["intervals"]


def test_activate_moves_the_pointer_and_first_version_is_active(tmp_path):
    quick = ("--max-neighbors", "3", "--repeats", "1", "--families", "knn")
    first = train_into(tmp_path, *quick)
    assert bundle.read_active(tmp_path, "boston-knn") == first.name
    second = train_into(tmp_path, *quick)
    assert bundle.read_active(tmp_path, "boston-knn") == first.name
    third = train_into(tmp_path, *quick, "--activate")
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


def test_without_a_cap_the_search_covers_every_k_the_folds_allow(tmp_path, capsys):
    csv = tmp_path / "small.csv"
    rng = np.random.default_rng(1)
    rows = ["a,b,y"] + [f"{x:.3f},{z:.3f},{x - z:.3f}" for x, z in rng.normal(size=(40, 2))]
    csv.write_text("\n".join(rows) + "\n")
    path = train_into(tmp_path / "models", "--data", str(csv), "--target", "y", "--repeats", "2")
    info = bundle.read_info(path)
    # 40 rows, 4 in the holdout, 36 for CV: the smallest of 5 training folds has 28 rows.
    assert info["search"]["n_neighbors"] == [1, 28]
    assert info["search"]["notices"] == [] and "cut to" not in capsys.readouterr().err
    assert len(info["learning_curve"]["train_sizes"]) >= 3


def test_classifier_bundle_records_its_threshold_calibration_and_plots(heart_bundle):
    info = bundle.read_info(heart_bundle)
    decision = info["decision_threshold"]
    assert decision["objective"] == "max-f1" and decision["positive_class"] == 1
    assert 0 < decision["threshold"] < 1
    assert decision["n_cv_predictions"] == info["data"]["n_train"] * info["search"]["cv_repeats"]
    # The most-probable-class rule is one of the rules max-f1 chose among.
    assert decision["cv"]["f1"] >= decision["cv_most_probable_class"]["f1"]
    with open(heart_bundle / bundle.MODEL_FILE, "rb") as handle:
        model = pickle.load(handle)  # a bundle this test just trained
    assert type(model).__name__ == "FixedThresholdClassifier"
    assert model.threshold == decision["threshold"] and model.pos_label == 1
    assert info["estimator"].startswith("FixedThresholdClassifier(Pipeline(")
    calibration = info["calibration"]
    assert 0 < calibration["brier_cv"] < calibration["brier_prior_cv"]
    assert sum(calibration["reliability_cv"]["count"]) == decision["n_cv_predictions"]
    assert sum(calibration["reliability_holdout"]["count"]) == info["data"]["n_test"] == 31
    assert info["metrics"]["holdout"]["brier"] == pytest.approx(calibration["brier_holdout"])
    low, high = info["metrics"]["intervals"]["model"]["roc_auc"]
    assert low <= info["metrics"]["holdout"]["roc_auc"] <= high
    for filename in bundle.PLOT_FILES:
        assert (heart_bundle / filename).read_bytes().startswith(b"\x89PNG")
        assert info["files"][filename] == bundle.file_digests(heart_bundle / filename)


def test_signed_bundle_says_so(tmp_path, keys):
    path = train_into(tmp_path, "--max-neighbors", "3", "--repeats", "1", signing_key=keys["trusted"])
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
        ({}, ["--families", "knn,trees"], "--families"),
        ({}, ["--repeats", "0"], "--repeats"),
        ({}, ["--threshold", "max-recall"], "--threshold"),
        ({}, ["--data", str(DATA_DIR / "heart.csv"), "--target", "target", "--positive-class", "2"],
         "--positive-class 2"),
        ({}, ["--data", str(DATA_DIR / "heart.csv"), "--target", "target", "--families", "knn",
              "--max-neighbors", "3", "--repeats", "1", "--threshold", "recall-at-precision:1", "--quiet"],
         "no threshold reaches precision >= 1"),
    ],
    ids=["missing-file", "missing-target", "non-numeric", "empty-cell", "nan", "too-few-rows", "header-only",
         "empty-file", "ragged-row", "drop-unknown", "cv-1", "test-size", "unwritable-dir", "missing-key",
         "unknown-family", "repeats-0", "unknown-threshold-objective", "unknown-positive-class",
         "unreachable-threshold"],
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
    for option in ("--data", "--target", "--drop", "--name", "--model-dir", "--seed", "--test-size", "--families",
                   "--max-neighbors", "--cv", "--repeats", "--threshold", "--positive-class", "--activate"):
        assert option in result.stdout
