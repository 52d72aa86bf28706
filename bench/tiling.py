"""Tiled upscaling of large inputs: wall time and peak memory of `python -m srgan_tf.upscale`.

    python bench/tiling.py [--generator=FILE.keras] [--sizes=1000,2000] [--tile=128]

Each size runs in its own process (so its peak resident memory is its own), on a photo-like input made
from scikit-image's astronaut, with the full-size generator (random weights unless --generator is given:
the cost does not depend on the weights).
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
from common import generator_path, machine  # bench/ is the script's folder

from srgan_tf.data import sample_dir
from srgan_tf.images import load_image, save_image


def run_one(generator: str, side: int, tile: int, workdir: Path) -> tuple[float, float]:
    """Seconds and peak RSS (GB) of one upscale of a side x side image, in a fresh process."""
    photo = load_image(sample_dir() / "astronaut.png")
    reps = -(-side // photo.shape[0])
    image = np.tile(photo, (reps, reps, 1))[:side, :side]
    src, dst = workdir / f"in_{side}.png", workdir / f"out_{side}.png"
    save_image(src, image)
    cmd = [sys.executable, "-m", "srgan_tf.upscale", f"--model={generator}", f"--input={src}", f"--output={dst}",
           f"--tile={tile}"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="")
    parser.add_argument("--sizes", default="1000,2000")
    parser.add_argument("--tile", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generator = generator_path(args.generator, tmp)
        print(f"{machine()}; tile {args.tile}")
        print("\n| input | output | seconds | peak RSS (GB) |")
        print("|---|---|---:|---:|")
        for side in (int(s) for s in args.sizes.split(",")):
            seconds, rss = run_one(generator, side, args.tile, Path(tmp))
            print(f"| {side}x{side} | {4 * side}x{4 * side} | {seconds:.0f} | {rss:.2f} |", flush=True)


if __name__ == "__main__":
    main()
