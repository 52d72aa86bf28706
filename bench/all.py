"""Every benchmark of bench/, one after the other, into one Markdown file.

    python bench/all.py [--out=BENCHMARKS.md] [--generator=FILE.keras] [--quick]

Runs pipeline.py, inference.py, training.py and tiling.py, each in its own process, and writes their
tables under one heading each, with the date, the machine and the command lines. Each table's ratios come
from one run of its script; compare absolute times only within one table. --quick shortens every script
(fewer steps, a 1000x1000 tiling input only) for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
from pathlib import Path

from srgan_tf.images import atomic_write

BENCH = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(BENCH.parent / "BENCHMARKS.md"))
    parser.add_argument("--generator", default="", help="a trained .keras generator for the inference PSNR column")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated script names, e.g. inference,tiling")
    args = parser.parse_args()

    gen = [f"--generator={args.generator}"] if args.generator else []
    jobs = [
        ("Input pipeline", ["pipeline.py"] + (["--batches=50", "--steps=2"] if args.quick else [])),
        ("Generator inference, 128x128 -> 512x512", ["inference.py", *gen] + (["--runs=2"] if args.quick else [])),
        ("Training steps", ["training.py"] + (["--steps=2", "--rounds=1"] if args.quick else [])),
        ("Tiled upscaling", ["tiling.py", *gen] + (["--sizes=1000"] if args.quick else [])),
    ]
    if args.only:
        jobs = [job for job in jobs if job[1][0].removesuffix(".py") in args.only.split(",")]
    cpu = platform.processor() or platform.machine()
    flags = (" --quick" if args.quick else "") + (f" --only={args.only}" if args.only else "")
    parts = [f"# Benchmarks\n\nWritten by `python bench/all.py{flags}` on "
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {platform.platform()}, {cpu}.\n"]
    for title, cmd in jobs:
        print(f"running {' '.join(cmd)} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(BENCH / cmd[0]), *cmd[1:]], capture_output=True, text=True)
        body = proc.stdout.strip() if proc.returncode == 0 else f"failed: {proc.stderr.strip()[-500:]}"
        parts.append(f"## {title}\n\n`python bench/{' '.join(cmd)}`\n\n{body}\n")
        print(body, file=sys.stderr, flush=True)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text("\n".join(parts)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
