"""Input pipeline throughput against what training consumes, measured in one run.

    python bench/pipeline.py [--config=configs/srgan.py-like overrides via --source/--crop/--batch]

Prints HR crops per second that the tf.data pipeline delivers (real decode, crop, augmentation and the
configured degradation), and the crops per second that one full-size training step consumes in each phase.
A ratio above 1 means the pipeline keeps ahead of training.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine  # noqa: E402  (bench/ is the script's folder)

from srgan_tf import data  # noqa: E402
from srgan_tf.config import base_config  # noqa: E402
from srgan_tf.losses import pixel_mse  # noqa: E402
from srgan_tf.models import build_discriminator, build_generator  # noqa: E402
from srgan_tf.srgan import SRGAN  # noqa: E402


def crops_per_second(ds: tf.data.Dataset, batches: int, batch_size: int) -> float:
    it = iter(ds)
    for _ in range(3):  # fill the cache and the prefetch buffer
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t0)


def training_crops_per_second(ds: tf.data.Dataset, adversarial: bool, steps: int, batch_size: int) -> float:
    g, d = build_generator(), build_discriminator()
    model = SRGAN(g, d, pixel_mse, 1e-3 if adversarial else 0.0)
    model.compile(keras.optimizers.Adam(1e-4, beta_1=0.9), keras.optimizers.Adam(1e-4, beta_1=0.9))
    batch = next(iter(ds))
    synthetic = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(synthetic, epochs=1, steps_per_epoch=2, verbose=0)  # trace and warm up
    t0 = time.perf_counter()
    model.fit(synthetic, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="sample")
    parser.add_argument("--path", default="")
    parser.add_argument("--degradation", default="matlab")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    cfg = base_config().data
    cfg.source, cfg.path, cfg.degradation, cfg.crop = args.source, args.path, args.degradation, args.crop
    ds = data.train_dataset(cfg, 4, args.batch, seed=0)
    pipeline = crops_per_second(ds, args.batches, args.batch)
    print(machine())
    print(f"pipeline ({args.source}, {args.degradation}, {args.crop}x{args.crop} HR crops): {pipeline:.0f} crops/s")
    print("| phase | training consumes (crops/s) | pipeline / training |")
    print("|---|---|---|")
    for name, adversarial in (("SRResNet", False), ("SRGAN", True)):
        consumed = training_crops_per_second(ds, adversarial, args.steps, args.batch)
        print(f"| {name} | {consumed:.1f} | {pipeline / consumed:.0f}x |")


if __name__ == "__main__":
    main()
