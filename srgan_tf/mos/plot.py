"""The score-distribution figure (after Ledig et al. 2017, Fig. 5): per method, one cell per score 1..5
coloured by the share of that method's ratings, with the MOS as a red marker."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from srgan_tf.images import atomic_write
from srgan_tf.mos.study import SCORE_LABELS


def distribution_png(report: dict) -> bytes:
    """The figure of `report` (a `compute_report` dict) as PNG bytes. Uses matplotlib's object API without
    pyplot, so it touches no global state and needs no display."""
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = report["methods"]
    scores = list(SCORE_LABELS)
    shares = np.zeros((len(scores), len(methods)))
    for j, m in enumerate(methods):
        if m["n"]:
            shares[:, j] = [m["histogram"][str(s)] / m["n"] for s in scores]

    fig = Figure(figsize=(1.5 + 1.3 * len(methods), 4.2), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(shares, origin="lower", cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto",
                      extent=(-0.5, len(methods) - 0.5, 0.5, len(scores) + 0.5))
    for j, m in enumerate(methods):
        for i, s in enumerate(scores):
            if shares[i, j] > 0:  # in the cell's lower left corner, clear of the MOS marker and its label
                ax.text(j - 0.44, s - 0.42, f"{100 * shares[i, j]:.0f}%", ha="left", va="bottom", fontsize=7,
                        color="white" if shares[i, j] > 0.55 else "black")
        if m["mos"] is not None:
            ax.plot(j, m["mos"], marker="D", markersize=7, color="red", markeredgecolor="white", zorder=3)
            ax.text(j + 0.1, m["mos"], f"{m['mos']:.2f}", ha="left", va="center", fontsize=8, color="red",
                    fontweight="bold", zorder=3,
                    path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")])
    ax.set_xticks(range(len(methods)), [f"{m['method']}\nn={m['n']}" for m in methods])
    ax.set_yticks(scores, [f"{s} {SCORE_LABELS[s]}" for s in scores])
    ax.set_ylabel("score")
    ax.set_title(f"Scores per method ({report['raters']['with_scores']} raters); red: MOS", fontsize=10)
    fig.colorbar(image, ax=ax, label="share of the method's ratings", shrink=0.9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_distribution_plot(report: dict, path: str | os.PathLike) -> None:
    """Writes the figure to `path` (PNG), atomically."""
    data = distribution_png(report)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
