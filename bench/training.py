"""Full-size training steps (batch 16 of 96x96 HR crops), every setting measured in one run.

    python bench/training.py [--steps=2] [--rounds=5] [--batch=16] [--settings=fit,tape,xla,real]

For the SRResNet phase (MSE) and the SRGAN phase (VGG54 content loss, with random VGG weights: the same
work as the ImageNet ones), in float32 and mixed precision (mixed_bfloat16 on CPU; on a GPU mixed_float16,
with a LossScaleOptimizer per optimizer as in training), it times the project's fit()/train_step against
a plain tf.GradientTape loop over the same models and batch, fit() with XLA (jit_compile), and fit() on the
real input pipeline against one in-memory batch. The settings take turns, `--rounds` times `--steps` steps
each, and every figure is the median of its per-step times, so a slow spell of the machine hits all
settings alike. Prints a Markdown table of seconds per step and the ratios the project's targets are
stated in.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
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


def _optimizer() -> keras.optimizers.Optimizer:
    # As srgan_tf.train does: float16 gradients need loss scaling, one scaler per optimizer.
    adam = keras.optimizers.Adam(1e-4)
    float16 = keras.mixed_precision.global_policy().name == "mixed_float16"
    return keras.optimizers.LossScaleOptimizer(adam) if float16 else adam


class _StepTimes(keras.callbacks.Callback):
    """Seconds of each step of the current fit() call, from one step's end to the next (so waiting for
    the input pipeline counts); the first step, which also starts the iterator, is left out."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._last = None

    def on_train_begin(self, logs=None):
        self.times, self._last = [], None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def fit_runner(phase: str, jit_compile: bool = False):
    """`run(ds, n)`: fit() on `ds` for n + 1 steps of one SRGAN model; returns the last n steps' seconds."""
    g, d, loss, weight = _models(phase)
    model = SRGAN(g, d, loss, weight)
    model.compile(_optimizer(), _optimizer(), jit_compile=jit_compile)
    timer = _StepTimes()

    def run(ds: tf.data.Dataset, steps: int) -> list[float]:
        model.fit(ds, epochs=1, steps_per_epoch=steps + 1, verbose=0, callbacks=[timer])
        return list(timer.times)

    return run


def tape_runner(phase: str, batch):
    """`run(n)`: n steps of the same updates as SRGAN.train_step, written as the shortest GradientTape loop
    (no metrics, no non-finite guard), on one in-memory batch; returns each step's seconds."""
    g, d, content_loss, weight = _models(phase)
    g_opt, d_opt = _optimizer(), _optimizer()

    @tf.function
    def step(lr, hr):
        with tf.GradientTape() as g_tape:
            sr = g(lr, training=True)
            if weight:
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    d_loss = losses.discriminator_loss(d(hr, training=True), d(tf.stop_gradient(sr), training=True))
                    d_scaled = d_opt.scale_loss(d_loss)
                d_vars = d.trainable_variables
                d_opt.apply_gradients(zip(d_tape.gradient(d_scaled, d_vars), d_vars, strict=True))
            g_loss = content_loss(hr, sr)
            if weight:
                g_loss += weight * losses.generator_adversarial_loss(d(sr, training=True))
            g_scaled = g_opt.scale_loss(g_loss)
        g_vars = g.trainable_variables
        g_opt.apply_gradients(zip(g_tape.gradient(g_scaled, g_vars), g_vars, strict=True))
        return g_loss

    lr, hr = batch

    def run(steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step(lr, hr).numpy()
            times.append(time.perf_counter() - t0)
        return times

    return run


def _failure(e: Exception) -> str:
    # A setting this machine's TF cannot run is a result, not a crash.
    first = (str(e).strip().splitlines() or [""])[0][:80]
    return f"failed: {type(e).__name__}" + (f" ({first})" if first else "")


SETTINGS = ("fit", "tape", "xla", "real")


def measure(phase: str, real: tf.data.Dataset, batch, steps: int, rounds: int,
            settings: tuple[str, ...] = SETTINGS) -> dict[str, list[float] | str]:
    """Seconds of every timed step of each of `settings`: fit() on one in-memory batch, the GradientTape
    loop, fit() with XLA, and the same fit() model on the real pipeline; a setting that fails gives its
    error instead."""
    synthetic = tf.data.Dataset.from_tensors(batch).repeat()
    makers = {"fit": lambda: fit_runner(phase), "tape": lambda: tape_runner(phase, batch),
              "xla": lambda: fit_runner(phase, jit_compile=True)}
    built: dict[str, object] = {}
    for name in makers:
        if name in settings or (name == "fit" and "real" in settings):
            try:
                built[name] = makers[name]()
            except Exception as e:
                built[name] = _failure(e)
    runners: dict[str, object] = {}
    for name in settings:
        run = built["fit" if name == "real" else name]
        data = {"fit": synthetic, "xla": synthetic, "real": real}.get(name)
        runners[name] = functools.partial(run, data) if callable(run) and data is not None else run
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(rounds + 1):  # round 0 traces, compiles and warms up: not timed
        for name, run in runners.items():
            if not callable(run):
                continue
            try:
                got = run(steps if round_ else 1)
            except Exception as e:
                runners[name] = _failure(e)
                continue
            if round_:
                times[name] += got
    return {name: times[name] if callable(run) else run for name, run in runners.items()}


def _fmt(x) -> str:
    return f"{statistics.median(x):.2f}" if isinstance(x, list) else str(x)


def _ratio(a, b) -> str:
    """Ratio of the medians, and of the fastest steps (the least disturbed by other load)."""
    if not (isinstance(a, list) and isinstance(b, list)):
        return ""
    return f"{statistics.median(a) / statistics.median(b):.2f} ({min(a) / min(b):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per setting per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--phases", default="SRResNet,SRGAN")
    gpu = bool(tf.config.list_physical_devices("GPU"))
    parser.add_argument("--precisions", default="float32," + ("mixed_float16" if gpu else "mixed_bfloat16"),
                        help="default: float32 and the mixed policy of this machine's device")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="a subset of " + ",".join(SETTINGS))
    args = parser.parse_args()
    if unknown := set(args.settings.split(",")) - set(SETTINGS):
        parser.error(f"--settings: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")

    cfg = base_config().data
    real = data.train_dataset(cfg, 4, args.batch, seed=0)
    batch = next(iter(real))

    print(f"{machine()}; batch {args.batch} of {cfg.crop}x{cfg.crop}; {args.rounds} rounds x {args.steps} timed "
          "steps per setting, the settings taking turns; seconds are medians, ratios are of the medians "
          "(and of the fastest steps)")
    print("\n| phase | precision | fit() s/step | GradientTape s/step | fit / tape | fit + XLA s/step | XLA / fit "
          "| real pipeline s/step | real / in-memory |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for phase in args.phases.split(","):
        for precision in args.precisions.split(","):
            keras.mixed_precision.set_global_policy(precision)
            r = measure(phase, real, batch, args.steps, args.rounds, tuple(args.settings.split(",")))
            r = {name: r.get(name, "") for name in SETTINGS}
            print(f"| {phase} | {precision} | {_fmt(r['fit'])} | {_fmt(r['tape'])} | {_ratio(r['fit'], r['tape'])} | "
                  f"{_fmt(r['xla'])} | {_ratio(r['xla'], r['fit'])} | {_fmt(r['real'])} | "
                  f"{_ratio(r['real'], r['fit'])} |", flush=True)
    keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    main()
