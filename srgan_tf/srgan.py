"""The SRGAN training model: a keras.Model holding G and D whose train_step is the paper's Algorithm (k = 1)."""

from __future__ import annotations

import keras
import tensorflow as tf

from srgan_tf import losses
from srgan_tf.ema import WeightAverage
from srgan_tf.guard import FiniteUpdates, Snapshot


class SRGAN(keras.Model):
    """Trains generator G (and, when `adversarial_weight > 0`, discriminator D) with `fit()`.

    Data: batches `(lr, hr)`, lr float32 [N, h, w, 3] in [0, 1], hr float32 [N, s*h, s*w, 3] in [-1, 1].
    With `adversarial_weight == 0` this is the SRResNet phase (content loss only, D untouched). Otherwise each
    batch does one D update, then one G update against the updated D (k = 1 in Goodfellow et al.), with the
    generator loss l_X + adversarial_weight * l_Gen (eq. 3). Calling the model runs G.

    An update whose loss or gradients are not finite is not applied (guard.FiniteUpdates wraps both
    optimizers), and a step with a refused update leaves no trace: the optimizer's step counter, the
    BatchNorm moving statistics and the weight average do not move either. `skipped_steps` counts such
    batches and `bad_streak` the current run of them, for the callbacks that log it and roll back
    (callbacks.DivergenceGuard); `data_position` counts every batch drawn, so that a resumed run draws the
    next one. The metrics average the applied steps. With `ema` (an `ema.WeightAverage` of G), each applied
    G update also moves the average of G's weights; D always trains against the raw G.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model | None, content_loss,
                 adversarial_weight: float = 0.0, ema: WeightAverage | None = None,
                 data_position: tf.Variable | None = None, **kwargs):
        super().__init__(**kwargs)
        if adversarial_weight > 0 and discriminator is None:
            raise ValueError("an adversarial phase needs a discriminator")
        self.generator = generator
        self.ema = ema
        self.discriminator = discriminator
        self.content_loss = content_loss
        self.adversarial = adversarial_weight > 0
        self.adversarial_weight = float(adversarial_weight)
        names = ["g_loss", "content_loss", "psnr"]
        if self.adversarial:
            names += ["adv_loss", "d_loss", "d_real", "d_fake"]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.skipped_steps = counter("skipped_steps")
        self.bad_streak = counter("bad_streak")
        self.data_position = counter("data_position") if data_position is None else data_position

    def compile(self, g_optimizer: keras.optimizers.Optimizer,
                d_optimizer: keras.optimizers.Optimizer | None = None, **kwargs):
        """`g_optimizer` and `d_optimizer` are plain optimizers (or LossScaleOptimizers); each is wrapped in a
        guard.FiniteUpdates, which `g_optimizer` and `d_optimizer` then are."""
        super().compile(**kwargs)
        if self.adversarial and d_optimizer is None:
            raise ValueError("an adversarial phase needs a discriminator optimizer")
        self.g_optimizer = _guarded(g_optimizer)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer = None if d_optimizer is None else _guarded(d_optimizer)
        if self.adversarial:
            self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, lr, training=False):
        return self.generator(lr, training=training)

    def train_step(self, data):
        """One iteration of the paper's algorithm: a D update, then a G update against the updated D; returns
        the metrics. Every training-mode pass moves BatchNorm's moving statistics: they are put back when the
        step is refused, so that a NaN batch cannot poison the inference-mode generator."""
        lr, hr, _ = keras.utils.unpack_x_y_sample_weight(data)
        moving_statistics = Snapshot(self._moving_statistics())
        with tf.GradientTape() as g_tape:
            sr = self.generator(lr, training=True)
        d_applied, stats = self._d_step(hr, sr) if self.adversarial else (tf.constant(True), {})
        applied, g_stats = self._g_step(g_tape, hr, sr, after=d_applied)  # G's update only after D's
        if self.ema is not None:
            self.ema.update(self.generator.trainable_variables, applied)
        moving_statistics.restore_unless(applied)
        self._count(applied)
        return self._record(stats | g_stats, applied)

    def _d_step(self, hr: tf.Tensor, sr: tf.Tensor) -> tuple[tf.Tensor, dict]:
        """D's update on eq. 6's loss, HR images labelled real and G's (fixed) outputs fake."""
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(hr, training=True)
            fake_logits = self.discriminator(tf.stop_gradient(sr), training=True)
            d_loss = losses.discriminator_loss(real_logits, fake_logits)
            scaled = self.d_optimizer.scale_loss(d_loss)
        variables = self.discriminator.trainable_variables
        grads = tape.gradient(scaled, variables)
        applied = self.d_optimizer.apply_gradients(zip(grads, variables, strict=True), d_loss)
        return applied, {"d_loss": d_loss, "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                         "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}

    def _g_step(self, tape: tf.GradientTape, hr: tf.Tensor, sr: tf.Tensor, after: tf.Tensor) -> tuple[tf.Tensor, dict]:
        """G's update on l_X + adversarial_weight * l_Gen (eq. 3), l_Gen from D once `after` (D's update) ran;
        applied only where `after` says D's update was, so that a refused step moves neither network. `tape`
        recorded G's forward pass to `sr` and records the loss on top of it."""
        with tape:
            content = self.content_loss(hr, sr)
            g_loss, stats = content, {"content_loss": content}
            if self.adversarial:
                with tf.control_dependencies([after]):  # against the updated D; and replicas sync D before G
                    adv = losses.generator_adversarial_loss(self.discriminator(sr, training=True))
                g_loss = content + self.adversarial_weight * adv
                stats["adv_loss"] = adv
            scaled = self.g_optimizer.scale_loss(g_loss)
        variables = self.generator.trainable_variables
        grads = tape.gradient(scaled, variables)
        applied = self.g_optimizer.apply_gradients(zip(grads, variables, strict=True), g_loss, when=after)
        # RGB PSNR of the training batch on the [-1, 1] range: a cheap progress signal, not the benchmark metric.
        psnr = tf.reduce_mean(tf.image.psnr(hr, tf.clip_by_value(sr, -1.0, 1.0), max_val=2.0))
        return applied, stats | {"g_loss": g_loss, "psnr": psnr}

    def _moving_statistics(self) -> list:
        state = self.generator.non_trainable_variables
        return state + self.discriminator.non_trainable_variables if self.adversarial else state

    def _count(self, applied: tf.Tensor) -> None:
        self.data_position.assign_add(1)
        self.skipped_steps.assign_add(tf.cast(tf.logical_not(applied), tf.int64))
        self.bad_streak.assign(tf.where(applied, tf.constant(0, tf.int64), self.bad_streak + 1))

    def _record(self, stats: dict, applied: tf.Tensor) -> dict:
        """Adds the step's values to the metrics (a refused step with weight 0); returns the metrics' means."""
        weight = tf.cast(applied, tf.float32)
        for name, value in stats.items():
            value = tf.cast(value, tf.float32)
            self.trackers[name].update_state(tf.where(applied, value, 0.0), sample_weight=weight)
        return _for_keras_logs({name: t.result() for name, t in self.trackers.items()})

    def counters(self) -> dict[str, int]:
        """The step (G's optimizer iterations), the batches drawn, the refused steps and the current run of
        them, read from the device in one transfer (for the callbacks, once per batch)."""
        values = tf.stack([tf.cast(v, tf.int64) for v in (self.g_optimizer.iterations, self.data_position,
                                                          self.skipped_steps, self.bad_streak)]).numpy()
        return dict(zip(("step", "position", "skipped", "streak"), (int(v) for v in values), strict=True))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras workaround, keras-team/keras#20585: overrides a private method of Keras' TF trainer. Under a
        # strategy it draws one batch from the training iterator and averages it across replicas to build the
        # model, which fails under MultiWorkerMirroredStrategy. G and D are built functional models and SRGAN
        # adds no weights of its own: there is nothing to build.
        return


def counter(name: str) -> tf.Variable:
    """An int64 count that train_step advances. Every replica agrees on each step's outcome, so the first
    replica's count is the count."""
    return tf.Variable(0, dtype=tf.int64, trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def _guarded(optimizer: keras.optimizers.Optimizer | FiniteUpdates) -> FiniteUpdates:
    return optimizer if isinstance(optimizer, FiniteUpdates) else FiniteUpdates(optimizer)


def _for_keras_logs(results: dict) -> dict:
    # Keras workaround: Keras averages multi-worker logs with strategy.reduce("MEAN", v, axis=0) (keras 3.15,
    # reduce_per_replica in keras/src/backend/tensorflow/trainer.py), which needs rank >= 1; no upstream issue
    # found.
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results
