"""The results report's figures (see srgan_tf.report): training curves and the network-interpolation sweep.

Both use matplotlib's object API on the Agg canvas (no pyplot, no display, no global state) and are written
as PNG atomically. matplotlib is the `report` extra: `pip install "srgan-tf[report]"`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from srgan_tf.images import atomic_write

Series = Mapping[int, float]  # global step -> value


def _figure(width: float, height: float, rows: int, cols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False).ravel()


def _save(fig, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def _plot(ax, series: Series, label: str, offset: int = 0, **style) -> bool:
    if not series:
        return False
    steps = sorted(series)
    if len(steps) <= 30:  # a few points (a short phase, a rare evaluation) would be invisible as a bare line
        style = {"marker": "o", "markersize": 3} | style
    ax.plot([s + offset for s in steps], [series[s] for s in steps], label=label, **style)
    return True


def _finish(ax, title: str, xlabel: str, ylabel: str, drew: bool, boundary: int | None = None) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if boundary is not None and drew:
        ax.axvline(boundary, color="gray", linestyle="--", linewidth=1)
    if drew:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")


def save_training_curves(scalars: Mapping[str, Series], path: str | os.PathLike,
                         content_losses: Mapping[str, str]) -> None:
    """Writes a 2x2 PNG of the TensorBoard scalars `scalars` ({"<phase>/<metric>": {step: value}}): (a) content
    loss of both phases, SRGAN's steps placed after SRResNet's last one (dashed line); (b) SRGAN's adversarial
    losses; (c) D's mean probabilities on HR and SR; (d) validation PSNR of both phases. `content_losses`
    names each phase's content loss for the legend. A panel with nothing logged says so."""
    srresnet_end = max(scalars.get("srresnet/content_loss", {}) or scalars.get("srresnet/val_psnr", {}) or [0])
    fig, (a, b, c, d) = _figure(10, 7, 2, 2)

    drew = _plot(a, scalars.get("srresnet/content_loss", {}), f"SRResNet ({content_losses.get('srresnet', '?')})")
    drew |= _plot(a, scalars.get("srgan/content_loss", {}), f"SRGAN ({content_losses.get('srgan', '?')})",
                  offset=srresnet_end)
    if drew:
        a.set_yscale("log")
    _finish(a, "(a) content loss (training-batch mean per log period)", "step (SRResNet, then SRGAN)",
            "loss", drew, srresnet_end)

    drew = _plot(b, scalars.get("srgan/adv_loss", {}), "G adversarial loss  -log D(G(LR))")
    drew |= _plot(b, scalars.get("srgan/d_loss", {}), "D loss")
    _finish(b, "(b) adversarial losses (SRGAN phase)", "SRGAN step", "loss", drew)

    drew = _plot(c, scalars.get("srgan/d_real", {}), "D(HR)")
    drew |= _plot(c, scalars.get("srgan/d_fake", {}), "D(SR) = D(G(LR))")
    if drew:
        c.set_ylim(-0.02, 1.02)
    _finish(c, "(c) discriminator's mean probability of 'real'", "SRGAN step", "probability", drew)

    drew = _plot(d, scalars.get("srresnet/val_psnr", {}), "SRResNet")
    drew |= _plot(d, scalars.get("srgan/val_psnr", {}), "SRGAN", offset=srresnet_end)
    _finish(d, "(d) validation Y-PSNR (held-out images)", "step (SRResNet, then SRGAN)", "dB", drew, srresnet_end)
    _save(fig, path)


def save_interpolation_plot(sweep: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike) -> None:
    """Writes a 1x2 PNG of Y-PSNR and SSIM against alpha, one line per set; `sweep` is
    {set: [{"alpha", "psnr", "ssim"}, ...]} (alpha 0: SRResNet, 1: SRGAN)."""
    fig, (left, right) = _figure(10, 3.8, 1, 2)
    for ax, key, unit in ((left, "psnr", "Y-PSNR (dB)"), (right, "ssim", "SSIM")):
        for set_name, rows in sweep.items():
            points = sorted((r["alpha"], r[key]) for r in rows if r[key] is not None)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=set_name)
        ax.set_xlabel("alpha  (0 = SRResNet weights, 1 = SRGAN weights)")
        ax.set_ylabel(unit)
        ax.set_title(f"{unit.split(' ')[0]} of the blended generator", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
