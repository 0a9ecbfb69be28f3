"""Plots of a policy schedule in the style of the paper's Fig. 3/4 (and PBA's Fig. 4).

Top panel: per-op probability over epochs (each op's two copies averaged; normalised by the
largest per-epoch sum over all epochs, so the stacked total peaks at exactly 1). Bottom panel:
per-op mean magnitude level (copies averaged) over epochs. :func:`plot_compare` draws several
schedules side by side with the same routine and shared scales (A_T vs A_S, the paper's
Fig. 3 vs Fig. 4).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rolekd_tf.augment.policy import LAYOUT_SHAPE, LEVEL, OP_ORDER, PROB, PROB_MAX, Schedule
from rolekd_tf.errors import ScheduleError
from rolekd_tf.fileio import atomic_path

__all__ = ["OpStats", "schedule_op_stats", "plot_schedule", "plot_compare", "LEVEL_UNUSED"]

#: Ops whose level is ignored (docs/METHOD.md §1); drawn faint in the magnitude panel.
LEVEL_UNUSED = frozenset({"Invert", "Equalize", "AutoContrast"})


@dataclass(frozen=True)
class OpStats:
    """Per-epoch, per-op numbers behind :func:`plot_schedule` (arrays are ``[epochs, 15]``)."""

    op_names: tuple[str, ...]
    prob: np.ndarray          # mean of the two copies' probabilities, in 0..1 (v / 10)
    prob_norm: np.ndarray     # prob / norm; max over epochs of the row sum is 1 (unless all zero)
    norm: float               # the largest per-epoch sum of ``prob`` (0.0 for an all-zero schedule)
    magnitude: np.ndarray     # mean of the two copies' levels, 0..9


def schedule_op_stats(schedule: Schedule, *, norm: float | None = None) -> OpStats:
    """Averaged and normalised per-op probabilities and magnitudes of ``schedule``.

    ``norm``: divide the probabilities by this instead of the schedule's own largest per-epoch
    sum (:func:`plot_compare` passes the larger of the schedules' sums, so heights compare).
    """
    if not isinstance(schedule, Schedule):
        raise ScheduleError(f"schedule_op_stats needs a Schedule, got {type(schedule).__name__}")
    a = schedule.as_array().astype(np.float64)                 # [E, 60]
    e = a.shape[0]
    copies = a.reshape(e, *LAYOUT_SHAPE)                       # [E, copy, op, (prob, level)]
    prob = copies[..., PROB].mean(axis=1) / PROB_MAX           # [E, 15]
    mag = copies[..., LEVEL].mean(axis=1)                      # [E, 15]
    own = float(prob.sum(axis=1).max())
    norm = own if norm is None else float(norm)
    prob_norm = prob / norm if norm > 0 else np.zeros_like(prob)
    return OpStats(op_names=tuple(OP_ORDER), prob=prob, prob_norm=prob_norm, norm=norm, magnitude=mag)


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def _draw_schedule(ax_p, ax_m, schedule: Schedule, st: OpStats, colors, *, prob_title: str,
                   ylabels: bool = True) -> None:
    """Draw one schedule: stacked normalised probabilities on ``ax_p``, magnitudes on ``ax_m``.

    The one drawing routine behind :func:`plot_schedule` and :func:`plot_compare` (same colours
    per op, same y ranges)."""
    epochs = np.arange(schedule.epochs)
    # Stacked areas; a step plot so a one-epoch segment is visible and boundaries are exact.
    x = np.append(epochs, schedule.epochs)                     # epoch e spans [e, e+1)
    yp = np.vstack([st.prob_norm, st.prob_norm[-1:]]).T        # [15, E+1]
    ax_p.stackplot(x, yp, labels=st.op_names, colors=colors, step="post", linewidth=0)
    ax_p.set_ylim(0, 1.02)
    ax_p.set_title(prob_title + ("" if st.prob.any() else " — all zero"), fontsize=10)

    ym = np.vstack([st.magnitude, st.magnitude[-1:]])
    for k, name in enumerate(st.op_names):
        unused = name in LEVEL_UNUSED
        ax_m.step(x, ym[:, k], where="post", color=colors[k],
                  label=name + (" (level unused)" if unused else ""),
                  linestyle=":" if unused else ("--" if k % 2 else "-"),
                  linewidth=1.0 if unused else 1.5, alpha=0.45 if unused else 0.95)
    ax_m.set_ylim(-0.2, 9.2)
    ax_m.set_xlabel("epoch")
    for ax in (ax_p, ax_m):
        ax.set_xlim(0, schedule.epochs)
    if ylabels:
        ax_p.set_ylabel("normalised probability")
        ax_m.set_ylabel("mean magnitude level")

    for ax in (ax_p, ax_m):
        ax.grid(True, alpha=0.3, linewidth=0.5)
    # Segment boundaries (PBT policy changes) as faint ticks on both panels.
    bounds = np.cumsum([n for _, n in schedule.segments])[:-1]
    if len(bounds) <= 60:
        for b in bounds:
            for ax in (ax_p, ax_m):
                ax.axvline(b, color="k", alpha=0.12, linewidth=0.6)


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_schedule(schedule: Schedule, path: str | os.PathLike, *, title: str | None = None,
                  dpi: int = 120) -> None:
    """Write a two-panel PNG of ``schedule`` to ``path`` (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    st = schedule_op_stats(schedule)
    colors = _colors(len(OP_ORDER))
    fig = Figure(figsize=(11, 7.5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax_p, ax_m = fig.subplots(2, 1, sharex=True)
    _draw_schedule(ax_p, ax_m, schedule, st, colors,
                   prob_title="Operation probability (copies averaged; max per-epoch sum = 1)")
    ax_m.set_title("Operation magnitude (copies averaged)", fontsize=10)
    handles, labels = ax_p.get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="center right", fontsize=8, frameon=False,
               title="op", title_fontsize=9)
    if title is None:
        src = schedule.source
        title = src.get("file") or "augmentation schedule"
        title = f"{title} ({schedule.epochs} epochs, {len(schedule.segments)} segments)"
    fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.07, right=0.85, top=0.91, bottom=0.08, hspace=0.22)
    _save(fig, path)


def plot_compare(schedules: Sequence[Schedule], labels: Sequence[str], path: str | os.PathLike, *,
                 title: str | None = None, dpi: int = 120):
    """Write a PNG with the schedules side by side (one column each: probability over magnitude),
    e.g. A_T and A_S as the paper's Fig. 3 and Fig. 4.

    Shared scales: every column's probabilities are divided by the **largest** per-epoch sum of
    all the schedules (so a column that reaches 1 holds the strongest epoch of the figure and the
    heights compare across columns); magnitudes share the 0..9 axis; one colour per op, one legend.
    Returns the matplotlib Figure (already written to ``path``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(schedules) != len(labels) or not schedules:
        raise ScheduleError(f"plot_compare needs one label per schedule, got {len(schedules)} schedules "
                            f"and {len(labels)} labels")
    norm = max(schedule_op_stats(s).norm for s in schedules)
    colors = _colors(len(OP_ORDER))
    n = len(schedules)
    fig = Figure(figsize=(5.2 * n + 2.2, 7.5), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, n, sharey="row", squeeze=False)
    for j, (sched, label) in enumerate(zip(schedules, labels)):
        st = schedule_op_stats(sched, norm=norm)
        _draw_schedule(axes[0, j], axes[1, j], sched, st, colors, prob_title=f"{label}: probability",
                       ylabels=(j == 0))
        axes[1, j].set_title(f"{label}: magnitude", fontsize=10)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[::-1], names[::-1], loc="center right", fontsize=8, frameon=False,
               title="op", title_fontsize=9)
    if title is None:
        title = " vs ".join(labels)
    fig.suptitle(title + "\n(probabilities normalised by the largest per-epoch sum of the "
                 "figure; copies averaged)", fontsize=11)
    fig.subplots_adjust(left=0.06, right=1 - 1.9 / (5.2 * n + 2.2), top=0.88, bottom=0.08,
                        hspace=0.25, wspace=0.08)
    _save(fig, path)
    return fig
