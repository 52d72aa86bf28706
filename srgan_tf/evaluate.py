"""Scores an upscaler on a benchmark set the way the super-resolution literature does.

    python -m srgan_tf.evaluate --model=bicubic --data=../shared/data/Set5 --out=reports/set5_bicubic
    python -m srgan_tf.evaluate --model=generator.keras --data=../shared/data/Set14 --out=reports/set14

A set folder holds `HR/` (ground truth) and optionally `LR_bicubic_x<scale>/` (the literature's
MATLAB-made inputs, same file names) and `names.csv` (columns file,name). PSNR, SSIM and NIQE follow
srgan_tf.metrics (Y channel, `scale` border pixels shaved; `--metrics` picks them, all three by default:
NIQE costs about 3 s for the whole of Set14 on a 2-core CPU). NIQE is also reported for the HR images, the
natural reference. Writes results.json, results.md and one side-by-side PNG per image
(bicubic | model | HR) to the report folder.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from srgan_tf import cli
from srgan_tf.images import ImageError, atomic_write, crop_to_scale, find_images, load_image, save_image

if TYPE_CHECKING:
    from srgan_tf.loader import Upscaler

# TensorFlow is imported where it is first needed (srgan_tf.imresize, .metrics, .loader), so that `main` can
# quiet it first; importing this module leaves the process environment alone.

# Ledig et al., CVPR 2017, Table 2 (4x, PSNR dB / SSIM). Their SSIM implementation gives higher bicubic
# figures than the one the rest of the literature uses, so compare SSIM with care.
PAPER_RESULTS: dict[str, dict[str, tuple[float, float]]] = {
    "Set5": {"bicubic": (28.43, 0.8211), "SRResNet": (32.05, 0.9019), "SRGAN": (29.40, 0.8472)},
    "Set14": {"bicubic": (25.99, 0.7486), "SRResNet": (28.49, 0.8184), "SRGAN": (26.02, 0.7397)},
    "BSD100": {"bicubic": (25.94, 0.6935), "SRResNet": (27.58, 0.7620), "SRGAN": (25.16, 0.6688)},
}
PAPER_SCALE = 4
_SET_ALIASES = {"b100": "BSD100", "bsd100": "BSD100", "set5": "Set5", "set14": "Set14"}
PROTOCOL = (
    "PSNR/SSIM on the Y channel of ITU-R BT.601 (MATLAB rgb2ycbcr on doubles; grayscale images on their own "
    "values), {scale}-pixel border removed, 0-255 range; SSIM of Wang et al. (11x11 Gaussian, sigma 1.5, "
    "K1=0.01, K2=0.03); NIQE of Mittal et al. (2013) as MATLAB's niqe computes it, on the rounded Y channel "
    "after the same shave, against the NIQE release's pristine model (lower is more natural); mean over images."
)
METRICS = ("psnr", "ssim", "niqe")


class EvaluationError(ValueError):
    """A set folder or report folder that cannot be used; the message is one line."""


def _names(set_dir: Path) -> dict[str, str]:
    path = set_dir / "names.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["file"]: row["name"] for row in csv.DictReader(f) if row.get("file") and row.get("name")}


def _paper_rows(set_dir: Path, scale: int) -> dict[str, dict[str, float]] | None:
    key = _SET_ALIASES.get(set_dir.name.lower())
    if scale != PAPER_SCALE or key not in PAPER_RESULTS:
        return None
    return {method: {"psnr": p, "ssim": s} for method, (p, s) in PAPER_RESULTS[key].items()}


def low_res_input(hr: np.ndarray, rel: Path, lr_dir: Path | None, scale: int, degradation: str) -> np.ndarray:
    """The uint8 LR input of HR image `rel`: its file in `lr_dir` (checked to be HR / scale), or, without
    `lr_dir`, HR downscaled with `degradation`. Raises EvaluationError for a missing or misfit LR file."""
    if lr_dir is None:
        from srgan_tf.imresize import resize

        return resize(hr, 1.0 / scale, degradation).numpy()
    path = lr_dir / rel
    if not path.is_file():
        raise EvaluationError(f"{path}: missing (every HR image needs its LR file in {lr_dir})")
    lr = load_image(path)
    want = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != want:
        raise EvaluationError(f"{path}: is {lr.shape[1]}x{lr.shape[0]}, expected {want[1]}x{want[0]} "
                              f"(HR / {scale})")
    return lr


def _is_grayscale_file(path: Path) -> bool:
    """True for a one-channel file (mode L, I, ...), which the literature scores on its own values.

    Decided by the file, not the pixels: Set14's "man" is gray content stored as RGB, and is scored on Y.
    """
    with Image.open(path) as im:
        bands = [b for b in im.getbands() if b != "A"]
    return len(bands) == 1 and im.mode != "P"


def _crop_box(hr: np.ndarray) -> tuple[int, int, int]:
    """(top, left, side) of the square with the most detail (gradient energy) in `hr`."""
    h, w = hr.shape[:2]
    side = max(1, min(h, w) // 4)
    g = hr.astype(np.float64).mean(axis=-1)
    energy = np.zeros((h + 1, w + 1))
    energy[1:, 1:] = np.pad(np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1],
                            ((0, 1), (0, 1))).cumsum(0).cumsum(1)
    step = max(1, side // 4)
    best = (-1.0, 0, 0)
    for top in range(0, h - side + 1, step):
        for left in range(0, w - side + 1, step):
            e = (energy[top + side, left + side] - energy[top, left + side]
                 - energy[top + side, left] + energy[top, left])
            best = max(best, (e, top, left))
    return best[1], best[2], side


def comparison_image(images: Sequence[np.ndarray], labels: Sequence[str], gap: int = 8) -> np.ndarray:
    """uint8 [16 + H + gap + Z, n W + (n - 1) gap, 3]: the n images side by side, each labelled, the full
    image (crop boxed in red) above the same detailed crop enlarged (nearest neighbour) to Z <= W pixels.
    The inputs are uint8 [H, W, 3] of one shape; the crop is chosen on the last one (the reference)."""
    h, w = images[-1].shape[:2]
    top, left, side = _crop_box(images[-1])
    zoomed = side * max(1, w // side)
    header = 16
    n = len(images)
    canvas = Image.new("RGB", (n * w + (n - 1) * gap, header + h + gap + zoomed), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        x0 = i * (w + gap)
        draw.text((x0 + 2, 2), label, fill="black")
        canvas.paste(Image.fromarray(img), (x0, header))
        draw.rectangle([x0 + left, header + top, x0 + left + side - 1, header + top + side - 1],
                       outline="red", width=max(1, min(h, w) // 200))
        crop = Image.fromarray(img[top:top + side, left:left + side])
        canvas.paste(crop.resize((zoomed, zoomed), Image.Resampling.NEAREST),
                     (x0 + (w - zoomed) // 2, header + h + gap))
    return np.asarray(canvas)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def evaluate(
    upscaler: Upscaler,
    set_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    degradation: str = "matlab",
    save_images: bool = True,
    metric_names: Sequence[str] = METRICS,
) -> dict:
    """Scores `upscaler` on the set in `set_dir` and returns the results dict (see results.json).

    HR images are cropped to a multiple of `upscaler.scale`. The LR inputs are the set's
    `LR_bicubic_x<scale>/` files when `degradation` is "matlab" (they are MATLAB-made) and the folder
    exists; otherwise they are made from HR with `resize(HR, 1/scale, degradation)`. When `out_dir` is given,
    writes results.json, results.md and (if `save_images`) images/<file stem>.png there. `metric_names`
    (from METRICS) picks the scores; unpicked ones are left out of the results. NIQE is None for an image
    under 96x96 pixels after shaving. Raises EvaluationError or ImageError (one-line messages) for unusable
    folders or files.
    """
    from srgan_tf import metrics
    from srgan_tf.imresize import METHODS, imresize

    unknown = sorted(set(metric_names) - set(METRICS))
    if unknown or not metric_names:
        raise EvaluationError(f"unknown metrics {', '.join(unknown) or '(none given)'}; valid: {', '.join(METRICS)}")
    if degradation not in METHODS:
        raise EvaluationError(f"unknown degradation {degradation!r}; valid: {', '.join(METHODS)}")
    set_dir = Path(set_dir)
    scale = upscaler.scale
    hr_dir = set_dir / "HR"
    if not hr_dir.is_dir():
        raise EvaluationError(f"{set_dir}: no HR/ folder (expected {set_dir}/HR/*.png)")
    hr_paths = find_images(hr_dir)
    if not hr_paths:
        raise EvaluationError(f"{hr_dir}: no images")
    lr_dir = set_dir / f"LR_bicubic_x{scale}"
    lr_dir = lr_dir if degradation == "matlab" and lr_dir.is_dir() else None
    names = _names(set_dir)
    out_dir = None if out_dir is None else Path(out_dir)

    per_image = []
    for path in hr_paths:
        rel = path.relative_to(hr_dir)
        hr = crop_to_scale(load_image(path), scale)
        if min(hr.shape[:2]) < 11 + 2 * scale:  # SSIM needs an 11x11 window after shaving
            raise EvaluationError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small to score")
        lr = low_res_input(hr, rel, lr_dir, scale, degradation)
        sr = upscaler(lr)
        if sr.shape != hr.shape:
            raise EvaluationError(f"{upscaler.name} turned {rel} ({lr.shape[1]}x{lr.shape[0]}) into "
                                  f"{sr.shape[1]}x{sr.shape[0]}, expected {hr.shape[1]}x{hr.shape[0]}")
        is_gray = _is_grayscale_file(path)
        psnr, ssim = metrics.psnr_ssim(sr, hr, shave=scale, as_gray=is_gray)
        row = {"name": names.get(rel.as_posix(), rel.stem), "file": rel.as_posix(), "psnr": _finite(psnr),
               "ssim": ssim}
        if "niqe" in metric_names:
            row |= {"niqe": _niqe(sr, scale, is_gray), "hr_niqe": _niqe(hr, scale, is_gray)}
        per_image.append({k: v for k, v in row.items() if k not in METRICS or k in metric_names}
                         | {"grayscale": is_gray})
        if out_dir is not None and save_images:
            panel = comparison_image((imresize(lr, scale).numpy(), sr, hr), ("bicubic", upscaler.name, "HR"))
            save_image(out_dir / "images" / rel.with_suffix(".png"), panel)

    psnrs = [r["psnr"] for r in per_image]
    mean = {"psnr": None if None in psnrs else float(np.mean(psnrs)),
            "ssim": float(np.mean([r["ssim"] for r in per_image]))}
    if "niqe" in metric_names:
        for key in ("niqe", "hr_niqe"):
            scored = [r[key] for r in per_image if r[key] is not None]
            mean[key] = float(np.mean(scored)) if scored else None
    result = {
        "set": set_dir.resolve().name,
        "model": upscaler.name,
        "scale": scale,
        "degradation": degradation,
        "lr_source": f"{lr_dir.name}/ files" if lr_dir else f"resize(HR, 1/{scale}, {degradation!r})",
        "protocol": PROTOCOL.format(scale=scale),
        "metrics": [m for m in METRICS if m in metric_names],
        "mean": {k: v for k, v in mean.items() if k.removeprefix("hr_") in metric_names},
        "per_image": per_image,
        "paper": _paper_rows(set_dir.resolve(), scale),
    }
    if out_dir is not None:
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(out_dir / "results.json", lambda tmp: Path(tmp).write_text(text))
        markdown = format_markdown(result)
        atomic_write(out_dir / "results.md", lambda tmp: Path(tmp).write_text(markdown))
    return result


def _niqe(image: np.ndarray, shave: int, as_gray: bool) -> float | None:
    from srgan_tf import metrics

    try:
        return metrics.niqe(image, shave=shave, as_gray=as_gray)
    except ValueError:  # under one 96x96 block, or flat
        return None


def _fmt(x: float | None, digits: int, none: str = "inf") -> str:
    return none if x is None else f"{x:.{digits}f}"


def format_markdown(result: dict) -> str:
    """The results dict as a Markdown report: per-image table, mean, and the paper's figures if known."""
    niqe = "niqe" in result.get("metrics", ())
    lines = [
        f"# {result['model']} on {result['set']}, {result['scale']}x",
        "",
        f"LR inputs: {result['lr_source']}. {result['protocol']}",
        "",
        "| image | file | PSNR (dB) | SSIM |" + (" NIQE | NIQE of HR |" if niqe else ""),
        "|---|---|---:|---:|" + ("---:|---:|" if niqe else ""),
    ]

    def niqe_cells(r: dict, bold: str = "") -> str:
        if not niqe:
            return ""
        return "".join(f" {bold}{_fmt(r[k], 3, 'n/a')}{bold} |" for k in ("niqe", "hr_niqe"))

    for r in result["per_image"]:
        lines.append(f"| {r['name']} | {r['file']} | {_fmt(r['psnr'], 2)} | {r['ssim']:.4f} |" + niqe_cells(r))
    mean = result["mean"]
    lines.append(f"| **mean** | | **{_fmt(mean['psnr'], 2)}** | **{mean['ssim']:.4f}** |"
                 + niqe_cells(mean, "**"))
    if result.get("paper"):
        lines += [
            "",
            "Compared with Ledig et al. (CVPR 2017), Table 2 (their SSIM implementation differs; "
            "compare SSIM with care):",
            "",
            "| method | PSNR (dB) | SSIM |",
            "|---|---:|---:|",
            f"| this run: {result['model']} | {_fmt(mean['psnr'], 2)} | {mean['ssim']:.4f} |",
        ]
        for method, r in result["paper"].items():
            lines.append(f"| paper: {method} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    return "\n".join(lines) + "\n"


def _flag_values() -> flags.FlagValues:
    from srgan_tf.imresize import METHODS

    # A private FlagValues, so importing this module never clashes with another tool's --model or --data.
    fv = flags.FlagValues()
    flags.DEFINE_string("model", None, "'bicubic' or the path of a .keras generator.", flag_values=fv)
    flags.DEFINE_string("data", None, "Set folder with HR/ (and optionally LR_bicubic_x<scale>/).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Report folder (created).", flag_values=fv)
    flags.DEFINE_integer("scale", 4, "Upscaling factor.", lower_bound=1, flag_values=fv)
    flags.DEFINE_list("metrics", list(METRICS), f"Scores to compute, from {','.join(METRICS)}.", flag_values=fv)
    flags.DEFINE_enum("degradation", "matlab", list(METHODS),
                      "How LR is made from HR. 'matlab' uses the set's LR_bicubic_x<scale>/ files when "
                      "present (they are MATLAB-made); the others always resize HR.", flag_values=fv)
    for name in ("model", "data", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 bad input, 2 bad flags)."""
    cli.lower_native_log_level()
    from srgan_tf.loader import ModelLoadError, load_upscaler

    fv = _flag_values()
    status = cli.parse_flags(fv, sys.argv if argv is None else argv,
                             "python -m srgan_tf.evaluate --model=MODEL --data=SET_DIR --out=REPORT_DIR")
    if status is not None:
        return status
    try:
        upscaler = load_upscaler(fv.model, fv.scale)
        result = evaluate(upscaler, fv.data, fv.out, degradation=fv.degradation, metric_names=fv.metrics)
    except (EvaluationError, ModelLoadError, ImageError, OSError) as e:
        return cli.error(e)
    print(format_markdown(result), end="")
    print(f"\nwrote {Path(fv.out) / 'results.json'}, results.md and images/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
