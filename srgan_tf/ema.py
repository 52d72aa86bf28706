"""An exponential moving average of a model's trainable weights (the "EMA generator" of BasicSR and
Real-ESRGAN), kept as variables of its own so that it lives in checkpoints and resumes exactly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf


class WeightAverage(tf.Module):
    """`averages[i]` follows `model.trainable_variables[i]`: a <- decay * a + (1 - decay) * w after each applied
    update, starting from the weights the model has when this object is made (or `reset` to).

    BatchNorm's moving statistics are not averaged (they are not trainable; BasicSR averages parameters only):
    the averaged generator uses the raw model's statistics. Every replica computes the same average, so the
    first replica's value is kept (as for the step counters in `srgan.SRGAN`)."""

    def __init__(self, model: keras.Model, decay: float):
        super().__init__(name="weight_average")
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.averages = [tf.Variable(v.value, trainable=False, name="ema",
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                         for v in model.trainable_variables]

    def update(self, variables: list, applied: tf.Tensor) -> None:
        """One averaging step towards `variables` (the model's trainable variables) where `applied` (a bool
        scalar) is true; a refused update leaves the average where it was. Safe in replica context."""
        d = self.decay
        for a, v in zip(self.averages, variables, strict=True):
            a.assign(tf.where(applied, d * a + (1.0 - d) * tf.cast(v, a.dtype), a))

    def reset(self, variables: list) -> None:
        """Restarts the average at the values of `variables`."""
        for a, v in zip(self.averages, variables, strict=True):
            a.assign(v)

    def copy_to(self, variables: list) -> None:
        """Writes the averages into `variables` (a model built like the averaged one: same order)."""
        for a, v in zip(self.averages, variables, strict=True):
            v.assign(tf.cast(a, v.dtype))

    @contextlib.contextmanager
    def swapped_into(self, model: keras.Model) -> Iterator[keras.Model]:
        """Within the block `model` holds the averaged weights; its own weights are put back afterwards."""
        raw = [tf.identity(v) for v in model.trainable_variables]
        self.copy_to(model.trainable_variables)
        try:
            yield model
        finally:
            for v, value in zip(model.trainable_variables, raw, strict=True):
                v.assign(value)
