"""Keras callbacks of a training phase, all keyed on the phase's global step (the G optimizer's iterations),
so that logs, checkpoints and evaluations line up across interrupted and resumed runs."""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path

import keras
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
    """Counts the batches drawn (`position`, checkpointed with the weights so that a resumed run draws the
    next ones), stops at the phase's last step, checkpoints every `checkpoint_every` steps and at the end, and
    turns SIGTERM/SIGINT into a checkpoint followed by a clean stop (`interrupted` is then set)."""

    def __init__(self, manager: tf.train.CheckpointManager, step: tf.Variable, position: tf.Variable,
                 total_steps: int, checkpoint_every: int):
        super().__init__()
        self.manager, self.step, self.position = manager, step, position
        self.total, self.every = total_steps, checkpoint_every
        self.interrupted = None
        self._previous_handlers = {}

    def _on_signal(self, signum, _frame):
        self.interrupted = signal.Signals(signum).name

    def _save(self, step: int) -> None:
        latest = self.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{step}"):
            self.manager.save(checkpoint_number=step)

    def on_train_begin(self, logs=None):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def on_train_batch_end(self, batch, logs=None):
        self.position.assign_add(1)
        step = int(self.step.numpy())
        if step % self.every == 0:
            self._save(step)
        if step >= self.total or self.interrupted:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._save(int(self.step.numpy()))
        if self.interrupted:
            log.warning("%s received: checkpoint written at step %d", self.interrupted, int(self.step.numpy()))


class DivergenceGuard(keras.callbacks.Callback):
    """Watches the updates that SRGAN.train_step refused (non-finite loss or gradients): logs each one, and
    after `max_bad_steps` in a row restores the newest checkpoint, keeps drawing new batches (the bad ones
    are not replayed) and stops fit() so that the phase restarts from the restored step. The learning rate
    is not changed. After `max_rollbacks` rollbacks, or with no checkpoint to go back to, it stops for good
    and sets `failed` to the reason."""

    def __init__(self, checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager, step: tf.Variable,
                 position: tf.Variable, phase: str, max_bad_steps: int, max_rollbacks: int):
        super().__init__()
        self.checkpoint, self.manager, self.step, self.position = checkpoint, manager, step, position
        self.phase, self.max_bad_steps, self.max_rollbacks = phase, max_bad_steps, max_rollbacks
        self.rollbacks = 0
        self.failed: str | None = None
        self._skipped_seen = 0

    def on_train_begin(self, logs=None):
        self._skipped_seen = int(self.model.skipped_steps.numpy())

    def on_train_batch_end(self, batch, logs=None):
        skipped, streak = int(self.model.skipped_steps.numpy()), int(self.model.bad_streak.numpy())
        if skipped == self._skipped_seen:
            return
        self._skipped_seen = skipped
        step = int(self.step.numpy())
        log.warning("%s step %d: non-finite loss or gradient, update not applied (%d in a row, %d in this phase)",
                    self.phase, step, streak, skipped)
        if streak < self.max_bad_steps:
            return
        self.model.stop_training = True
        latest = self.manager.latest_checkpoint
        if latest is None or self.rollbacks >= self.max_rollbacks:
            self.failed = (f"{self.phase} diverged: {streak} non-finite updates in a row at step {step}, after "
                           f"{self.rollbacks} rollback(s); lower {self.phase}.learning_rate or check the data")
            return
        position = int(self.position.numpy())
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.position.assign(position)
        self.model.bad_streak.assign(0)
        self.rollbacks += 1
        log.warning("%s: %d non-finite updates in a row at step %d: restored %s (step %d), rollback %d of at "
                    "most %d; the learning rate is unchanged", self.phase, streak, step, latest, int(self.step.numpy()),
                    self.rollbacks, self.max_rollbacks)


class Summaries(keras.callbacks.Callback):
    """TensorBoard scalars (period means of the train_step metrics, the learning rate) every log period,
    and validation Y-PSNR/SSIM plus side-by-side sample images every `eval_every` steps and at the phase's
    last step (`total_steps`)."""

    def __init__(self, writer, step: tf.Variable, phase: str, val_images, scale: int, eval_every: int,
                 samples_dir: Path, total_steps: int):
        super().__init__()
        self.writer, self.step, self.phase, self.total = writer, step, phase, total_steps
        self.val_images, self.scale, self.eval_every = val_images, scale, eval_every
        self.samples_dir = samples_dir
        self.last_eval: dict[str, float] = {}
        self._evaluated_at = -1
        self._rows: dict[str, np.ndarray] = {}

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.step.numpy())
        with self.writer.as_default(step=step):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"{self.phase}/{name}", value)
            learning_rate = tf.convert_to_tensor(self.model.g_optimizer.learning_rate)  # also a mirrored variable
            tf.summary.scalar(f"{self.phase}/learning_rate", float(learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.step.numpy())
        if self.eval_every and step % self.eval_every == 0:
            self.evaluate(step)

    def on_train_end(self, logs=None):
        step = int(self.step.numpy())
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
            for i, (name, lr, hr) in enumerate(self.val_images):
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
