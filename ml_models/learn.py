"""Train a neighbours model and write a versioned, verifiable bundle: the command line.

    python ml_models/learn.py                       # Boston housing regressor
    python ml_models/learn.py --data ml_models/data/heart.csv --target target --name heart-knn

The work is done by modules beside this one: ``search`` scores every
candidate of every family (k nearest neighbours over the whole k range,
neighbours within a radius; two scalers, Minkowski p 1 and 2, two weightings)
on the same repeated cross-validation folds, ``threshold`` picks a
classifier's decision threshold on out-of-fold probabilities, ``report``
measures the chosen model on the holdout (bootstrap intervals, next to a
baseline), its calibration and its learning curve, and ``plots`` draws them.
This file reads the data, wires those together, writes the bundle and prints
the table. Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    # Run as a script (python ml_models/learn.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml_models import bundle, plots, report, search, threshold

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_DATA = DATA_DIR / "boston_housing.csv"
DEFAULT_TARGET = "MEDV"
DEFAULT_NAME = "boston-knn"
# B encodes the share of Black residents of a town (see data/README.md); the
# default model leaves it out rather than use race as a predictor of price.
DEFAULT_DROP = ("B",)
DEFAULT_MODEL_DIR = PROJECT_ROOT / "models"

DEFAULT_CV = search.DEFAULT_FOLDS
DEFAULT_REPEATS = search.DEFAULT_REPEATS
DEFAULT_SEED = 42
DEFAULT_TEST_SIZE = 0.1
# An integer-coded column with at most this many distinct values is treated as
# categorical: its allowed values become part of the schema.
MAX_CATEGORY_VALUES = 5
N_GOLDEN_ROWS = 5
# A target with at most this many distinct integer values is a class label.
MAX_CLASSES = 10


class TrainingError(Exception):
    """Bad input or environment: reported as one line, exit code 2."""


@dataclass
class Dataset:
    path: Path
    sha256: str
    feature_names: list[str]
    target_name: str
    X: np.ndarray
    y: np.ndarray
    n_rows: int


# --- data ------------------------------------------------------------------------


def load_data(path: Path, target: str, drop: tuple[str, ...] = ()) -> Dataset:
    """Read a numeric CSV with a header row; every problem is a TrainingError."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise TrainingError(f"data file not found: {path}") from None
    except OSError as exc:
        raise TrainingError(f"cannot read data file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TrainingError(f"{path} is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [row for row in rows if row]
    if not rows:
        raise TrainingError(f"{path} is empty")
    header = [name.strip() for name in rows[0]]
    if len(set(header)) != len(header):
        raise TrainingError(f"{path} has duplicate column names")
    if target not in header:
        raise TrainingError(f"target column {target!r} not in {path} (columns: {', '.join(header)})")
    unknown = [name for name in drop if name not in header]
    if unknown:
        raise TrainingError(f"--drop names columns not in {path}: {', '.join(unknown)}")
    if target in drop:
        raise TrainingError("--drop cannot remove the target column")
    body = rows[1:]
    if not body:
        raise TrainingError(f"{path} has a header but no data rows")
    values = np.empty((len(body), len(header)), dtype=float)
    for line_no, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise TrainingError(f"{path} line {line_no}: {len(row)} fields, header has {len(header)}")
        for col, cell in enumerate(row):
            cell = cell.strip()
            if cell == "":
                raise TrainingError(f"{path} line {line_no}: column {header[col]!r} is empty")
            try:
                number = float(cell)
            except ValueError:
                raise TrainingError(
                    f"{path} line {line_no}: column {header[col]!r} is not numeric ({cell[:40]!r})"
                ) from None
            if not math.isfinite(number):
                raise TrainingError(f"{path} line {line_no}: column {header[col]!r} is {cell}")
            values[line_no - 2, col] = number
    features = [name for name in header if name != target and name not in drop]
    if not features:
        raise TrainingError(f"{path} has no feature columns left")
    index = {name: i for i, name in enumerate(header)}
    return Dataset(
        path=Path(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        feature_names=features,
        target_name=target,
        X=values[:, [index[name] for name in features]],
        y=values[:, index[target]],
        n_rows=len(body),
    )


def detect_task(y: np.ndarray) -> str:
    integer_valued = bool(np.all(y == np.round(y)))
    return "classification" if integer_valued and len(np.unique(y)) <= MAX_CLASSES else "regression"


def feature_schema(data: Dataset, X_train: np.ndarray, categorical: set[str]) -> list[dict[str, Any]]:
    """The ordered feature list the service validates against.

    Statistics describe the training rows (what the model saw); the allowed
    values of a categorical column come from the whole file, so a category
    that happens to fall only in the holdout is still valid.
    """
    schema = []
    for col, name in enumerate(data.feature_names):
        column = data.X[:, col]
        train = X_train[:, col]
        integer_valued = bool(np.all(column == np.round(column)))
        entry: dict[str, Any] = {
            "name": name,
            "dtype": "int" if integer_valued else "float",
            "min": float(train.min()),
            "max": float(train.max()),
            "mean": float(train.mean()),
            "std": float(train.std()),
        }
        distinct = np.unique(column)
        if name in categorical or (integer_valued and len(distinct) <= MAX_CATEGORY_VALUES):
            entry["allowed"] = [int(v) if integer_valued else float(v) for v in distinct]
        elif column.min() >= 0:
            entry["nonnegative"] = True
        schema.append(entry)
    return schema


# --- training ----------------------------------------------------------------------


@dataclass
class Split:
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def split_data(data: Dataset, task: str, args: argparse.Namespace) -> Split:
    """Seeded holdout split (stratified for classification), with the size checks CV needs."""
    from sklearn.model_selection import train_test_split

    n_test = math.ceil(args.test_size * data.n_rows)
    n_train = data.n_rows - n_test
    if n_test < 2 or n_train < 2 * args.cv:
        raise TrainingError(
            f"{data.n_rows} rows are too few for a {args.test_size} holdout and {args.cv}-fold CV "
            f"(need at least {2 * args.cv} training and 2 holdout rows)"
        )
    stratify = data.y if task == "classification" else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            data.X, data.y, test_size=args.test_size, random_state=args.seed, stratify=stratify
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split the data: {exc}") from None
    if task == "classification":
        y_train, y_test = y_train.astype(int), y_test.astype(int)
        if np.min(np.unique(y_train, return_counts=True)[1]) < args.cv:
            raise TrainingError(f"a class has fewer training rows than --cv={args.cv} folds")
    return Split(X_train, X_test, y_train, y_test)


def neighbour_range(folds, max_neighbors: int | None) -> tuple[int, list[str]]:
    """Largest k searched: what the smallest CV training fold holds, or less when asked."""
    smallest = search.smallest_fold(folds)
    if max_neighbors is None:
        return smallest, []
    if max_neighbors > smallest:
        return smallest, [f"n_neighbors cut to {smallest}: the smallest CV training fold has {smallest} rows"]
    return max_neighbors, []


def ood_neighbours(task: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray) -> int | None:
    """For a radius model: how many neighbours the out-of-distribution score averages over.

    The median number of other training rows within the radius, so that the
    score measures the neighbourhood the model predicts from. None for a
    k-nearest-neighbours model (it uses its own k).
    """
    if params["family"] != "radius":
        return None
    pipeline = search.build_pipeline(task, params).fit(X, y)
    _, indices = pipeline.named_steps["knn"].radius_neighbors()
    return max(1, int(np.median([len(row) for row in indices])))


def fitted_pipeline(model):
    """The scaler + neighbours pipeline inside a thresholded classifier, or the model itself."""
    return getattr(model, "estimator_", model)


def fit_model(task: str, params: dict[str, Any], ood: int | None, split: Split, decision: dict | None,
              positive: int | None):
    """The chosen candidate fitted on the whole training part; a binary classifier applies its threshold."""
    from sklearn.model_selection import FixedThresholdClassifier

    pipeline = search.build_pipeline(task, {**params, "ood_neighbors": ood})
    if decision is None:
        return pipeline.fit(split.X_train, split.y_train)
    thresholded = FixedThresholdClassifier(pipeline, threshold=decision["threshold"], pos_label=positive,
                                           response_method="predict_proba")
    return thresholded.fit(split.X_train, split.y_train)


def choose_threshold(task: str, params: dict[str, Any], split: Split, folds, objective: threshold.Objective,
                     positive: int) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Decision threshold on the out-of-fold probabilities of the chosen candidate.

    Returns the record for the info file and the pooled out-of-fold
    (positive-class probability, is-positive) pairs.
    """
    proba, labels, classes = search.out_of_fold_proba(task, params, split.X_train, split.y_train, folds)
    index = classes.tolist().index(positive)
    is_positive = labels == positive
    try:
        chosen = threshold.choose(is_positive, proba[:, index], objective)
    except ValueError as exc:
        raise TrainingError(f"--threshold {objective}: {exc}") from None
    record = {
        "objective": str(objective),
        "description": objective.describe(),
        "threshold": chosen["threshold"],
        "positive_class": positive,
        "rule": f"class {positive} when its probability is at least the threshold",
        "cv": {key: chosen[key] for key in ("precision", "recall", "f1", "accuracy")},
        "cv_most_probable_class": threshold.default_rule(is_positive, proba, index),
        "n_cv_predictions": len(labels),
    }
    return record, proba[:, index], is_positive


def candidate_record(candidate: search.Candidate, chosen: search.Candidate, scoring: search.Scoring,
                     n_repeats: int) -> dict[str, Any]:
    difference = candidate.fold_scores - chosen.fold_scores
    sign = -1.0 if scoring.lower_is_better else 1.0
    return {
        "params": candidate.params,
        "cv_score": scoring.shown(candidate.mean),
        "cv_score_std": candidate.std,
        "cv_repeat_std": candidate.repeat_std(n_repeats),
        # Paired over the same folds: the honest way to compare two candidates.
        "difference_to_chosen": {"mean": float(sign * difference.mean()) + 0.0, "std": float(difference.std())},
        **candidate.extra,
    }


def search_record(result: search.SearchResult, chosen: search.Candidate, args: argparse.Namespace,
                  seconds: float, notices: list[str]) -> dict[str, Any]:
    scoring = result.scoring
    families = {}
    for family in result.families():
        runner_up = result.runner_up(family)
        families[family] = {
            "winner": candidate_record(result.best(family), chosen, scoring, result.n_repeats),
            "runner_up": candidate_record(runner_up, chosen, scoring, result.n_repeats) if runner_up else None,
        }
    by_setting = []
    for curve in result.curves:
        index = int(np.argmax(curve.mean))
        by_setting.append({**curve.setting.params(curve.values[index]),
                           "cv_score": scoring.shown(float(curve.mean[index]))})
    radii = {}
    for curve in result.curves:
        if curve.setting.family == "radius":
            radii[f"{curve.setting.scaler}, p={curve.setting.p}"] = [float(curve.values[0]), float(curve.values[-1]),
                                                                     len(curve.values)]
    return {
        "families": result.families(),
        "n_neighbors": [1, result.k_max],
        **({"radii": radii} if radii else {}),
        "scalers": list(search.SCALERS),
        "p": list(search.METRIC_P),
        "weights": list(search.WEIGHTS),
        "cv_folds": result.n_splits,
        "cv_repeats": result.n_repeats,
        "cv_seed": args.seed,
        "scoring": scoring.scorer,
        "metric": scoring.label,
        "cv_score": scoring.shown(chosen.mean),
        "cv_score_std": chosen.std,
        "cv_repeat_std": chosen.repeat_std(result.n_repeats),
        "n_candidates": result.n_candidates,
        "seconds": round(seconds, 2),
        "notices": notices,
        "family_results": families,
        "by_setting": by_setting,
    }


def describe_estimator(model) -> str:
    pipeline = fitted_pipeline(model)
    steps = ", ".join(type(step).__name__ for _, step in pipeline.steps)
    if pipeline is model:
        return f"Pipeline({steps})"
    return f"FixedThresholdClassifier(Pipeline({steps}), threshold={model.threshold:.4g})"


def neighbour_distances(model, X: np.ndarray) -> np.ndarray:
    """Leave-one-out mean distance of each training row to its neighbours, scaled space, sorted."""
    distances, _ = fitted_pipeline(model).named_steps["knn"].kneighbors()  # without X: a row is not its own neighbour
    return np.sort(distances.mean(axis=1))


def golden_rows(model, names: list[str], X_test: np.ndarray, task: str) -> list[dict[str, Any]]:
    rows = X_test[:N_GOLDEN_ROWS]
    predictions = model.predict(rows).tolist()
    if task == "classification":
        predictions = [int(p) for p in predictions]
    return [
        {"input": {name: float(value) for name, value in zip(names, row, strict=True)}, "prediction": pred}
        for row, pred in zip(rows, predictions, strict=True)
    ]


# --- the command -----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="learn.py",
        description="Search neighbours models (k nearest and within a radius; two scalers, Minkowski p 1 and 2, "
        "two weightings) by repeated cross-validation, measure the chosen one on a holdout, and write a "
        "versioned, hash-checked (and, with MODEL_SIGNING_KEY, signed) bundle.",
    )
    parser.add_argument("--data", type=Path, help=f"CSV with a header row (default: {DEFAULT_DATA.name}, bundled)")
    parser.add_argument("--target", help=f"target column (default: {DEFAULT_TARGET} for the bundled data)")
    parser.add_argument(
        "--drop",
        help="comma-separated columns to leave out (default for the bundled Boston data: B; pass '' to keep it)",
    )
    parser.add_argument("--categorical", default="", help="comma-separated columns to treat as categorical")
    parser.add_argument("--task", choices=("auto", "regression", "classification"), default="auto",
                        help="regression or classification (default: detected from the target)")
    parser.add_argument("--name", help=f"model name in the store (default: {DEFAULT_NAME} for the bundled data, "
                        "else the CSV's file name + '-knn')")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="model store (default: $MODEL_DIR, else ./models under the project)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed for the split, the CV folds and the bootstrap (default: 42)")
    parser.add_argument("--test-size", type=float, default=DEFAULT_TEST_SIZE,
                        help="holdout share, between 0 and 1 (default: 0.1)")
    parser.add_argument("--families", default=",".join(search.FAMILIES),
                        help=f"model families to search, comma-separated (default: {','.join(search.FAMILIES)})")
    parser.add_argument("--max-neighbors", type=int, default=None,
                        help="largest n_neighbors searched (default: as many as the smallest CV training fold "
                        "holds; a larger value is cut to that)")
    parser.add_argument("--cv", type=int, default=DEFAULT_CV, help="number of cross-validation folds (default: 5)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help="times the CV is repeated with other folds (default: 5)")
    parser.add_argument("--threshold", default=threshold.DEFAULT_OBJECTIVE,
                        help="binary classifiers: how the decision threshold is chosen on out-of-fold probabilities: "
                        "max-f1 (default), precision-at-recall:R, recall-at-precision:P or fixed:T")
    parser.add_argument("--positive-class", type=int, default=None,
                        help="binary classifiers: the class that precision, recall, F1 and the threshold refer to "
                        "(default: the larger label)")
    parser.add_argument("--activate", action="store_true",
                        help="make the new version the active one (the first version of a model always is)")
    parser.add_argument("--signing-key", type=Path, default=None,
                        help="Ed25519 private key (PEM) to sign the bundle with (default: $MODEL_SIGNING_KEY)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    bundled = args.data is None
    args.data = args.data or DEFAULT_DATA
    args.target = args.target or (DEFAULT_TARGET if bundled else None)
    if args.target is None:
        parser.error("--target is required with --data")
    if args.drop is None:
        args.drop = DEFAULT_DROP if bundled else ()
    else:
        args.drop = tuple(name.strip() for name in args.drop.split(",") if name.strip())
    args.categorical = {name.strip() for name in args.categorical.split(",") if name.strip()}
    args.families = tuple(name.strip() for name in args.families.split(",") if name.strip())
    args.name = args.name or (DEFAULT_NAME if bundled else f"{args.data.stem}-knn".replace("_", "-"))
    env_dir = os.environ.get("MODEL_DIR")
    args.model_dir = args.model_dir or (Path(env_dir) if env_dir else DEFAULT_MODEL_DIR)
    env_key = os.environ.get("MODEL_SIGNING_KEY")
    args.signing_key = args.signing_key or (Path(env_key) if env_key else None)
    return args


def check_args(args: argparse.Namespace) -> threshold.Objective:
    """Refuse bad options before any work; returns the parsed threshold objective."""
    if not 0 < args.test_size < 1:
        raise TrainingError("--test-size must be between 0 and 1")
    if args.cv < 2:
        raise TrainingError("--cv must be at least 2")
    if args.repeats < 1:
        raise TrainingError("--repeats must be at least 1")
    if args.max_neighbors is not None and args.max_neighbors < 1:
        raise TrainingError("--max-neighbors must be at least 1")
    unknown = [name for name in args.families if name not in search.FAMILIES]
    if unknown or not args.families:
        raise TrainingError(f"--families takes {', '.join(search.FAMILIES)} (got {', '.join(args.families) or 'none'})")
    if not bundle.NAME_PATTERN.match(args.name):
        raise TrainingError(f"invalid model name {args.name!r}: letters, digits, '.', '_' and '-' only")
    try:
        return threshold.parse_objective(args.threshold)
    except ValueError as exc:
        raise TrainingError(f"--threshold: {exc}") from None


def check_model_dir(model_dir: Path, name: str) -> None:
    """Fail before training, not after, when the store cannot be written."""
    root = model_dir / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f".write-test-{os.getpid()}", "wb"):
            pass
        (root / f".write-test-{os.getpid()}").unlink()
    except OSError as exc:
        raise TrainingError(f"model dir {model_dir} is not writable: {exc.strerror or exc}") from None


def new_version(model_dir: Path, name: str, now: dt.datetime) -> str:
    base = now.strftime("%Y%m%dT%H%M%SZ")
    version, n = base, 1
    while (model_dir / name / version).exists():
        n += 1
        version = f"{base}-{n}"
    return version


def library_versions() -> dict[str, str]:
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def progress_printer(quiet: bool) -> search.Progress:
    interactive = sys.stderr.isatty()

    def show(done: int, total: int, label: str) -> None:
        if quiet:
            return
        line = f"[{done:3d}/{total}] {label}"
        if interactive:
            print(f"\r{line:<60s}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(line, file=sys.stderr, flush=True)

    return show


def positive_class(args: argparse.Namespace, task: str, y_train: np.ndarray) -> int | None:
    if task != "classification":
        return None
    classes = np.unique(y_train).tolist()
    if args.positive_class is None:
        return int(classes[-1])
    if args.positive_class not in classes:
        raise TrainingError(f"--positive-class {args.positive_class} is not a class of the target "
                            f"({', '.join(map(str, classes))})")
    return args.positive_class


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Everything but the printing: returns a summary of what was written."""
    objective = check_args(args)
    signing_key = None
    if args.signing_key:
        try:
            signing_key = bundle.load_private_key(args.signing_key)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot use signing key {args.signing_key}: {exc}") from None
    data = load_data(args.data, args.target, args.drop)
    task = detect_task(data.y) if args.task == "auto" else args.task
    if task == "classification" and not np.all(data.y == np.round(data.y)):
        raise TrainingError(f"target {args.target!r} is not integer-coded; cannot classify")
    check_model_dir(args.model_dir, args.name)
    split = split_data(data, task, args)
    positive = positive_class(args, task, split.y_train)
    n_classes = len(np.unique(split.y_train)) if task == "classification" else 0
    binary = n_classes == 2

    started = time.perf_counter()
    folds = search.make_folds(task, split.X_train, split.y_train, args.cv, args.repeats, args.seed)
    k_max, notices = neighbour_range(folds, args.max_neighbors)
    scoring = search.scoring_for(task, n_classes)
    result = search.run(task, split.X_train, split.y_train, folds, scoring, k_max, args.families, args.repeats,
                        progress_printer(args.quiet))
    search_seconds = time.perf_counter() - started
    chosen = result.best()
    params = chosen.params
    decision = cv_proba = cv_positive = None
    if binary:
        decision, cv_proba, cv_positive = choose_threshold(task, params, split, folds, objective, positive)
    ood = ood_neighbours(task, params, split.X_train, split.y_train)
    model = fit_model(task, params, ood, split, decision, positive)

    metrics = report.evaluate(task, model, split.X_train, split.y_train, split.X_test, split.y_test, args.seed,
                              positive)
    min_rows = params.get("n_neighbors", 1) if task == "regression" else max(params.get("n_neighbors", 1),
                                                                             4 * n_classes)
    learning = report.learning_curve(search.build_pipeline(task, params), split.X_train, split.y_train,
                                     folds[: args.cv], scoring.scorer, min_rows, args.seed)
    figures = {
        bundle.PLOT_FILE: plots.cv_curves(
            result, chosen, f"{args.name}: {result.n_candidates} candidates, "
            f"{args.cv}-fold CV repeated {args.repeats}x, training part ({len(split.y_train)} rows)"),
        bundle.LEARNING_CURVE_FILE: plots.learning_curve(
            learning, scoring.label, scoring.lower_is_better,
            f"{args.name}: learning curve at the chosen parameters ({args.cv}-fold CV)"),
    }
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    version = new_version(args.model_dir, args.name, now)
    info: dict[str, Any] = {
        "created_at": now.isoformat(),
        "task": task,
        "estimator": describe_estimator(model),
        "best_params": params,
        "search": search_record(result, chosen, args, search_seconds, notices),
        "metrics": metrics,
    }
    if decision is not None:
        holdout_proba = model.predict_proba(split.X_test)[:, model.classes_.tolist().index(positive)]
        prior = float(np.mean(split.y_train == positive))
        info["decision_threshold"] = decision
        info["calibration"] = report.calibration(cv_positive, cv_proba, split.y_test == positive, holdout_proba,
                                                 prior)
        figures[bundle.RELIABILITY_FILE] = plots.reliability(
            info["calibration"], cv_proba, cv_positive, decision["threshold"], str(positive),
            f"{args.name}: calibration (class {positive} positive)")
    info["learning_curve"] = learning
    if ood is not None:
        info["ood"] = {"neighbours": ood, "measure": "mean distance to the nearest training rows, as many as the "
                       "median training row has within the radius"}
    info.update({
        "data": {
            "file": data.path.name,
            "sha256": data.sha256,
            "n_rows": data.n_rows,
            "n_train": len(split.y_train),
            "n_test": len(split.y_test),
            "seed": args.seed,
            "test_size": args.test_size,
            "dropped": list(args.drop),
        },
        "target": data.target_name,
        "features": feature_schema(data, split.X_train, args.categorical),
        "golden": golden_rows(model, data.feature_names, split.X_test, task),
        "versions": library_versions(),
    })
    if task == "classification":
        info["classes"] = [int(c) for c in model.classes_]
    reference = {
        "features": split.X_train,
        "neighbour_distances": neighbour_distances(model, split.X_train),
    }
    try:
        path = bundle.write_bundle(args.model_dir, args.name, version, model, info, reference, figures, signing_key)
        first = bundle.read_active(args.model_dir, args.name) is None
        if args.activate or first:
            bundle.write_active(args.model_dir, args.name, version)
    except OSError as exc:
        raise TrainingError(f"cannot write the bundle under {args.model_dir}: {exc.strerror or exc}") from None
    return {
        "path": path,
        "info": bundle.read_info(path),
        "activated": args.activate or first,
        "signed": signing_key is not None,
        "notices": notices,
        "seconds": search_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = train(args)
    except TrainingError as exc:
        print(f"learn.py: error: {exc}", file=sys.stderr)
        return 2
    for notice in summary["notices"]:
        print(f"notice: {notice}", file=sys.stderr)
    print(report.render_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
