"""Full-size training steps (batch 16 of 96x96 HR crops), every setting measured in one run.

    python bench/training.py [--steps=5] [--batch=16]

For the SRResNet phase (MSE) and the SRGAN phase (VGG54 content loss, with random VGG weights: the same
work as the ImageNet ones), in float32 and mixed_bfloat16, it times the project's fit()/train_step against
a plain tf.GradientTape loop over the same models and batch, fit() with XLA (jit_compile), and fit() on the
real input pipeline against the same number of steps on one in-memory batch. Prints a Markdown table of
seconds per step and the ratios the project's targets are stated in.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import machine  # noqa: E402  (bench/ is the script's folder)

from srgan_tf import data, losses  # noqa: E402
from srgan_tf.config import base_config  # noqa: E402
from srgan_tf.models import build_discriminator, build_generator  # noqa: E402
from srgan_tf.srgan import SRGAN  # noqa: E402

PHASES = {"SRResNet": ("mse", 0.0), "SRGAN": ("vgg54", 1e-3)}


def _models(phase: str):
    keras.utils.set_random_seed(0)
    content, weight = PHASES[phase]
    g, d = build_generator(), build_discriminator()
    loss = losses.make_content_loss(content, vgg_weights="random")
    return g, d, loss, weight


def fit_seconds_per_step(phase: str, ds: tf.data.Dataset, steps: int, jit_compile: bool = False) -> float:
    g, d, loss, weight = _models(phase)
    model = SRGAN(g, d, loss, weight)
    model.compile(keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4), jit_compile=jit_compile)
    model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # trace, compile, warm up
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - t0) / steps


def tape_seconds_per_step(phase: str, batch, steps: int) -> float:
    """The same updates as SRGAN.train_step, written as the shortest GradientTape loop (no metrics, no
    non-finite guard)."""
    g, d, content_loss, weight = _models(phase)
    g_opt, d_opt = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)

    @tf.function
    def step(lr, hr):
        with tf.GradientTape() as g_tape:
            sr = g(lr, training=True)
            if weight:
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    d_loss = losses.discriminator_loss(d(hr, training=True), d(tf.stop_gradient(sr), training=True))
                d_vars = d.trainable_variables
                d_opt.apply_gradients(zip(d_tape.gradient(d_loss, d_vars), d_vars, strict=True))
            g_loss = content_loss(hr, sr)
            if weight:
                g_loss += weight * losses.generator_adversarial_loss(d(sr, training=True))
        g_vars = g.trainable_variables
        g_opt.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars, strict=True))
        return g_loss

    lr, hr = batch
    for _ in range(2):
        step(lr, hr).numpy()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(lr, hr).numpy()
    return (time.perf_counter() - t0) / steps


def _try(fn, *args, **kwargs) -> float | str:
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # a setting this machine's TF cannot run is a result, not a crash
        return f"failed: {type(e).__name__}"


def _fmt(x) -> str:
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--phases", default="SRResNet,SRGAN")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    args = parser.parse_args()

    cfg = base_config().data
    real = data.train_dataset(cfg, 4, args.batch, seed=0)
    batch = next(iter(real))
    synthetic = tf.data.Dataset.from_tensors(batch).repeat()

    print(f"{machine()}; batch {args.batch} of {cfg.crop}x{cfg.crop}, {args.steps} timed steps each")
    print("\n| phase | precision | fit() s/step | GradientTape s/step | fit / tape | fit + XLA s/step | XLA / fit "
          "| real pipeline s/step | real / synthetic |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase in args.phases.split(","):
        for precision in args.precisions.split(","):
            keras.mixed_precision.set_global_policy(precision)
            fit = _try(fit_seconds_per_step, phase, synthetic, args.steps)
            tape = _try(tape_seconds_per_step, phase, batch, args.steps)
            xla = _try(fit_seconds_per_step, phase, synthetic, args.steps, jit_compile=True)
            piped = _try(fit_seconds_per_step, phase, real, args.steps)
            print(f"| {phase} | {precision} | {_fmt(fit)} | {_fmt(tape)} | {_ratio(fit, tape)} | {_fmt(xla)} | "
                  f"{_ratio(xla, fit)} | {_fmt(piped)} | {_ratio(piped, fit)} |", flush=True)
    keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    main()
