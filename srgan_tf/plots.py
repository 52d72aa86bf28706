"""The results report's figures (see srgan_tf.report): training curves and the network-interpolation sweep
(the perception-distortion plane).

Both use matplotlib's object API on the Agg canvas (no pyplot, no display, no global state) and are written
as PNG atomically. matplotlib is the `report` extra: `pip install 'srgan-tf[report]'`.
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


def save_interpolation_plot(sweep: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike,
                            references: Mapping[str, Mapping[str, float | None]] | None = None) -> None:
    """Writes a 1x2 PNG: (a) the perception-distortion plane (Blau and Michaeli, 2018; PIRM 2018), Y-PSNR
    against NIQE of each blend, one line per set, alpha written beside its point, with bicubic (a cross) and
    the HR images' NIQE (a dashed vertical line) marked; (b) SSIM against alpha. `sweep` is
    {set: [{"alpha", "psnr", "ssim", "niqe"}, ...]} (alpha 0: SRResNet, 1: SRGAN), `references`
    {set: {"bicubic_psnr", "bicubic_niqe", "hr_niqe"}}."""
    fig, (plane, right) = _figure(11, 4.2, 1, 2)
    references = references or {}
    for i, (set_name, rows) in enumerate(sweep.items()):
        colour = f"C{i}"
        points = sorted((r["niqe"], r["psnr"], r["alpha"]) for r in rows
                        if r.get("niqe") is not None and r["psnr"] is not None)
        plane.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour, label=set_name)
        for x, y, alpha in points:
            plane.annotate(f"{alpha:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ref = references.get(set_name, {})
        if ref.get("bicubic_niqe") is not None and ref.get("bicubic_psnr") is not None:
            plane.plot([ref["bicubic_niqe"]], [ref["bicubic_psnr"]], marker="x", markersize=9, color=colour,
                       linestyle="none", label=f"{set_name} bicubic")
        if ref.get("hr_niqe") is not None:
            plane.axvline(ref["hr_niqe"], color=colour, linestyle="--", linewidth=1, label=f"{set_name} HR NIQE")
        alphas = sorted((r["alpha"], r["ssim"]) for r in rows if r["ssim"] is not None)
        right.plot([p[0] for p in alphas], [p[1] for p in alphas], marker="o", color=colour, label=set_name)
    plane.set_xlabel("NIQE (lower: more natural)")
    plane.set_ylabel("Y-PSNR (dB, higher: less distortion)")
    plane.set_title("(a) perception-distortion plane; labels: alpha (0 SRResNet, 1 SRGAN)", fontsize=10)
    right.set_xlabel("alpha  (0 = SRResNet weights, 1 = SRGAN weights)")
    right.set_ylabel("SSIM")
    right.set_title("(b) SSIM of the blended generator", fontsize=10)
    for ax in (plane, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)
