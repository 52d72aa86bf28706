"""The results report of a finished training run, as JSON, pictures and (optionally) Markdown.

    python -m srgan_tf.report --workdir=runs/cpu_demo --out=reports/cpu_demo --markdown=RESULTS.md \
        --command="python -m srgan_tf.train --config=configs/cpu_demo.py --workdir=runs/cpu_demo"

Reads the workdir that `python -m srgan_tf.train` wrote (config.json, generator_srresnet.keras,
generator_srgan.keras, tensorboard/, eval/ and summary.json when present) and writes to --out:
  results.json              every figure of the report
  images/<set>_<name>.jpg   LR (nearest) | bicubic | SRResNet | SRGAN | HR, with a zoomed crop, per image
  curves.png                training curves (content loss, adversarial losses, D's outputs, validation PSNR)
  interpolation.png         the network-interpolation sweep between SRResNet and SRGAN on the perception-distortion
                            plane (PSNR against NIQE, bicubic and HR marked), and its SSIM
Benchmark figures come from workdir/eval/<method>/<set>/results.json when training wrote them for the same
scale and degradation, otherwise from srgan_tf.evaluate run here. The workdir is only read.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont

from srgan_tf import cli
from srgan_tf.evaluate import (
    PAPER_RESULTS,
    PAPER_SCALE,
    EvaluationError,
    comparison_image,
    evaluate,
    low_res_input,
)
from srgan_tf.images import ImageError, atomic_write, crop_to_scale, find_images, load_image, nearest_upscale
from srgan_tf.report_markdown import GENERATORS, METHODS, format_markdown, num

if TYPE_CHECKING:  # the loader imports TensorFlow: not before main() set its log level
    from srgan_tf.loader import Upscaler

DEFAULT_SETS = "../shared/data/Set5,../shared/data/Set14"
DEFAULT_ALPHAS = "0,0.2,0.4,0.6,0.8,1"
MAX_GRID_WIDTH = 1400
JPEG_QUALITY = 85
GAP = 8  # pixels between the panels of a comparison grid


class ReportError(ValueError):
    """A workdir, set or option the report cannot use; the message is one line."""


def _read_config(workdir: Path) -> dict:
    if not workdir.is_dir():
        raise ReportError(f"workdir {workdir}: no such folder")
    path = workdir / "config.json"
    try:
        config = json.loads(path.read_text())
        if not isinstance(config["model"]["scale"], int) or not isinstance(config["data"]["degradation"], str):
            raise TypeError("model.scale or data.degradation has the wrong type")
    except FileNotFoundError:
        raise ReportError(f"{workdir}: not a training workdir (no config.json)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: unreadable training config ({type(e).__name__}: {e})") from None
    return config


def _load_generator(path: Path):
    """srgan_tf.loader.load_generator, its one-line error in the report's words."""
    from srgan_tf.loader import ModelLoadError, load_generator

    try:
        return load_generator(path)
    except ModelLoadError as e:
        raise ReportError(f"{path}: cannot load ({str(e).removeprefix(f'{path}: ')})") from None


def _paper(set_name: str, scale: int) -> dict[str, dict[str, float]] | None:
    key = {k.lower(): k for k in PAPER_RESULTS} | {"b100": "BSD100"}
    rows = PAPER_RESULTS.get(key.get(set_name.lower(), ""))
    if rows is None or scale != PAPER_SCALE:
        return None
    return {method: {"psnr": rows[label][0], "ssim": rows[label][1]} for method, label in METHODS.items()}


def _scores(workdir: Path, method: str, set_dir: Path, upscaler: Upscaler, degradation: str) -> tuple[dict, str]:
    """The set's results dict (see srgan_tf.evaluate) and where it came from."""
    cached = workdir / "eval" / method / set_dir.resolve().name / "results.json"
    if cached.is_file():
        try:
            result = json.loads(cached.read_text())
            files = {p.relative_to(set_dir / "HR").as_posix() for p in find_images(set_dir / "HR")}
            if (result["scale"] == upscaler.scale and result["degradation"] == degradation
                    and "niqe" in result["mean"] and sorted(r["file"] for r in result["per_image"]) == sorted(files)):
                return result, str(cached)
        except (ValueError, KeyError, TypeError):
            pass  # unusable: evaluated afresh below
    print(f"evaluating {method} on {set_dir}", flush=True)
    return evaluate(upscaler, set_dir, degradation=degradation, save_images=False), "evaluated by the report"


def _grid(panels: Sequence[np.ndarray], labels: Sequence[str]) -> Image.Image:
    """comparison_image of `panels`, at most MAX_GRID_WIDTH wide, under a header of labels readable at that
    size (comparison_image's own labels would shrink with the image)."""
    grid = Image.fromarray(comparison_image(panels, [""] * len(panels), gap=GAP))
    factor = min(1.0, MAX_GRID_WIDTH / grid.width)
    if factor < 1:
        grid = grid.resize((MAX_GRID_WIDTH, round(grid.height * factor)), Image.Resampling.LANCZOS)
    font = ImageFont.load_default(size=16)
    canvas = Image.new("RGB", (grid.width, grid.height + 22), "white")
    canvas.paste(grid, (0, 22))
    draw = ImageDraw.Draw(canvas)
    panel_width = panels[0].shape[1]
    for i, label in enumerate(labels):
        draw.text((round(i * (panel_width + GAP) * factor) + 2, 2), label, fill="black", font=font)
    return canvas


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def _grids(set_dir: Path, set_name: str, upscalers: dict[str, Upscaler], results: dict[str, dict],
           out_dir: Path, degradation: str) -> list[dict]:
    """Writes one JPEG grid per HR image of the set; returns per image its name, file, grid and scores."""
    scale = upscalers["bicubic"].scale
    hr_dir, lr_dir = set_dir / "HR", set_dir / f"LR_bicubic_x{scale}"
    lr_dir = lr_dir if degradation == "matlab" and lr_dir.is_dir() else None
    scores = {m: {r["file"]: r for r in results[m]["per_image"]} for m in METHODS}
    rows, used = [], set()
    for path in find_images(hr_dir):
        rel = path.relative_to(hr_dir).as_posix()
        hr = crop_to_scale(load_image(path), scale)
        lr = low_res_input(hr, Path(rel), lr_dir, scale, degradation)  # the same input evaluate scores
        panels = [nearest_upscale(lr, scale)]
        panels += [upscalers[m](lr) for m in METHODS] + [hr]
        labels = ["LR (nearest)"] + [f"{METHODS[m]} {num(scores[m][rel]['psnr'], 2)} dB" for m in METHODS] + ["HR"]
        name = scores["bicubic"][rel]["name"]
        stem = _slug(f"{set_name}_{name}")
        stem = stem if stem not in used else _slug(f"{set_name}_{Path(rel).stem}")
        used.add(stem)
        dest = out_dir / "images" / f"{stem}.jpg"
        grid = _grid(panels, labels)
        atomic_write(dest, lambda tmp, g=grid: g.save(tmp, format="JPEG", quality=JPEG_QUALITY, optimize=True))
        rows.append({"name": name, "file": rel, "grid": dest.relative_to(out_dir).as_posix(),
                     **{m: {k: scores[m][rel].get(k) for k in ("psnr", "ssim", "niqe")} for m in METHODS},
                     "hr": {"niqe": scores["bicubic"][rel].get("hr_niqe")}})
    return rows


def _sweep(models: dict, alphas: Sequence[float], set_dirs: Sequence[Path], scale: int,
           degradation: str) -> dict[str, list[dict]]:
    """{set: [{"alpha", "psnr", "ssim", "niqe"}, ...]}: each blend (1 - alpha) SRResNet + alpha SRGAN, evaluated."""
    from srgan_tf.interpolate import interpolate
    from srgan_tf.loader import upscaler_from_keras

    out: dict[str, list[dict]] = {d.resolve().name: [] for d in set_dirs}
    for alpha in alphas:
        print(f"interpolation: alpha {alpha:g}", flush=True)
        blend = upscaler_from_keras(interpolate(models["srresnet"], models["srgan"], alpha), scale, f"alpha{alpha:g}")
        for set_dir in set_dirs:
            mean = evaluate(blend, set_dir, degradation=degradation, save_images=False)["mean"]
            out[set_dir.resolve().name].append({"alpha": alpha, "psnr": mean["psnr"], "ssim": mean["ssim"],
                                                "niqe": mean.get("niqe")})
    return out


def read_scalars(tb_dir: str | os.PathLike) -> dict[str, dict[int, float]]:
    """Every scalar in the TensorBoard event files of `tb_dir`: {tag: {step: value}}; for a step logged twice
    (a resumed run), the newer file's value. Empty if there is no such folder."""
    import tensorflow as tf

    out: dict[str, dict[int, float]] = {}
    for f in sorted(Path(tb_dir).glob("events.out.tfevents.*")):  # names start with the creation time
        try:
            for event in tf.compat.v1.train.summary_iterator(str(f)):
                for v in event.summary.value:
                    if v.HasField("simple_value"):
                        value = float(v.simple_value)
                    elif v.HasField("tensor"):
                        array = tf.make_ndarray(v.tensor)
                        if array.ndim != 0 or array.dtype.kind not in "fiu":
                            continue  # images, text
                        value = float(array)
                    else:
                        continue
                    out.setdefault(v.tag, {})[int(event.step)] = value
        except tf.errors.DataLossError:
            pass  # a truncated last record (a killed writer); what came before is sound
    return out


def _software() -> dict:
    import keras
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):  # the model name, where Linux tells it
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count()}


def _wall_time(workdir: Path, seconds: float | None) -> dict:
    if seconds is not None:
        return {"seconds": seconds, "source": "--wall_time"}
    try:
        phases = json.loads((workdir / "summary.json").read_text())["phases"]
        per_phase = {p["phase"]: p["seconds"] for p in phases if "seconds" in p}
    except (OSError, ValueError, KeyError, TypeError):
        per_phase = {}
    if per_phase:
        return {"seconds": round(sum(per_phase.values()), 1), "per_phase": per_phase,
                "source": "summary.json (training steps of each phase's last session; evaluation not included)"}
    return {"seconds": None, "source": "not recorded"}


def make_report(workdir: str | os.PathLike, out_dir: str | os.PathLike, sets: Sequence[str | os.PathLike],
                alphas: Sequence[float], markdown: str | os.PathLike | None = None, command: str | None = None,
                wall_time: float | None = None) -> dict:
    """Builds the report of the training run in `workdir` on the benchmark `sets` (folders with HR/), with the
    interpolation sweep at `alphas` (each in [0, 1]); writes out_dir/results.json (returned as a dict), the
    pictures, and the Markdown report at `markdown` if given (links relative to its folder). Every write is
    atomic. Raises ReportError, EvaluationError, ModelLoadError, ImageError or InterpolationError (one-line
    messages) for unusable input, checked (apart from unreadable images) before any lengthy work."""
    from srgan_tf import plots
    from srgan_tf.loader import load_upscaler, upscaler_from_keras

    workdir, out_dir = Path(workdir), Path(out_dir)
    config = _read_config(workdir)
    for method in GENERATORS:
        if not (workdir / f"generator_{method}.keras").is_file():
            raise ReportError(f"{workdir}: no generator_{method}.keras (the report needs both training phases "
                              "finished)")
    set_dirs = [Path(s) for s in sets]
    if not set_dirs:
        raise ReportError("no benchmark set given (--sets)")
    for set_dir in set_dirs:
        if not (set_dir / "HR").is_dir():
            raise ReportError(f"set {set_dir}: no such benchmark folder (expected {set_dir}/HR/); give the "
                              "benchmark folders with --sets=DIR[,DIR...]")
    if len({d.resolve().name for d in set_dirs}) < len(set_dirs):
        raise ReportError(f"two sets share a folder name: {', '.join(map(str, set_dirs))}")
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise ReportError(f"alphas must be one or more numbers in [0, 1], got {list(alphas)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError("the plots need matplotlib: pip install 'srgan-tf[report]'") from None

    scale, degradation = int(config["model"]["scale"]), config["data"]["degradation"]
    models = {m: _load_generator(workdir / f"generator_{m}.keras") for m in GENERATORS}
    upscalers = {"bicubic": load_upscaler("bicubic", scale)}
    upscalers |= {m: upscaler_from_keras(models[m], scale, name=m) for m in GENERATORS}

    benchmark = {}
    for set_dir in set_dirs:
        set_name = set_dir.resolve().name
        results, sources = {}, {}
        for m in METHODS:
            results[m], sources[m] = _scores(workdir, m, set_dir, upscalers[m], degradation)
        means = {m: results[m]["mean"] | {"source": sources[m]} for m in METHODS}
        gain = {m: (None if None in (means[m]["psnr"], means["bicubic"]["psnr"])
                    else means[m]["psnr"] - means["bicubic"]["psnr"]) for m in GENERATORS}
        print(f"{set_name}: comparison images", flush=True)
        benchmark[set_name] = {"path": str(set_dir), "methods": means, "gain_over_bicubic_db": gain,
                               "paper": _paper(set_name, scale),
                               "images": _grids(set_dir, set_name, upscalers, results, out_dir, degradation)}

    sweep = _sweep(models, alphas, set_dirs, scale, degradation)
    references = {name: {"bicubic_psnr": b["methods"]["bicubic"]["psnr"],
                         "bicubic_niqe": b["methods"]["bicubic"].get("niqe"),
                         "hr_niqe": b["methods"]["bicubic"].get("hr_niqe")} for name, b in benchmark.items()}
    plots.save_interpolation_plot(sweep, out_dir / "interpolation.png", references)
    scalars = read_scalars(workdir / "tensorboard")
    plots.save_training_curves(scalars, out_dir / "curves.png",
                               {m: config.get(m, {}).get("content_loss", "?") for m in GENERATORS})

    report = {
        "workdir": str(workdir),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scale": scale,
        "degradation": degradation,
        "benchmark": benchmark,
        "interpolation": {"plot": "interpolation.png", "alphas": list(alphas), "sets": sweep},
        "training": {"plot": "curves.png",
                     "scalars": {tag: sorted(series.items()) for tag, series in sorted(scalars.items())}},
        "images_bytes": sum((out_dir / r["grid"]).stat().st_size for b in benchmark.values() for r in b["images"]),
        "reproducibility": {"command": command, "seed": config.get("seed"), "config": config,
                            "wall_time": _wall_time(workdir, wall_time), "software": _software()},
    }
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out_dir / "results.json", lambda tmp: Path(tmp).write_text(text))
    if markdown is not None:
        markdown = Path(markdown)
        page = format_markdown(report, out_dir, markdown.parent)
        atomic_write(markdown, lambda tmp: Path(tmp).write_text(page))
    return report


def _flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()  # private, so importing this module defines no global flags
    flags.DEFINE_string("workdir", None, "Training workdir (python -m srgan_tf.train's --workdir).", flag_values=fv)
    flags.DEFINE_string("out", None, "Report folder (created).", flag_values=fv)
    flags.DEFINE_string("markdown", None, "Also write the Markdown report here (e.g. RESULTS.md).", flag_values=fv)
    flags.DEFINE_list("sets", DEFAULT_SETS, "Benchmark set folders (each with HR/); the default is where a "
                      "checkout keeps Set5 and Set14.", flag_values=fv)
    flags.DEFINE_list("alphas", DEFAULT_ALPHAS, "Network-interpolation weights of SRGAN, in [0, 1].", flag_values=fv)
    flags.DEFINE_string("command", None, "The training command line, quoted in the report.", flag_values=fv)
    flags.DEFINE_float("wall_time", None, "Training wall time in seconds (default: from summary.json).",
                       lower_bound=0, flag_values=fv)
    for name in ("workdir", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)
    return fv


def _alphas(values: Sequence[str]) -> list[float] | None:
    """The --alphas values as numbers, or None unless there is at least one and each is a number in [0, 1]."""
    try:
        alphas = [float(v) for v in values]
    except ValueError:
        return None
    return alphas if alphas and all(0.0 <= a <= 1.0 for a in alphas) else None


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 unusable input, 2 bad flags)."""
    cli.lower_native_log_level()
    from srgan_tf.interpolate import InterpolationError
    from srgan_tf.loader import ModelLoadError

    fv = _flag_values()
    status = cli.parse_flags(fv, sys.argv if argv is None else argv,
                             "python -m srgan_tf.report --workdir=W --out=DIR [--markdown=RESULTS.md]")
    if status is not None:
        return status
    alphas = _alphas(fv.alphas)
    if alphas is None:
        print(f"error: --alphas={','.join(fv.alphas)}: give one or more numbers in [0, 1], separated by commas",
              file=sys.stderr)
        return cli.EXIT_BAD_FLAGS
    try:
        make_report(fv.workdir, fv.out, fv.sets, alphas, fv.markdown, fv.command, fv.wall_time)
    except (ReportError, EvaluationError, ModelLoadError, ImageError, InterpolationError, OSError) as e:
        return cli.error(e)
    print(f"wrote {Path(fv.out) / 'results.json'}, images/, curves.png, interpolation.png"
          + (f" and {fv.markdown}" if fv.markdown else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
