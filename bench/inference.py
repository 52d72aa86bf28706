"""Generator inference, 128x128 -> 512x512 at batch 1, in every format against the machine's FLOP floor.

    python bench/inference.py [--generator=runs/cpu_demo/generator_srresnet.keras] [--runs=5]

Exports the generator (SavedModel and the four TFLite variants, with python -m srgan_tf.export's own code), times
each artifact through the project's one model loader in this process, and prints a Markdown table. The floor
is the generator's FLOP count divided by the float32 matrix-multiply rate this machine reaches in the same
run: no implementation of these convolutions in float32 can beat it. PSNR is Y-PSNR against HR on Set5 (from
../shared/data) when the set is there; a trained generator makes that column meaningful. With torch
installed (`pip install torch`; not a dependency), the same generator in PyTorch is the peer row; with
openvino installed (`pip install openvino`; not a dependency), OpenVINO rows on the exported float models
(bench/openvino_peer.py), the bf16 one against the bfloat16 matmul floor; with the onnx extra installed
(`pip install 'srgan-tf[onnx]'`), an onnxruntime row on the ONNX export (srgan_tf.export.onnx).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import generator_path, machine, median_seconds  # noqa: E402  (bench/ is the script's folder)
from openvino_peer import available, openvino_upscalers  # noqa: E402

from srgan_tf.export import report  # noqa: E402
from srgan_tf.export.pipeline import run_export  # noqa: E402
from srgan_tf.loader import load_upscaler  # noqa: E402
from srgan_tf.models import PixelShuffle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _convolutions(model: keras.Model, side: int) -> list[tuple[keras.layers.Conv2D, int, int]]:
    """(layer, input side, FLOPs) of every Conv2D of `model` on one side x side input: multiply-adds x 2
    (bias and activations, under 1% here, are left out)."""
    size, convs = side, []
    for layer in model.layers:
        if isinstance(layer, PixelShuffle):
            size *= layer.factor
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            convs.append((layer, size, 2 * kh * kw * cin * cout * size * size))
    return convs


def generator_flops(model: keras.Model, side: int) -> int:
    return sum(flops for _, _, flops in _convolutions(model, side))


def convolution_rates(model: keras.Model, side: int, runs: int = 5) -> list[dict]:
    """Each kind of convolution of `model` (kernel, channels, input size) timed alone on its input, median
    of `runs`: where the time goes, and how near each kind gets to the matmul rate."""
    kinds: dict[tuple, dict] = {}
    for layer, size, flops in _convolutions(model, side):
        kh, _, cin, cout = layer.kernel.shape
        key = (kh, cin, cout, size)
        kinds.setdefault(key, {"layers": [], "flops": flops, "layer": layer})["layers"].append(layer.name)
    rows = []
    for (k, cin, cout, size), kind in kinds.items():
        x = tf.random.uniform([1, size, size, cin])
        conv = tf.function(kind["layer"].__call__)
        ms = 1000 * median_seconds(lambda conv=conv, x=x: conv(x).numpy(), runs)
        rows.append({"what": f"{k}x{k}, {cin}->{cout} at {size}x{size}", "count": len(kind["layers"]),
                     "first": kind["layers"][0], "gflop": kind["flops"] / 1e9, "ms": ms,
                     "rate": kind["flops"] / ms / 1e6})
    return rows


def matmul_flops_per_second(n: int = 2048, runs: int = 10, dtype: tf.DType = tf.float32) -> float:
    """The median `dtype` matrix-multiply rate of `runs` n x n products (medians, like the latencies: this
    VM's rate swings by a third from second to second)."""
    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    return 2 * n**3 / median_seconds(lambda: matmul().numpy(), runs)


def peer_rows(generator: str, model: keras.Model, fidelity: str | None, runs: int) -> list[dict]:
    """The generator in PyTorch (NCHW and channels_last), timed and scored like the artifacts; no rows
    without torch."""
    try:
        from torch_peer import torch_upscaler
    except ImportError:
        return []
    pairs = report.load_pairs(fidelity) if fidelity else []
    reference = report.reference_outputs(load_upscaler(generator, 4), pairs)
    rows = []
    for channels_last in (False, True):
        upscaler = torch_upscaler(model, 4, channels_last)
        rows.append({"name": upscaler.name, "size_bytes": None, "latency_ms": report.latency_ms(upscaler, runs),
                     "fidelity": report.fidelity(upscaler, pairs, reference) if pairs else None})
    return rows


def openvino_rows(result: dict, generator: str, model: keras.Model, tmp: str, fidelity: str | None,
                  runs: int) -> list[dict]:
    """OpenVINO on the exported float models (a float SavedModel of the inference graph the export writes,
    with f32 and bf16 hints, and the fp32 .tflite with f32), timed and scored like the artifacts; no rows
    without openvino."""
    if not available():
        return []
    from srgan_tf.export.tflite import export_float_savedmodel
    from srgan_tf.inference_graph import fast_generator

    saved = str(Path(tmp) / "openvino_savedmodel")
    export_float_savedmodel(fast_generator(model), saved)
    tflite = next(a["path"] for a in result["artifacts"] if a["name"] == "tflite fp32")
    pairs = report.load_pairs(fidelity) if fidelity else []
    reference = report.reference_outputs(load_upscaler(generator, 4), pairs)
    rows = []
    for path, hints in ((saved, ("f32", "bf16")), (tflite, ("f32",))):
        for hint, upscaler in zip(hints, openvino_upscalers(path, hints), strict=True):
            rows.append({"name": upscaler.name, "size_bytes": None, "latency_ms": report.latency_ms(upscaler, runs),
                         "fidelity": report.fidelity(upscaler, pairs, reference) if pairs else None,
                         "bf16": hint == "bf16"})
    return rows


def onnx_rows(generator: str, model: keras.Model, tmp: str, fidelity: str | None, runs: int) -> list[dict]:
    """ONNX Runtime (CPU, its default threads) on the ONNX export of the inference graph the other formats
    run, timed and scored like the artifacts; no rows without tf2onnx, onnx and onnxruntime."""
    from srgan_tf.export import onnx as onnx_export

    if onnx_export.missing_packages():
        return []
    from srgan_tf.inference_graph import fast_generator

    path = onnx_export.export_onnx(fast_generator(model), Path(tmp) / "bench.onnx", 4)
    upscaler = onnx_export.onnx_upscaler(path, 4)
    pairs = report.load_pairs(fidelity) if fidelity else []
    reference = report.reference_outputs(load_upscaler(generator, 4), pairs)
    opset = onnx_export.onnx_info(path)["opset"]
    return [{"name": f"{upscaler.name} (tf2onnx, opset {opset})", "size_bytes": path.stat().st_size,
             "latency_ms": report.latency_ms(upscaler, runs),
             "fidelity": report.fidelity(upscaler, pairs, reference) if pairs else None}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="", help=".keras generator (default: a random full-size one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "Set5"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        generator = generator_path(args.generator, tmp)
        model = keras.models.load_model(generator)
        flops = generator_flops(model, 128)
        rate = matmul_flops_per_second()
        floor_ms = 1000 * flops / rate
        fidelity = args.data if (Path(args.data) / "HR").is_dir() else None
        result = run_export(generator, Path(tmp) / "out", fidelity_data=fidelity, latency_runs=args.runs,
                            log=lambda _: None)
        result["artifacts"] += peer_rows(generator, model, fidelity, args.runs)
        result["artifacts"] += openvino_rows(result, generator, model, tmp, fidelity, args.runs)
        result["artifacts"] += onnx_rows(generator, model, tmp, fidelity, args.runs)
        bf16_floor_ms = 1000 * flops / matmul_flops_per_second(dtype=tf.bfloat16)
        convs = convolution_rates(model, 128)

    print(machine())
    print(f"generator: {args.generator or 'random full-size'}; {flops / 1e9:.1f} GFLOP per 128x128 input; "
          f"float32 matmul rate {rate / 1e9:.0f} GFLOP/s; floor {floor_ms:.0f} ms (bfloat16: {bf16_floor_ms:.0f} ms, "
          "the floor of the bf16 rows)")
    keras_row = next(a for a in result["artifacts"] if a["format"] == "keras")
    keras_ms = keras_row["latency_ms"]
    keras_psnr = (keras_row["fidelity"] or {}).get("y_psnr_vs_hr_db")
    print("\n| artifact | size (MB) | median ms | / floor | / Keras | Set5 Y-PSNR (dB) | vs Keras (dB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for a in result["artifacts"]:
        psnr = (a["fidelity"] or {}).get("y_psnr_vs_hr_db")
        delta = "" if psnr is None or keras_psnr is None else f"{psnr - keras_psnr:+.2f}"
        ms = a["latency_ms"]
        size = "" if a["size_bytes"] is None else f"{a['size_bytes'] / 1e6:.1f}"
        floor = bf16_floor_ms if a.get("bf16") else floor_ms
        print(f"| {a['name']} | {size} | {ms:.0f} | {ms / floor:.2f} | {ms / keras_ms:.2f} | "
              f"{'' if psnr is None else f'{psnr:.2f}'} | {delta} |")
    total = sum(c["ms"] * c["count"] for c in convs)
    print(f"\nThe Keras model's convolutions, each kind timed alone (median of 5; {total:.0f} ms summed, against "
          f"{keras_ms:.0f} ms for the whole model in the table above; matmul rate {rate / 1e9:.0f} GFLOP/s):\n")
    print("| convolution | layers | GFLOP each | ms each | GFLOP/s | share of conv time |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in convs:
        print(f"| {c['what']} ({c['first']}{', ...' if c['count'] > 1 else ''}) | {c['count']} | {c['gflop']:.2f} | "
              f"{c['ms']:.1f} | {c['rate']:.0f} | {c['ms'] * c['count'] / total:.0%} |")


if __name__ == "__main__":
    main()
