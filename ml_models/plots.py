"""The plots written into a bundle, as PNG bytes. The only module that imports matplotlib.

- ``cv_curves``: the CV score over the whole size grid of each family
  (n_neighbors, radius; log-scaled), one line per scaler, metric and
  weighting, the family's winner and runner-up marked;
- ``learning_curve``: CV and training score against the number of training rows;
- ``reliability``: observed frequency against predicted probability
  (classifiers), with the distribution of the probabilities and the threshold.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ml_models.search import Candidate, SearchResult

COLOURS = {("standard", 2): "#1f77b4", ("standard", 1): "#ff7f0e", ("robust", 2): "#2ca02c", ("robust", 1): "#d62728"}
LINESTYLES = {"uniform": ":", "distance": "-"}
FAMILY_AXIS = {"knn": "n_neighbors (log scale)", "radius": "radius in the scaled space (log scale)"}
FAMILY_TITLE = {"knn": "k nearest neighbours", "radius": "neighbours within a radius"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def cv_curves(result: SearchResult, chosen: Candidate, title: str) -> bytes:
    plt = _pyplot()
    from matplotlib import ticker
    scoring = result.scoring
    families = result.families()
    fig, axes = plt.subplots(1, len(families), figsize=(6.0 * len(families), 4.8), dpi=100, squeeze=False)
    fig.subplots_adjust(left=0.07 if len(families) > 1 else 0.12, right=0.98, top=0.86, bottom=0.3, wspace=0.18)
    sign = -1.0 if scoring.lower_is_better else 1.0
    best_shown = scoring.shown(chosen.mean)
    if scoring.lower_is_better:
        # Log scale: the minimum and the climb to the baseline at the largest k both stay readable.
        largest = max(float(np.max(sign * curve.mean)) for curve in result.curves if curve.setting.family == "knn") \
            if "knn" in families else 4 * best_shown
        limits = (best_shown * 0.8, min(largest * 1.1, best_shown * 6))
    else:
        shown_all = np.concatenate([sign * curve.mean for curve in result.curves])
        limits = (max(float(np.min(shown_all)), best_shown - 3 * (1 - best_shown) - 0.05),
                  min(1.0, best_shown + 0.3 * (1 - best_shown)))
    handles = []
    for ax, family in zip(axes[0], families, strict=True):
        winner, runner_up = result.best(family), result.runner_up(family)
        for curve in (c for c in result.curves if c.setting.family == family):
            setting = curve.setting
            mean = sign * curve.mean
            emphasis = setting == winner.setting
            colour = COLOURS[(setting.scaler, setting.p)]
            (line,) = ax.plot(curve.values, mean, color=colour, linestyle=LINESTYLES[setting.weights],
                              linewidth=2.2 if emphasis else 1.0, label=setting.label)
            if family == families[0]:
                handles.append(line)
            if emphasis:
                ax.fill_between(curve.values, mean - curve.std, mean + curve.std, color=colour, alpha=0.08)
        notes = []
        for candidate, marker, text in ((winner, "*", "winner"), (runner_up, "o", "runner-up")):
            if candidate is None:
                continue
            y = scoring.shown(candidate.mean)
            ax.plot([candidate.value], [y], marker=marker, markersize=12 if marker == "*" else 7, color="black",
                    markerfacecolor="black" if marker == "*" else "none", linestyle="none")
            notes.append(f"{'★' if marker == '*' else '○'} {text}: {candidate.setting.size_key}={candidate.value:g}"
                         f" ({candidate.setting.label}), {y:.4g} ± {candidate.std:.2g}")
        ax.text(0.98 if scoring.lower_is_better else 0.5, 0.04, "\n".join(notes), transform=ax.transAxes,
                fontsize=7.5, ha="right" if scoring.lower_is_better else "center", va="bottom",
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})
        if chosen.setting.family == family:
            ax.axvline(chosen.value, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        if scoring.lower_is_better:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.yaxis.set_minor_formatter(ticker.ScalarFormatter())
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_ylim(*limits)
        ax.set_xlabel(FAMILY_AXIS[family])
        ax.set_ylabel(f"CV {scoring.label}, mean of {result.n_splits}x{result.n_repeats} folds")
        ax.set_title(FAMILY_TITLE[family] + (" (chosen family)" if chosen.setting.family == family else ""),
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False,
               title="scaler, Minkowski p, weights (thick line and band: the family winner's setting, ± 1 std "
               "over folds)", title_fontsize=8)
    fig.suptitle(title, fontsize=10.5)
    return _png(fig)


def learning_curve(curve: dict[str, Any], label: str, lower_is_better: bool, title: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    sign = -1.0 if lower_is_better else 1.0
    sizes = np.array(curve["train_sizes"])
    for key, name, colour in (("cv", "cross-validation", "#1f77b4"), ("train", "the training rows themselves",
                                                                      "#ff7f0e")):
        mean, std = sign * np.array(curve[f"{key}_mean"]), np.array(curve[f"{key}_std"])
        ax.plot(sizes, mean, marker="o", markersize=4, color=colour, label=name)
        ax.fill_between(sizes, mean - std, mean + std, color=colour, alpha=0.15)
    perfect = 0.0 if lower_is_better else 1.0
    if np.allclose(sign * np.array(curve["train_mean"]), perfect):
        ax.annotate("perfect by construction: with distance weights a training row is its own nearest neighbour",
                    xy=(sizes[len(sizes) // 2], perfect), xytext=(0, 6 if lower_is_better else -12),
                    textcoords="offset points", ha="center", fontsize=7, color="#a0522d")
    ax.set_xlabel("training rows")
    ax.set_ylabel(f"{label} (± 1 std over {curve['n_folds']} folds)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


def reliability(calibration: dict[str, Any], cv_proba: np.ndarray, cv_positive: np.ndarray, threshold: float,
                positive_label: str, title: str) -> bytes:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.0, 6.4), dpi=100, height_ratios=(3, 1.3), sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for key, name, colour, marker in (("cv", "out-of-fold CV", "#1f77b4", "o"), ("holdout", "holdout", "#ff7f0e", "s")):
        table = calibration[f"reliability_{key}"]
        n = calibration["n_cv_predictions"] if key == "cv" else calibration["n_holdout_rows"]
        top.plot(table["predicted"], table["observed"], marker=marker, color=colour,
                 label=f"{name}: Brier {calibration[f'brier_{key}']:.3f} ({n} predictions)")
    top.axvline(threshold, color="black", linewidth=0.8, linestyle=":")
    top.set_ylabel(f"observed share of class {positive_label}")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    top.set_title(title, fontsize=10)
    bins = np.linspace(0, 1, 21)
    bottom.hist([cv_proba[~cv_positive], cv_proba[cv_positive]], bins=bins, stacked=True,
                color=["#9ecae1", "#08519c"], label=["other class", f"class {positive_label}"])
    bottom.axvline(threshold, color="black", linewidth=0.8, linestyle=":", label=f"threshold {threshold:.3f}")
    bottom.set_xlabel(f"predicted probability of class {positive_label}")
    bottom.set_ylabel("CV rows")
    bottom.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)
