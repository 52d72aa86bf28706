"""Upscaling against the compute floor: wall time and peak memory of `python -m srgan_tf.upscale`, and the
Keras generator alone on 128x128.

    python bench/tiling.py [--generator=FILE.keras] [--sizes=1000,2000] [--legacy_sizes=1000]

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import generator_path, machine, median_seconds  # bench/ is the script's folder

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


def generator_rows(generator: str, rate: float, runs: int = 5) -> list[tuple[str, float]]:
    """(graph, median ms) of the Keras generator on one 128x128 input: as trained, and the fast graph."""
    import keras
    import tensorflow as tf

    from srgan_tf.inference_graph import fast_generator

    model = keras.models.load_model(generator, compile=False)
    x = tf.random.uniform([1, 128, 128, 3])
    rows = []
    for name, graph in (("paper graph (9x9 output layer)", model), ("fast graph (srgan_tf.inference_graph)",
                                                                     fast_generator(model))):
        run = tf.function(lambda x, g=graph: g(x, training=False))
        rows.append((name, 1000 * median_seconds(lambda run=run: run(x).numpy(), runs)))
    return rows


def main() -> None:
    import keras
    from inference import generator_flops, matmul_flops_per_second

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="")
    parser.add_argument("--sizes", default="1000,2000")
    parser.add_argument("--legacy_sizes", default="1000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generator = generator_path(args.generator, tmp)
        model = keras.models.load_model(generator, compile=False)
        rate = matmul_flops_per_second()
        print(f"{machine()}; float32 matmul rate {rate / 1e9:.0f} GFLOP/s (median, this run)")
        print("\n| Keras generator, 128x128 input | ms | floor ms | x floor |")
        print("|---|---:|---:|---:|")
        floor_ms = 1000 * generator_flops(model, 128) / rate
        for name, ms in generator_rows(generator, rate):
            print(f"| {name} | {ms:.0f} | {floor_ms:.0f} | {ms / floor_ms:.2f} |", flush=True)
        print("\n| input | output | plan | seconds | floor s | x floor | peak RSS (GB) |")
        print("|---|---|---|---:|---:|---:|---:|")
        legacy = {int(s) for s in args.legacy_sizes.split(",") if s}
        for side in (int(s) for s in args.sizes.split(",")):
            floor = generator_flops(model, side) / rate
            for tile in (None, 128) if side in legacy else (None,):
                seconds, rss = run_one(generator, side, tile, Path(tmp))
                plan = "default (two-level, --max_memory)" if tile is None else f"--tile={tile}"
                print(f"| {side}x{side} | {4 * side}x{4 * side} | {plan} | {seconds:.0f} | {floor:.0f} | "
                      f"{seconds / floor:.2f} | {rss:.2f} |", flush=True)


if __name__ == "__main__":
    main()
