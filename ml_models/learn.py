"""Train a scaled k-nearest-neighbours model and write a versioned, verifiable bundle.

    python ml_models/learn.py                       # Boston housing regressor
    python ml_models/learn.py --data ml_models/data/heart.csv --target target --name heart-knn

The number of neighbours and the weighting are chosen by cross-validated grid
search on the training part; the holdout part gives the metrics stored with
the model, next to a trivial baseline so a reader can tell whether the model
is any good. Bad input ends with one line on stderr and exit code 2.
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

from ml_models import bundle

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_DATA = DATA_DIR / "boston_housing.csv"
DEFAULT_TARGET = "MEDV"
DEFAULT_NAME = "boston-knn"
# B encodes the share of Black residents of a town (see data/README.md); the
# default model leaves it out rather than use race as a predictor of price.
DEFAULT_DROP = ("B",)
DEFAULT_MODEL_DIR = PROJECT_ROOT / "models"

WEIGHTS = ("uniform", "distance")
DEFAULT_MAX_NEIGHBORS = 30
DEFAULT_CV = 5
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


# --- search ----------------------------------------------------------------------


def build_pipeline(task: str, params: dict[str, Any] | None = None):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = KNeighborsClassifier() if task == "classification" else KNeighborsRegressor()
    pipeline = Pipeline([("scale", StandardScaler()), ("knn", estimator)])
    if params:
        pipeline.set_params(**{f"knn__{key}": value for key, value in params.items()})
    return pipeline


def scoring_for(task: str, n_classes: int) -> tuple[str, str, bool]:
    """(scikit-learn scorer, label for people, whether lower is better)."""
    if task == "regression":
        return "neg_mean_squared_error", "MSE", True
    # ROC AUC ranks patients without a threshold and is symmetric in which
    # class is called positive; the heart data's target coding is uncertain
    # (data/README.md), so a metric that flips with it would be unsafe.
    if n_classes == 2:
        return "roc_auc", "ROC AUC", False
    return "balanced_accuracy", "balanced accuracy", False


def make_folds(task: str, cv: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == "classification":
        return StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return KFold(n_splits=cv, shuffle=True, random_state=seed)


def grid(max_neighbors: int) -> list[dict[str, Any]]:
    return [
        {"n_neighbors": k, "weights": weights}
        for weights in WEIGHTS
        for k in range(1, max_neighbors + 1)
    ]


def search(task: str, X: np.ndarray, y: np.ndarray, candidates, folds, scorer: str, progress) -> list[dict]:
    """Cross-validate every candidate; returns one record per candidate, in grid order."""
    from sklearn.model_selection import cross_val_score

    results = []
    for index, params in enumerate(candidates, start=1):
        scores = cross_val_score(build_pipeline(task, params), X, y, cv=folds, scoring=scorer)
        results.append({**params, "mean": float(scores.mean()), "std": float(scores.std())})
        progress(index, len(candidates), params, results[-1]["mean"])
    return results


def best_candidate(results: list[dict]) -> dict:
    """Highest mean score (scorers are larger-is-better); the first in grid order wins ties."""
    return max(results, key=lambda record: record["mean"])


# --- evaluation ------------------------------------------------------------------


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(y_true, y_pred))
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": float(r2_score(y_true, y_pred)),
    }


def classification_metrics(y_true, y_pred, proba, classes) -> dict[str, Any]:
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    positive = classes[-1]
    kwargs = {"average": average, "zero_division": 0}
    if binary:
        kwargs["pos_label"] = positive
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, **kwargs)),
        "recall": float(recall_score(y_true, y_pred, **kwargs)),
        "f1": float(f1_score(y_true, y_pred, **kwargs)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }
    if binary:
        metrics["roc_auc"] = float(roc_auc_score(y_true == positive, proba[:, 1]))
    else:
        metrics["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
    return metrics


def evaluate(task: str, model, X_train, y_train, X_test, y_test) -> dict[str, Any]:
    """Holdout metrics for the model and for a trivial baseline fitted on the training part."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    if task == "regression":
        baseline = DummyRegressor(strategy="mean").fit(X_train, y_train)
        return {
            "holdout": regression_metrics(y_test, model.predict(X_test)),
            "baseline": {"strategy": "mean", **regression_metrics(y_test, baseline.predict(X_test))},
        }
    classes = model.classes_.tolist()
    baseline = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
    return {
        "holdout": classification_metrics(y_test, model.predict(X_test), model.predict_proba(X_test), classes),
        "baseline": {
            "strategy": "most_frequent",
            **classification_metrics(
                y_test, baseline.predict(X_test), baseline.predict_proba(X_test), classes
            ),
        },
        "positive_class": classes[-1],
    }


def neighbour_distances(model, X: np.ndarray) -> np.ndarray:
    """Leave-one-out mean distance of each training row to its k neighbours, scaled space, sorted."""
    knn = model.named_steps["knn"]
    distances, _ = knn.kneighbors()  # without X: each row's neighbours exclude itself
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


def plot_cv(results: list[dict], metric_label: str, lower_is_better: bool, best: dict, title: str) -> bytes:
    """PNG of the CV score against n_neighbors, one line per weights option."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    sign = -1.0 if lower_is_better else 1.0
    for weights in WEIGHTS:
        rows = [r for r in results if r["weights"] == weights]
        ks = [r["n_neighbors"] for r in rows]
        means = np.array([sign * r["mean"] for r in rows])
        stds = np.array([r["std"] for r in rows])
        ax.plot(ks, means, marker="o", markersize=3, label=f"weights={weights}")
        ax.fill_between(ks, means - stds, means + stds, alpha=0.12)
    ax.axvline(best["n_neighbors"], color="grey", linestyle="--", linewidth=1)
    ax.annotate(
        f"chosen: k={best['n_neighbors']}, {best['weights']}",
        xy=(best["n_neighbors"], sign * best["mean"]),
        xytext=(8, 12),
        textcoords="offset points",
        fontsize=8,
    )
    ax.set_xlabel("n_neighbors")
    ax.set_ylabel(f"cross-validated {metric_label} (± 1 std)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


# --- the command -----------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="learn.py",
        description="Train a scaled KNN model by cross-validated grid search and write a "
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
                        help="seed for the split and the CV folds (default: 42)")
    parser.add_argument("--test-size", type=float, default=DEFAULT_TEST_SIZE,
                        help="holdout share, between 0 and 1 (default: 0.1)")
    parser.add_argument("--max-neighbors", type=int, default=DEFAULT_MAX_NEIGHBORS,
                        help="search n_neighbors from 1 to this "
                        "(default: 30; cut to what the smallest CV training fold allows)")
    parser.add_argument("--cv", type=int, default=DEFAULT_CV, help="number of cross-validation folds (default: 5)")
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
    args.name = args.name or (DEFAULT_NAME if bundled else f"{args.data.stem}-knn".replace("_", "-"))
    env_dir = os.environ.get("MODEL_DIR")
    args.model_dir = args.model_dir or (Path(env_dir) if env_dir else DEFAULT_MODEL_DIR)
    env_key = os.environ.get("MODEL_SIGNING_KEY")
    args.signing_key = args.signing_key or (Path(env_key) if env_key else None)
    return args


def check_args(args: argparse.Namespace) -> None:
    if not 0 < args.test_size < 1:
        raise TrainingError("--test-size must be between 0 and 1")
    if args.cv < 2:
        raise TrainingError("--cv must be at least 2")
    if args.max_neighbors < 1:
        raise TrainingError("--max-neighbors must be at least 1")
    if not bundle.NAME_PATTERN.match(args.name):
        raise TrainingError(f"invalid model name {args.name!r}: letters, digits, '.', '_' and '-' only")


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


def progress_printer(quiet: bool):
    interactive = sys.stderr.isatty()

    def show(done: int, total: int, params: dict, score: float) -> None:
        if quiet:
            return
        line = f"[{done:3d}/{total}] n_neighbors={params['n_neighbors']:<3d} weights={params['weights']:<8s}"
        if interactive:
            print(f"\r{line}", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(line, file=sys.stderr, flush=True)

    return show


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Everything but the printing: returns a summary of what was written."""
    from sklearn.model_selection import train_test_split

    check_args(args)
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

    stratify = data.y if task == "classification" else None
    n_test = math.ceil(args.test_size * data.n_rows)
    n_train = data.n_rows - n_test
    if n_test < 2 or n_train < 2 * args.cv:
        raise TrainingError(
            f"{data.n_rows} rows are too few for a {args.test_size} holdout and {args.cv}-fold CV "
            f"(need at least {2 * args.cv} training and 2 holdout rows)"
        )
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            data.X, data.y, test_size=args.test_size, random_state=args.seed, stratify=stratify
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split the data: {exc}") from None
    if task == "classification":
        y_train, y_test = y_train.astype(int), y_test.astype(int)
        if np.min(np.bincount(y_train - y_train.min())[np.unique(y_train) - y_train.min()]) < args.cv:
            raise TrainingError(f"a class has fewer training rows than --cv={args.cv} folds")

    smallest_fold = n_train - math.ceil(n_train / args.cv)
    max_neighbors = args.max_neighbors
    notices = []
    if max_neighbors > smallest_fold:
        notices.append(
            f"n_neighbors cut to {smallest_fold}: the smallest CV training fold has {smallest_fold} rows"
        )
        max_neighbors = smallest_fold
    n_classes = len(np.unique(y_train)) if task == "classification" else 0
    scorer, metric_label, lower_is_better = scoring_for(task, n_classes)
    candidates = grid(max_neighbors)
    started = time.perf_counter()
    results = search(task, X_train, y_train, candidates, make_folds(task, args.cv, args.seed),
                     scorer, progress_printer(args.quiet))
    best = best_candidate(results)
    params = {"n_neighbors": best["n_neighbors"], "weights": best["weights"]}
    model = build_pipeline(task, params).fit(X_train, y_train)
    search_seconds = time.perf_counter() - started

    metrics = evaluate(task, model, X_train, y_train, X_test, y_test)
    cv_score = -best["mean"] if lower_is_better else best["mean"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    version = new_version(args.model_dir, args.name, now)
    estimator = type(model.named_steps["knn"]).__name__
    info: dict[str, Any] = {
        "created_at": now.isoformat(),
        "task": task,
        "estimator": f"Pipeline(StandardScaler, {estimator})",
        "best_params": params,
        "search": {
            "n_neighbors": [1, max_neighbors],
            "weights": list(WEIGHTS),
            "cv_folds": args.cv,
            "scoring": scorer,
            "metric": metric_label,
            "cv_score": cv_score,
            "cv_score_std": best["std"],
            "n_candidates": len(candidates),
            "seconds": round(search_seconds, 2),
            "notices": notices,
        },
        "metrics": metrics,
        "data": {
            "file": data.path.name,
            "sha256": data.sha256,
            "n_rows": data.n_rows,
            "n_train": len(y_train),
            "n_test": len(y_test),
            "seed": args.seed,
            "test_size": args.test_size,
            "dropped": list(args.drop),
        },
        "target": data.target_name,
        "features": feature_schema(data, X_train, args.categorical),
        "golden": golden_rows(model, data.feature_names, X_test, task),
        "versions": library_versions(),
    }
    if task == "classification":
        info["classes"] = [int(c) for c in model.classes_]
    reference = {
        "features": X_train,
        "neighbour_distances": neighbour_distances(model, X_train),
    }
    plot = plot_cv(results, metric_label, lower_is_better, best,
                   f"{args.name}: {len(candidates)} candidates, {args.cv}-fold CV")
    try:
        path = bundle.write_bundle(args.model_dir, args.name, version, model, info, reference, plot, signing_key)
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


def render_summary(summary: dict[str, Any]) -> str:
    info = summary["info"]
    search_info = info["search"]
    holdout, baseline = info["metrics"]["holdout"], info["metrics"]["baseline"]
    lines = [
        f"task        {info['task']} ({info['estimator']}), target {info['target']}, "
        f"{len(info['features'])} features",
        f"data        {info['data']['file']}: {info['data']['n_train']} train / {info['data']['n_test']} holdout rows"
        + (f", dropped {', '.join(info['data']['dropped'])}" if info["data"]["dropped"] else ""),
        f"search      {search_info['n_candidates']} candidates x {search_info['cv_folds']} folds "
        f"in {summary['seconds']:.1f} s",
        f"chosen      n_neighbors={info['best_params']['n_neighbors']}, weights={info['best_params']['weights']}",
        f"CV {search_info['metric']:<8s} {search_info['cv_score']:.4f} (± {search_info['cv_score_std']:.4f})",
        "",
        f"{'holdout':<12s}{'model':>10s}{'baseline':>10s}",
    ]
    keys = ("mae", "mse", "rmse", "r2") if info["task"] == "regression" else (
        "accuracy", "precision", "recall", "f1", "roc_auc")
    for key in keys:
        lines.append(f"{key.upper():<12s}{holdout[key]:>10.4f}{baseline[key]:>10.4f}")
    if info["task"] == "classification":
        lines.append(f"confusion   {holdout['confusion_matrix']} (rows: true {info['classes']})")
    lines += [
        "",
        f"bundle      {summary['path']}",
        f"version     {info['version']}" + (" (active)" if summary["activated"] else " (not active; use --activate)"),
        f"model.pkl   md5 {info['files']['model.pkl']['md5']}",
        "signature   " + ("Ed25519, model_info.yaml.sig" if summary["signed"]
                          else "none: unsigned bundle (set MODEL_SIGNING_KEY to sign)"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = train(args)
    except TrainingError as exc:
        print(f"learn.py: error: {exc}", file=sys.stderr)
        return 2
    for notice in summary["notices"]:
        print(f"notice: {notice}", file=sys.stderr)
    print(render_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
