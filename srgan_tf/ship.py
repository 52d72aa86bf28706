"""Ships a finished run's generators under models/ with their measured figures.

    python -m srgan_tf.ship --workdir=runs/cpu_demo --report=docs/results/results.json --out=models \
        --command="python -m srgan_tf.train --config=configs/cpu_demo.py --workdir=runs/cpu_demo"

For each phase (srresnet, srgan) copies `generator_<phase>.keras` to `<out>/<phase>_x<scale>.keras` and
writes `<out>/<phase>_x<scale>.json` beside it: the PSNR, SSIM and NIQE that the report (srgan_tf.report's
results.json) measured on each benchmark set, bicubic's and the HR images' NIQE for scale, the command,
config, seed, software versions and wall time. tests/test_pretrained.py re-measures the figures from the
committed files. Every write is atomic.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from absl import flags

from srgan_tf import cli
from srgan_tf.images import atomic_write

PHASES = ("srresnet", "srgan")
DESCRIPTIONS = {
    "srresnet": "SRResNet-MSE generator (PSNR-oriented)",
    "srgan": "SRGAN generator (perceptual: adversarial phase after SRResNet)",
}


class ShipError(ValueError):
    """A workdir or report that cannot be shipped; the message is one line."""


def _figures(report: dict, phase: str) -> dict:
    out = {}
    for set_name, b in report["benchmark"].items():
        methods = b["methods"]
        out[set_name] = {
            "model": {k: methods[phase].get(k) for k in ("psnr", "ssim", "niqe")},
            "bicubic": {k: methods["bicubic"].get(k) for k in ("psnr", "ssim", "niqe")},
            "hr_niqe": methods["bicubic"].get("hr_niqe"),
        }
    return out


def ship(workdir: str | Path, report_path: str | Path, out_dir: str | Path, command: str | None = None) -> list[Path]:
    """Writes the two generators and their JSON files into `out_dir`; returns the paths written.
    Raises ShipError for a missing generator or an unreadable report."""
    workdir, out_dir = Path(workdir), Path(out_dir)
    try:
        report = json.loads(Path(report_path).read_text())
        scale = int(report["scale"])
        repro = report["reproducibility"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ShipError(f"{report_path}: not a report written by srgan_tf.report ({type(e).__name__})") from None
    config = repro["config"]
    written = []
    for phase in PHASES:
        src = workdir / f"generator_{phase}.keras"
        if not src.is_file():
            raise ShipError(f"{workdir}: no generator_{phase}.keras (train both phases first)")
        model = out_dir / f"{phase}_x{scale}.keras"
        atomic_write(model, lambda tmp, s=src: shutil.copyfile(s, tmp))
        m = config["model"]
        meta = {
            "model": model.name,
            "what": f"{DESCRIPTIONS[phase]}, {m['num_blocks']} blocks, {m['filters']} filters"
                    f"{', bicubic skip' if m.get('bicubic_skip') else ''}, {scale}x; float32 LR in [0, 1] -> HR "
                    "in [-1, 1]",
            "weights": "exponential moving average of the training weights (train.ema_decay "
                       f"{config['train'].get('ema_decay')})" if config["train"].get("ema_decay") else "raw",
            "trained_by": command or repro.get("command"),
            "seed": repro.get("seed"),
            "protocol": "srgan_tf.evaluate: Y channel, scale-pixel border removed, the sets' MATLAB-made LR "
                        "files; NIQE as MATLAB computes it, after the same border removal",
            "figures": _figures(report, phase),
            "wall_time": repro.get("wall_time"),
            "software": repro.get("software"),
            "config": config,
        }
        text = json.dumps(meta, indent=2) + "\n"
        dest = model.with_suffix(".json")
        atomic_write(dest, lambda tmp, t=text: Path(tmp).write_text(t))
        written += [model, dest]
    return written


def main(argv: list[str] | None = None) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "Training workdir.", flag_values=fv)
    flags.DEFINE_string("report", None, "results.json written by python -m srgan_tf.report.", flag_values=fv)
    flags.DEFINE_string("out", "models", "Folder for the .keras files and their .json figures.", flag_values=fv)
    flags.DEFINE_string("command", None, "The training command line (default: the report's).", flag_values=fv)
    for name in ("workdir", "report"):
        flags.mark_flag_as_required(name, flag_values=fv)
    status = cli.parse_flags(fv, sys.argv if argv is None else argv,
                             "python -m srgan_tf.ship --workdir=W --report=results.json [--out=models]")
    if status is not None:
        return status
    try:
        for path in ship(fv.workdir, fv.report, fv.out, fv.command):
            print(f"wrote {path}")
    except (ShipError, OSError) as e:
        return cli.error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
