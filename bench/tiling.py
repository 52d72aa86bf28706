"""Upscaling against the compute floor: every CPU engine on one 128x128 input, and wall time and peak memory of
`python -m srgan_tf.upscale` on large inputs.

    python bench/tiling.py [--generator=FILE.keras] [--sizes=1000,2000] [--legacy_sizes=1000] [--runs=5]

Engines (taking turns, median of --runs calls each, with their Set5 fidelity against the fp32 fast graph):
the Keras generator as trained and in its fast form (srgan_tf.inference_graph), the fast form in bfloat16
(`--precision=bfloat16`), the exported TFLite fp32 and full-int8 models (XNNPACK), ONNX Runtime on the
ONNX export when the onnx extra is installed, and OpenVINO on the exported float SavedModel with f32 and bf16
precision hints when openvino is installed (it is not a dependency).

The floor of an input is the paper generator's FLOPs on it divided by the float32 matmul rate measured in the
same run (bench/inference.py). Each upscale runs in its own process (so its peak resident memory is its
own), on a photo-like input made from scikit-image's astronaut, with the full-size generator (random
weights unless --generator is given: the cost does not depend on the weights): with the default plan (the
fast inference graph, two-level tiles within --max_memory), and for --legacy_sizes also with the old fixed
128-pixel tiles (`--tile=128`, whose margins recompute 2.6x the pixels) for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import generator_path, machine
from openvino_peer import HINTS, available, openvino_upscalers  # bench/ is the script's folder

from srgan_tf.data import sample_dir
from srgan_tf.images import load_image, save_image


def run_one(generator: str, side: int, tile: int | None, workdir: Path) -> tuple[float, float]:
    """Seconds and peak RSS (GB) of one upscale of a side x side image, in a fresh process."""
    photo = load_image(sample_dir() / "astronaut.png")
    reps = -(-side // photo.shape[0])
    image = np.tile(photo, (reps, reps, 1))[:side, :side]
    src, dst = workdir / f"in_{side}.png", workdir / f"out_{side}.png"
    save_image(src, image)
    cmd = [sys.executable, "-m", "srgan_tf.upscale", f"--model={generator}", f"--input={src}", f"--output={dst}"]
    cmd += [f"--tile={tile}"] if tile else []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage; ru_maxrss is in KiB on Linux
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"upscale of {side}x{side} failed: {(stderr.strip().splitlines() or ['?'])[-1]}")
    return seconds, usage.ru_maxrss / 2**20


def engine_rows(generator: str, tmp: str, runs: int, fidelity: str | None) -> list[tuple[str, float, dict | None]]:
    """(engine, median ms on one 128x128 input, fidelity on `fidelity`'s Set5 pairs vs the fp32 fast graph)
    for every way this package runs the generator on a CPU, and OpenVINO and ONNX Runtime on its exports."""
    import keras

    from srgan_tf.export import onnx as onnx_export
    from srgan_tf.export import report
    from srgan_tf.export.pipeline import default_calibration_images
    from srgan_tf.export.tflite import calibration_crops, export_float_savedmodel, export_tflite
    from srgan_tf.inference_graph import fast_generator
    from srgan_tf.loader import load_upscaler, upscaler_from_keras

    model = keras.models.load_model(generator, compile=False)
    reference = load_upscaler(generator)
    pairs = report.load_pairs(fidelity) if fidelity else []
    ref_outputs = report.reference_outputs(reference, pairs)
    fast = fast_generator(model)  # what the export writes
    saved = str(Path(tmp) / "float_savedmodel")
    export_float_savedmodel(fast, saved)
    calibration = calibration_crops(default_calibration_images())
    tflite = export_tflite(fast, Path(tmp) / "tflite", "g", ("fp32", "int8"), 4, {}, calibration, log=lambda _: None)
    engines = [
        ("Keras fp32, paper graph (9x9 output layer)", upscaler_from_keras(model, fast=False)),
        ("Keras fp32, fast graph (the default)", reference),
        ("Keras bfloat16, fast graph (--precision=bfloat16)", load_upscaler(generator, 4, "bfloat16")),
        ("TFLite fp32, XNNPACK", load_upscaler(tflite["fp32"]["path"])),
        ("TFLite full int8, XNNPACK", load_upscaler(tflite["int8"]["path"])),
        *zip((f"OpenVINO, exported SavedModel, {hint} hint" for hint in HINTS),
             openvino_upscalers(saved, HINTS) or [None] * len(HINTS), strict=True),
    ]
    if not available():
        print("(no OpenVINO rows: openvino is not installed; `pip install openvino` to get them)")
    if onnx_export.missing_packages():
        print(f"(no ONNX Runtime row: {onnx_export.INSTALL_HINT} to get it)")
    else:
        path = onnx_export.export_onnx(fast, Path(tmp) / "g.onnx", 4)
        engines.append((f"ONNX Runtime, exported ONNX (tf2onnx, opset {onnx_export.onnx_info(path)['opset']})",
                        load_upscaler(str(path))))
    engines = [(name, upscaler) for name, upscaler in engines if upscaler is not None]
    # The engines take turns, so that this machine's drifting speed falls on all of them alike.
    x = np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name, _ in engines}
    for round_ in range(runs + 1):
        for name, upscaler in engines:
            t0 = time.perf_counter()
            upscaler.predict_float(x)
            if round_:  # the first round traces and warms up
                times[name].append(time.perf_counter() - t0)
    return [(name, 1000 * statistics.median(times[name]),
             report.fidelity(upscaler, pairs, ref_outputs) if pairs else None) for name, upscaler in engines]


def stage_profile(generator: str, side: int, workdir: Path) -> list[tuple[str, float]]:
    """(stage, seconds) of one in-process upscale of a side x side photo-like PNG with the default plan:
    model load, PNG decode, the trunk (16 residual blocks at LR size), the tail (upsampling and output
    layer), the rest of the tiling (cropping, assembly, rounding to uint8) and the PNG encode."""
    import dataclasses

    from srgan_tf.images import read_image_file, write_image_file
    from srgan_tf.loader import load_upscaler
    from srgan_tf.upscale import default_max_memory, upscale_image

    src = workdir / f"in_{side}.png"
    if not src.exists():
        photo = load_image(sample_dir() / "astronaut.png")
        reps = -(-side // photo.shape[0])
        save_image(src, np.tile(photo, (reps, reps, 1))[:side, :side])
    spent = {"trunk": 0.0, "tail": 0.0}

    def timed(stage, fn):
        def run(*args):
            t0 = time.perf_counter()
            out = fn(*args)
            spent[stage] += time.perf_counter() - t0
            return out
        return run

    t0 = time.perf_counter()
    upscaler = load_upscaler(generator)
    g = upscaler.split
    upscaler.split = dataclasses.replace(g, trunk=timed("trunk", g.trunk), tail=timed("tail", g.tail))
    t1 = time.perf_counter()
    image = read_image_file(src)
    t2 = time.perf_counter()
    out = upscale_image(upscaler, image, 0, max_memory=default_max_memory())
    t3 = time.perf_counter()
    write_image_file(workdir / f"out_{side}.png", out)
    t4 = time.perf_counter()
    return [("model load (first call traces)", t1 - t0), ("PNG decode", t2 - t1), ("trunk", spent["trunk"]),
            ("tail", spent["tail"]), ("tiling: crops, assembly, rounding", t3 - t2 - spent["trunk"] - spent["tail"]),
            ("PNG encode", t4 - t3)]


def main() -> None:
    import keras
    from inference import generator_flops, matmul_flops_per_second

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="")
    parser.add_argument("--sizes", default="1000,2000")
    parser.add_argument("--legacy_sizes", default="1000")
    parser.add_argument("--profile_size", type=int, default=1000, help="side of the stage profile's input (0: none)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per engine (they take turns)")
    parser.add_argument("--fidelity", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "Set5"),
                        help="benchmark set for the PSNR columns ('' for none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generator = generator_path(args.generator, tmp)
        model = keras.models.load_model(generator, compile=False)
        import tensorflow as tf

        rate = matmul_flops_per_second()
        bf16_rate = matmul_flops_per_second(dtype=tf.bfloat16)
        print(f"{machine()}; matmul rate float32 {rate / 1e9:.0f}, bfloat16 {bf16_rate / 1e9:.0f} GFLOP/s "
              "(medians, this run)")
        floor_ms = 1000 * generator_flops(model, 128) / rate
        bf16_floor_ms = floor_ms * rate / bf16_rate
        print("\n| engine, 128x128 input | ms | x fp32 floor | x bf16 floor | Set5 Y-PSNR (dB) | change (dB) | "
              "output PSNR vs fp32 (dB) | max diff (levels) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        rows = engine_rows(generator, tmp, args.runs, args.fidelity or None)
        base = next((fid["y_psnr_vs_hr_db"] for _, _, fid in rows if fid and fid["psnr_vs_keras_db"] is None), None)
        for name, ms, fid in rows:
            cells = ["", "", "", ""] if fid is None else [
                f"{fid['y_psnr_vs_hr_db']:.3f}", f"{fid['y_psnr_vs_hr_db'] - base:+.3f}",
                "exact" if fid["psnr_vs_keras_db"] is None else f"{fid['psnr_vs_keras_db']:.1f}",
                f"{fid['max_abs_diff_uint8']:.0f}"]
            bf16 = f"{ms / bf16_floor_ms:.2f}" if "bf" in name else ""
            print(f"| {name} | {ms:.0f} | {ms / floor_ms:.2f} | {bf16} | {' | '.join(cells)} |", flush=True)
        print("\n| input | output | plan | seconds | floor s | x floor | peak RSS (GB) |")
        print("|---|---|---|---:|---:|---:|---:|")
        legacy = {int(s) for s in args.legacy_sizes.split(",") if s}
        if args.profile_size:
            side = args.profile_size
            floor = generator_flops(model, side) / rate
            stages = stage_profile(generator, side, Path(tmp))
            total = sum(sec for _, sec in stages)
            print(f"\n| stage of one {side}x{side} upscale, in process | seconds | share | x its floor |")
            print("|---|---:|---:|---:|")
            for stage, sec in stages:
                print(f"| {stage} | {sec:.1f} | {sec / total:.0%} | |")
            net = sum(sec for stage, sec in stages if stage in ("trunk", "tail"))
            print(f"| trunk + tail (the generator) | {net:.1f} | {net / total:.0%} | {net / floor:.2f} |")
            print(f"| all | {total:.1f} | 100% | {total / floor:.2f} |", flush=True)
        for side in (int(s) for s in args.sizes.split(",") if s):
            floor = generator_flops(model, side) / rate
            for tile in (None, 128) if side in legacy else (None,):
                seconds, rss = run_one(generator, side, tile, Path(tmp))
                plan = "default (two-level, --max_memory)" if tile is None else f"--tile={tile}"
                print(f"| {side}x{side} | {4 * side}x{4 * side} | {plan} | {seconds:.0f} | {floor:.0f} | "
                      f"{seconds / floor:.2f} | {rss:.2f} |", flush=True)


if __name__ == "__main__":
    main()
