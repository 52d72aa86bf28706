"""Keras callbacks of a training phase, all keyed on the phase's global step (the G optimizer's iterations),
so that logs, checkpoints and evaluations line up across interrupted and resumed runs. PhaseProgress reads the
model's counts once per batch and comes first in the list; the others read them from it."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from srgan_tf import metrics
from srgan_tf.evaluate import comparison_image
from srgan_tf.images import save_image
from srgan_tf.imresize import imresize
from srgan_tf.loader import upscaler_from_keras

log = logging.getLogger(__name__)


def side_by_side(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """LR (nearest) | bicubic | SR | HR at HR size, with a zoomed crop below (see evaluate.comparison_image)."""
    s = hr.shape[0] // lr.shape[0]
    nearest = np.repeat(np.repeat(lr, s, axis=0), s, axis=1)
    return comparison_image((nearest, imresize(lr, s).numpy(), sr, hr), ("LR (nearest)", "bicubic", "SR", "HR"))


class PhaseProgress(keras.callbacks.Callback):
    """Follows the phase's counts (the step, refused steps and their current run: `step`, `skipped`,
    `streak`), read from the device once per batch for this callback and those after it in the list, which
    read them here. Stops at the phase's last step, checkpoints every `train.checkpoint_every` steps and at
    the end, and turns SIGTERM/SIGINT into a checkpoint followed by a clean stop (`interrupted` is then set).
    The data position is counted by SRGAN.train_step and checkpointed with the weights."""

    def __init__(self, name: str, steps: int, train: ml_collections.ConfigDict,
                 manager: tf.train.CheckpointManager):
        super().__init__()
        self.manager, self.total, self.every = manager, steps, train.checkpoint_every
        self.step = self.skipped = self.streak = 0
        self.interrupted = None
        self._previous_handlers = {}

    def read(self) -> None:
        """Reads the model's counts now (after a rollback, say)."""
        counts = self.model.counters()
        self.step, self.skipped, self.streak = counts["step"], counts["skipped"], counts["streak"]

    def _on_signal(self, signum, _frame):
        self.interrupted = signal.Signals(signum).name

    def _save(self, step: int) -> None:
        latest = self.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{step}"):
            self.manager.save(checkpoint_number=step)

    def on_train_begin(self, logs=None):
        self.read()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def on_train_batch_end(self, batch, logs=None):
        self.read()
        if self.step % self.every == 0:
            self._save(self.step)
        if self.step >= self.total or self.interrupted:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self.read()
        self._save(self.step)
        if self.interrupted:
            log.warning("%s received: checkpoint written at step %d", self.interrupted, self.step)


class DivergenceGuard(keras.callbacks.Callback):
    """Watches the updates that SRGAN.train_step refused (non-finite loss or gradients): logs each one, and
    after `train.max_bad_steps` in a row restores the newest checkpoint, keeps drawing new batches (the bad
    ones are not replayed) and stops fit() so that the phase restarts from the restored step. The learning
    rate is not changed. After `train.max_rollbacks` rollbacks, or with no checkpoint to go back to, it stops
    for good and sets `failed` to the reason. Reads the counts from `progress`, which must come first."""

    def __init__(self, name: str, train: ml_collections.ConfigDict, checkpoint: tf.train.Checkpoint,
                 manager: tf.train.CheckpointManager, progress: PhaseProgress):
        super().__init__()
        self.phase, self.checkpoint, self.manager, self.progress = name, checkpoint, manager, progress
        self.max_bad_steps, self.max_rollbacks = train.max_bad_steps, train.max_rollbacks
        self.rollbacks = 0
        self.failed: str | None = None
        self._skipped_seen = 0

    def on_train_begin(self, logs=None):
        self._skipped_seen = self.progress.skipped

    def on_train_batch_end(self, batch, logs=None):
        p = self.progress
        if p.skipped == self._skipped_seen:
            return
        self._skipped_seen = p.skipped
        log.warning("%s step %d: non-finite loss or gradient, update not applied (%d in a row, %d in this phase)",
                    self.phase, p.step, p.streak, p.skipped)
        if p.streak < self.max_bad_steps:
            return
        self.model.stop_training = True
        latest = self.manager.latest_checkpoint
        if latest is None or self.rollbacks >= self.max_rollbacks:
            self.failed = (f"{self.phase} diverged: {p.streak} non-finite updates in a row at step {p.step}, after "
                           f"{self.rollbacks} rollback(s); lower {self.phase}.learning_rate or check the data")
            return
        drawn = int(self.model.data_position.numpy())
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.model.data_position.assign(drawn)
        self.model.bad_streak.assign(0)
        self.rollbacks += 1
        streak, step = p.streak, p.step
        p.read()
        log.warning("%s: %d non-finite updates in a row at step %d: restored %s (step %d), rollback %d of at "
                    "most %d; the learning rate is unchanged", self.phase, streak, step, latest, p.step,
                    self.rollbacks, self.max_rollbacks)


class ScalarSummaries(keras.callbacks.Callback):
    """TensorBoard scalars at the end of every log period: the period means of the train_step metrics and the
    learning rate, at the step `progress` (which must come first) has read."""

    def __init__(self, name: str, writer, progress: PhaseProgress):
        super().__init__()
        self.phase, self.writer, self.progress = name, writer, progress

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default(step=self.progress.step):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"{self.phase}/{name}", value)
            learning_rate = tf.convert_to_tensor(self.model.g_optimizer.learning_rate)  # also a mirrored variable
            tf.summary.scalar(f"{self.phase}/learning_rate", float(learning_rate))


class Validation(keras.callbacks.Callback):
    """Validation Y-PSNR/SSIM of G on `images` every `train.eval_every` steps and at the phase's last step,
    logged to TensorBoard with the first images side by side; the last evaluation's side-by-side images are
    written to `samples_dir` at the end of the phase. Reads the step from `progress`, which must come first."""

    def __init__(self, name: str, train: ml_collections.ConfigDict, scale: int, images, writer, samples_dir: Path,
                 progress: PhaseProgress):
        super().__init__()
        self.phase, self.images, self.writer, self.samples_dir, self.progress = (name, images, writer, samples_dir,
                                                                                   progress)
        self.scale, self.eval_every, self.total = scale, train.eval_every, progress.total
        self.last_eval: dict[str, float] = {}
        self._evaluated_at = -1
        self._rows: dict[str, np.ndarray] = {}

    def on_train_batch_end(self, batch, logs=None):
        step = self.progress.step
        if self.eval_every and step % self.eval_every == 0 and step != self._evaluated_at:
            self.evaluate(step)

    def on_train_end(self, logs=None):
        step = self.progress.step
        if step >= self.total and step != self._evaluated_at:
            self.evaluate(step)
        for name, row in self._rows.items():
            save_image(self.samples_dir / f"{self.phase}_{name}.png", row)

    def evaluate(self, step: int) -> dict[str, float]:
        """Y-channel PSNR/SSIM (the literature's protocol) of G (its weight average, with EMA) on the
        validation images, logged at `step`."""
        ema = self.model.ema
        with ema.swapped_into(self.model.generator) if ema else contextlib.nullcontext():
            return self._evaluate(step)

    def _evaluate(self, step: int) -> dict[str, float]:
        upscaler = upscaler_from_keras(self.model.generator, self.scale, name=self.phase, fast=False)
        psnrs, ssims, self._rows = [], [], {}
        with self.writer.as_default(step=step):
            for i, (name, lr, hr) in enumerate(self.images):
                sr = upscaler(lr)
                psnr, ssim = metrics.psnr_ssim(sr, hr, shave=self.scale)
                psnrs.append(psnr)
                ssims.append(ssim)
                self._rows[name] = side_by_side(lr, sr, hr)
                if i < 3:
                    tf.summary.image(f"{self.phase}/lr-bicubic-sr-hr/{name}", self._rows[name][None], max_outputs=1)
            self.last_eval = {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}
            for key, value in self.last_eval.items():
                tf.summary.scalar(f"{self.phase}/{key}", value)
        self.writer.flush()
        self._evaluated_at = step
        log.info("%s step %d: validation Y-PSNR %.2f dB, SSIM %.4f", self.phase, step, *self.last_eval.values())
        return self.last_eval


class ProgressBar(keras.callbacks.Callback):
    """The phase's progress in steps, `step/total`, with the time per step and a true ETA, both measured over
    the steps this run has taken (so also right for a resumed run); the train_step metrics follow (means
    over the current log period). On a terminal it is one line redrawn in place; otherwise (a redirected
    log) one plain line per log period and one at the end, as fit(verbose=2) writes, with no control
    characters. `train.verbose`: 1 as said, 2 plain lines even on a terminal. Writes to `stream`
    (default: sys.stdout as training starts). Reads the step from `progress`, which must come first."""

    REDRAW_SECONDS = 0.1

    def __init__(self, name: str, train: ml_collections.ConfigDict, progress: PhaseProgress, stream=None):
        super().__init__()
        self.phase, self.progress, self.stream = name, progress, stream
        self.total, self.every, self.verbose = progress.total, train.log_every, train.verbose
        self._out = None
        self._live = False
        self._began = None  # time of the first train begin
        self._first: tuple[int, float] | None = None  # (step, time) after this run's first batch (tracing)
        self._drawn_at = 0.0
        self._width = 0
        self._written_step = None

    def on_train_begin(self, logs=None):
        self._out = self.stream or sys.stdout
        self._live = self.verbose == 1 and bool(getattr(self._out, "isatty", lambda: False)())
        if self._began is None:
            self._began = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        step, now = self.progress.step, time.monotonic()
        if self._first is None:
            self._first = (step, now)
        if self._live:
            if now - self._drawn_at >= self.REDRAW_SECONDS or step >= self.total:
                self._draw(self.line(step, now, logs))
                self._drawn_at = now
        elif (step % self.every == 0 or step >= self.total) and step != self._written_step:
            self._write(self.line(step, now, logs))

    def on_train_end(self, logs=None):
        step = self.progress.step
        if self._live:
            self._draw(self.line(step, time.monotonic(), logs))
            self._out.write("\n")
            self._width = 0
        elif step != self._written_step:
            self._write(self.line(step, time.monotonic(), logs))
        self._out.flush()

    def line(self, step: int, now: float, logs: dict | None) -> str:
        """`phase step/total - elapsed - time per step - ETA - metric: value ...`; time per step and ETA once
        this run has taken a step after its first."""
        parts = [f"{self.phase} {step}/{self.total}", _duration(now - self._began)]
        first_step, first_time = self._first or (step, now)
        if step > first_step:
            per_step = (now - first_time) / (step - first_step)
            parts += [f"{per_step:.3g}s/step", f"ETA {_duration(per_step * max(self.total - step, 0))}"]
        parts += [f"{name}: {value:.4g}" for name, value in (logs or {}).items() if isinstance(value, (int, float))]
        return " - ".join(parts)

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()
        self._written_step = self.progress.step

    def _draw(self, line: str) -> None:
        self._out.write("\r" + line.ljust(self._width))
        self._out.flush()
        self._width = len(line)


def _duration(seconds: float) -> str:
    """42s, 3:07 or 1:02:03."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d}"
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


@dataclass
class PhaseCallbacks:
    """A phase's callbacks, in the order fit() must run them (`progress` first: the others read its counts)."""

    progress: PhaseProgress
    guard: DivergenceGuard
    validation: Validation
    all: list[keras.callbacks.Callback]


def phase_callbacks(name: str, steps: int, train: ml_collections.ConfigDict, scale: int,
                    checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager, writer, images,
                    samples_dir: Path, chief: bool = True) -> PhaseCallbacks:
    """The callbacks of phase `name` (`steps` long) as `train` (config.train) asks: progress and the divergence
    guard on every process; the progress bar (train.verbose), TensorBoard scalars and validation on `images`
    on the chief only."""
    progress = PhaseProgress(name, steps, train, manager)
    guard = DivergenceGuard(name, train, checkpoint, manager, progress)
    validation = Validation(name, train, scale, images, writer, samples_dir, progress)
    every = [progress, guard]
    if chief:
        every += [ProgressBar(name, train, progress)] if train.verbose else []
        every += [ScalarSummaries(name, writer, progress), validation]
    return PhaseCallbacks(progress, guard, validation, every)
