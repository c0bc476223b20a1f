"""The charts of an ablation: grouped score bars with seed error bars, and training-loss curves.

Both are drawn on a bare Agg canvas (no pyplot, so no global backend or figure state), under
matplotlib's default style with fixed fonts and sizes, at a fixed figure size and dpi, and saved
without a timestamp: the same inputs give the same PNG bytes on the same matplotlib version (which
the PNG names in its Software field, so a test can tell a changed input from a changed library).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vlmlab.run_record import Plan

FIGSIZE = (8.0, 4.5)  # inches
DPI = 100  # so every chart is 800 x 450 pixels
PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
SOFTWARE = f"matplotlib {matplotlib.__version__} (vlmlab)"
_RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: no system font can change the output
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "hatch.linewidth": 0.8,
}
LOSS_COLUMN, STEP_COLUMN = "train/loss", "step"


def scores_png(plan: Plan, summary: pd.DataFrame) -> bytes:
    """The grouped score bars of `scores_figure` as PNG bytes."""
    with _style():
        return _png(scores_figure(plan, summary))


def loss_png(plan: Plan, curves: dict[str, pd.DataFrame]) -> bytes:
    """The training-loss chart of `loss_figure` as PNG bytes."""
    with _style():
        return _png(loss_figure(plan, curves))


def scores_figure(plan: Plan, summary: pd.DataFrame) -> Figure:
    """Grouped bars: one group per metric and Avg., one bar per arm (mean, error bar = std over seeds)."""
    ablation = plan.ablation
    keys, labels = [*ablation.metrics, "avg"], [*ablation.metrics, "Avg."]
    with _style():
        fig, ax = _figure()
        width = 0.8 / max(len(summary), 1)
        for i, (_, row) in enumerate(summary.iterrows()):
            xs, means, stds = [], [], []
            for j, key in enumerate(keys):
                mean = float(row[f"{key}_mean"])
                if row["n_done"] and not math.isnan(mean):
                    xs.append(j - 0.4 + width * (i + 0.5))
                    means.append(mean)
                    std = float(row[f"{key}_std"])
                    stds.append(0.0 if math.isnan(std) else std)
            control = bool(row["is_control"])
            label = f"{row['arm']} (control)" if control else str(row["arm"])
            if not row["n_done"]:
                label += f" ({row['status']}: no bars)"
            ax.bar(xs, means, width, yerr=stds, label=label, color=f"C{i % 10}",
                   hatch="//" if control else None, edgecolor="black" if control else "white",
                   linewidth=1.6 if control else 0.5, capsize=2.5,
                   error_kw={"elinewidth": 0.9, "ecolor": "black"})
        ax.set_xticks(range(len(keys)), labels)
        ax.set_xlabel("benchmark")
        ax.set_ylabel("score (points, higher is better)")
        ax.set_title(f"{ablation.name}: mean over seeds, error bars ± sample std "
                     f"(control hatched)")
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        ax.set_axisbelow(True)
        fig.legend(loc="outside right upper", title="arm")
        return fig


def read_loss_curves(logs: dict[str, list[Path]]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Per arm, the mean over runs of train/loss by step (columns step, loss, runs), and what was skipped."""
    curves: dict[str, pd.DataFrame] = {}
    warnings: list[str] = []
    absent = 0
    for arm, paths in logs.items():
        frames = []
        for path in paths:
            if not path.exists():
                absent += 1
                continue
            try:
                frames.append(_read_loss(path))
            except Exception as exc:  # a truncated or foreign log loses its curve, not the chart
                warnings.append(f"{path.parent.name}/{path.name}: loss log unreadable "
                                f"({type(exc).__name__}: {exc}); left out of the loss chart")
        frames = [frame for frame in frames if not frame.empty]
        if frames:
            both = pd.concat(frames, ignore_index=True)
            grouped = both.groupby(STEP_COLUMN)["loss"]
            curve = pd.DataFrame({"loss": grouped.mean(), "runs": grouped.size()}).reset_index()
            curves[arm] = curve.rename(columns={STEP_COLUMN: "step"})
    if absent:
        warnings.append(f"{absent} finished runs have no .metrics.csv beside their record; "
                        "left out of the loss chart")
    return curves, warnings


def loss_figure(plan: Plan, curves: dict[str, pd.DataFrame]) -> Figure:
    """Training loss against step, one line per arm (mean over its runs), the control drawn thickest."""
    ablation = plan.ablation
    with _style():
        fig, ax = _figure()
        for i, arm in enumerate(ablation.arms):  # plan order, so colours match the bar chart
            curve = curves.get(arm)
            if curve is None or curve.empty:
                continue
            control = arm == ablation.control
            runs = int(curve["runs"].max())
            label = f"{arm} (control)" if control else arm
            ax.plot(curve["step"], curve["loss"], color=f"C{i % 10}", linewidth=2.2 if control else 1.2,
                    label=f"{label}, {runs} run{'s' if runs != 1 else ''}", zorder=3 if control else 2)
        if curves:
            fig.legend(loc="outside right upper", title="arm")
        else:
            ax.text(0.5, 0.5, "no training-loss logs (.metrics.csv) beside the finished records",
                    ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss (mean over finished seeds)")
        ax.set_title(f"{ablation.name}: training loss by step")
        ax.grid(linewidth=0.4, alpha=0.5)
        return fig


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, from its header; ValueError if `data` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _read_loss(path: Path) -> pd.DataFrame:
    """The finite train/loss values of one Lightning CSV log, with their step."""
    frame = pd.read_csv(path)
    missing = [c for c in (STEP_COLUMN, LOSS_COLUMN) if c not in frame.columns]
    if missing:
        raise ValueError(f"no column {missing[0]!r}")
    steps = pd.to_numeric(frame[STEP_COLUMN], errors="coerce")
    loss = pd.to_numeric(frame[LOSS_COLUMN], errors="coerce")
    keep = np.isfinite(steps) & np.isfinite(loss)
    return pd.DataFrame({STEP_COLUMN: steps[keep].astype("int64"), "loss": loss[keep]})


def _style() -> Any:
    """matplotlib's defaults (not the user's matplotlibrc) with this module's fonts and sizes."""
    return matplotlib.style.context(["default", _RC])


def _figure() -> tuple[Figure, Any]:
    """A fixed-size figure on an Agg canvas, laid out so that outside legends fit."""
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes, at its own size, with no timestamp."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": SOFTWARE})
    return buffer.getvalue()
