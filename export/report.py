"""Size, fidelity and latency of every exported artifact, as report.json and a printed table.

Every artifact is loaded with srgan_tf.loader.load_upscaler, the same path users take, and compared with
the Keras generator it was exported from:

- `max_abs_diff_float`: largest |artifact - Keras| of the [0, 1] outputs on the fidelity set;
- `max_abs_diff_uint8`, `psnr_vs_keras_db`: the same for the uint8 images, with PSNR over all pixels of
  the set (None when the images are identical);
- `y_psnr_vs_hr_db`: mean Y-channel PSNR against the ground truth (srgan_tf.metrics, 4-pixel border cut),
  so a quantized model's drop is its row minus the Keras row;
- `latency_ms`: median wall time of the uint8 path on a 128x128 input on this machine;
- `gpu` (TFLite only): what the mobile GPU delegate would reject (srgan_tf.export.gpu); the table's
  "GPU delegate" column says "all ops" or which it rejects, and the notes list each one with its reason.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from srgan_tf import metrics
from srgan_tf.images import find_images, load_image
from srgan_tf.loader import Upscaler

LATENCY_SIDE = 128


def artifact_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file below a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_pairs(folder: str | os.PathLike) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR uint8, HR uint8) for each image of a benchmark set with LR_bicubic_x4/ and HR/ folders."""
    folder = Path(folder)
    pairs = []
    for lr_path in find_images(folder / "LR_bicubic_x4"):
        hr_path = folder / "HR" / lr_path.relative_to(folder / "LR_bicubic_x4")
        if hr_path.is_file():
            pairs.append((lr_path.name, load_image(lr_path), load_image(hr_path)))
    return pairs


def reference_outputs(reference: Upscaler, pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    """(float [1, H, W, 3], uint8 [H, W, 3]) outputs of the reference model for each pair's LR image."""
    return [(reference.predict_float(lr[None] / np.float32(255.0)), reference(lr)) for _, lr, _ in pairs]


def fidelity(upscaler: Upscaler, pairs, reference: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Agreement of `upscaler` with the reference outputs and with the HR images (see module docstring)."""
    diff_float = diff_uint8 = 0.0
    squared, count, y_psnrs = 0.0, 0, []
    for (_, lr, hr), (ref_float, ref_uint8) in zip(pairs, reference, strict=True):
        out_float = upscaler.predict_float(lr[None] / np.float32(255.0))
        out = upscaler(lr)
        diff_float = max(diff_float, float(np.max(np.abs(out_float - ref_float))))
        delta = out.astype(np.float64) - ref_uint8
        diff_uint8 = max(diff_uint8, float(np.max(np.abs(delta))))
        squared += float(np.sum(delta * delta))
        count += delta.size
        y_psnrs.append(float(metrics.psnr(out, hr, shave=4)[0]))
    mse = squared / max(count, 1)
    return {
        "max_abs_diff_float": diff_float,
        "max_abs_diff_uint8": diff_uint8,
        "psnr_vs_keras_db": None if mse == 0 else 10.0 * np.log10(255.0**2 / mse),
        "y_psnr_vs_hr_db": float(np.mean(y_psnrs)),
    }


def latency_ms(upscaler: Upscaler, runs: int = 5, side: int = LATENCY_SIDE) -> float:
    """Median milliseconds of `upscaler` on a random uint8 side x side image, after one warm-up call."""
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    upscaler(image)
    times = []
    for _ in range(max(runs, 1)):
        start = time.perf_counter()
        upscaler(image)
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "tensorflow": tf.__version__}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_FIDELITY_COLUMNS = ("max|d| float", "max|d| u8", "PSNR vs Keras", "Y-PSNR vs HR")


def _gpu_cell(gpu: dict | None) -> str:
    if gpu is None:
        return "-"
    if gpu["compatible"]:
        return "all ops"
    ops = sorted({r["op"] for r in gpu["rejected"]})
    return f"rejects {len(gpu['rejected'])}: {', '.join(ops)}" if ops else "analyzer warnings"


def gpu_notes(artifacts: list[dict]) -> list[str]:
    """One line per op (or analyzer warning) the mobile GPU delegate would reject, naming the artifact."""
    notes = []
    for a in artifacts:
        gpu = a.get("gpu") or {}
        notes += [f"{a['name']}: the GPU delegate would reject op #{r['index']} {r['op']} ({r['reason']})"
                  for r in gpu.get("rejected", [])]
        notes += [f"{a['name']}: analyzer: {w}" for w in gpu.get("analyzer_warnings", [])]
    return notes


def format_table(artifacts: list[dict]) -> str:
    """A plain-text table of the report's artifacts; the fidelity columns only if some artifact has figures."""
    measured = any(a.get("fidelity") for a in artifacts)
    header = ("artifact", "size MB", *(_FIDELITY_COLUMNS if measured else ()), f"ms @{LATENCY_SIDE}^2",
              "XNNPACK ops", "GPU delegate")
    rows = [header]
    for a in artifacts:
        fid = a.get("fidelity") or {}
        xnn = a.get("xnnpack")
        psnr = fid.get("psnr_vs_keras_db")
        fidelity = (
            _fmt(fid.get("max_abs_diff_float"), ".2e"),
            _fmt(fid.get("max_abs_diff_uint8"), ".0f"),
            ("identical" if fid and psnr is None else _fmt(psnr, ".2f")),
            _fmt(fid.get("y_psnr_vs_hr_db"), ".2f"),
        )
        rows.append((
            a["name"],
            f"{a['size_bytes'] / 1e6:.2f}",
            *(fidelity if measured else ()),
            _fmt(a.get("latency_ms"), ".1f"),
            f"{xnn['delegated_ops']}/{xnn['total_ops']}" if xnn else "-",
            _gpu_cell(a.get("gpu")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
