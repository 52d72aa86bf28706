"""What the bench scripts share: the machine line and the generator they measure."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf


def machine() -> str:
    return f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}"


def generator_path(given: str, tmp: str | os.PathLike) -> str:
    """`given`, or a full-size generator with random weights saved under `tmp` (costs do not depend on the
    weights; PSNR columns do)."""
    if given:
        return given
    from srgan_tf.models import build_generator

    path = str(Path(tmp) / "random.keras")
    build_generator().save(path)
    return path


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall seconds of `runs` calls of `fn` (which must block until its work is done), after one
    untimed call that traces and warms up."""
    fn()
    times = []
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
