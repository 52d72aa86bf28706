"""The SRGAN training model: a keras.Model holding G and D whose train_step is the paper's Algorithm (k = 1)."""

from __future__ import annotations

import keras
import tensorflow as tf

from srgan_tf import losses
from srgan_tf.ema import WeightAverage


class SRGAN(keras.Model):
    """Trains generator G (and, when `adversarial_weight > 0`, discriminator D) with `fit()`.

    Data: batches `(lr, hr)`, lr float32 [N, h, w, 3] in [0, 1], hr float32 [N, s*h, s*w, 3] in [-1, 1].
    With `adversarial_weight == 0` this is the SRResNet phase (content loss only, D untouched). Otherwise each
    batch does one D update, then one G update against the updated D (k = 1 in Goodfellow et al.), with the
    generator loss l_X + adversarial_weight * l_Gen (eq. 3). Calling the model runs G.

    An update whose loss or gradients are not finite is not applied (the optimizer's step counter and the
    BatchNorm moving statistics do not move either); `skipped_steps` counts such batches and `bad_streak`
    the current run of them, for the callbacks that log it and roll back (callbacks.DivergenceGuard). The
    metrics average the applied steps. With `ema` (an `ema.WeightAverage` of G), each applied G update also
    moves the average of G's weights; D always trains against the raw G.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model | None, content_loss,
                 adversarial_weight: float = 0.0, ema: WeightAverage | None = None, **kwargs):
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
        # Every replica agrees on each step's outcome, so the first replica's count is the count.
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps", aggregation=first)
        self.bad_streak = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_streak", aggregation=first)

    def compile(self, g_optimizer: keras.optimizers.Optimizer,
                d_optimizer: keras.optimizers.Optimizer | None = None, **kwargs):
        super().compile(**kwargs)
        if self.adversarial and d_optimizer is None:
            raise ValueError("an adversarial phase needs a discriminator optimizer")
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        # Built here, not on the first update: that update runs inside tf.cond (see _apply_if_finite).
        if not g_optimizer.built:
            g_optimizer.build(self.generator.trainable_variables)
        if self.adversarial and not d_optimizer.built:
            d_optimizer.build(self.discriminator.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # G and D are built functional models and SRGAN adds no weights of its own, so there is nothing to
        # build. Under a strategy, Keras' version draws one batch from the training iterator and averages it
        # across replicas, which fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        return

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, lr, training=False):
        return self.generator(lr, training=training)

    def train_step(self, data):
        lr, hr, _ = keras.utils.unpack_x_y_sample_weight(data)
        stats = {}
        # BatchNorm moving statistics change in every training-mode forward pass: kept to be put back if
        # this step is refused, so that a NaN batch cannot poison the inference-mode generator.
        state = self.generator.non_trainable_variables
        if self.adversarial:
            state = state + self.discriminator.non_trainable_variables
        saved = [tf.identity(v) for v in state]
        with tf.GradientTape() as g_tape:
            sr = self.generator(lr, training=True)
            if self.adversarial:
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    real_logits = self.discriminator(hr, training=True)
                    fake_logits = self.discriminator(tf.stop_gradient(sr), training=True)
                    d_loss = losses.discriminator_loss(real_logits, fake_logits)
                    scaled_d_loss = _for_gradients(self.d_optimizer, d_loss)
                d_vars = self.discriminator.trainable_variables
                d_ok = _apply_if_finite(self.d_optimizer, d_loss, d_tape.gradient(scaled_d_loss, d_vars), d_vars)
                stats |= {"d_loss": d_loss, "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
                          "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits))}
            content = self.content_loss(hr, sr)
            g_loss = content
            if self.adversarial:
                with tf.control_dependencies([d_ok]):  # against the updated D; and replicas sync D before G
                    adv = losses.generator_adversarial_loss(self.discriminator(sr, training=True))
                g_loss = content + self.adversarial_weight * adv
                stats["adv_loss"] = adv
            scaled_g_loss = _for_gradients(self.g_optimizer, g_loss)
        g_vars = self.generator.trainable_variables
        ok = _apply_if_finite(self.g_optimizer, g_loss, g_tape.gradient(scaled_g_loss, g_vars), g_vars)
        if self.ema is not None:
            self.ema.update(g_vars, ok)
        if self.adversarial:
            ok = tf.logical_and(ok, d_ok)

        for v, value in zip(state, saved, strict=True):  # a select, not a tf.cond: safe in replica context
            v.assign(tf.where(ok, v, value))
        self.skipped_steps.assign_add(tf.cast(tf.logical_not(ok), tf.int64))
        self.bad_streak.assign(tf.where(ok, tf.constant(0, tf.int64), self.bad_streak + 1))

        # RGB PSNR of the training batch on the [-1, 1] range: a cheap progress signal, not the benchmark metric.
        stats |= {"g_loss": g_loss, "content_loss": content,
                  "psnr": tf.reduce_mean(tf.image.psnr(hr, tf.clip_by_value(sr, -1.0, 1.0), max_val=2.0))}
        weight = tf.cast(ok, tf.float32)
        for name, value in stats.items():
            value = tf.cast(value, tf.float32)
            self.trackers[name].update_state(tf.where(ok, value, 0.0), sample_weight=weight)
        results = {name: t.result() for name, t in self.trackers.items()}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras averages multi-worker logs with reduce(axis=0), which needs rank >= 1 (keras 3.15).
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results


def _for_gradients(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
    """The loss to differentiate on one replica: replicas' gradients are summed (the optimizer all-reduces
    them), so each replica's mean loss is divided by their number; then scaled by a LossScaleOptimizer."""
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return optimizer.scale_loss(loss / replicas if replicas > 1 else loss)


def _apply_if_finite(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor, grads: list[tf.Tensor],
                     variables: list) -> tf.Tensor:
    """Applies `grads` when `loss` and every gradient are finite on every replica; returns whether the
    update was applied (a bool scalar, the same on all replicas). A LossScaleOptimizer gets every finite-loss
    step: it skips overflowing (scaled) gradients itself and lowers its scale; that also counts as not applied."""
    before = tf.identity(optimizer.iterations)
    finite = tf.math.is_finite(tf.cast(loss, tf.float32))
    if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        finite = tf.reduce_all([finite] + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    replica = tf.distribute.get_replica_context()
    # One replica's NaN poisons the summed gradients, so the replicas skip together: any one bad, all skip.
    bad = tf.cast(tf.logical_not(finite), tf.int32)

    def apply():
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    if not tf.distribute.has_strategy() or tf.__internal__.distribute.strategy_supports_no_merge_call():
        if replica.num_replicas_in_sync > 1:
            finite = replica.all_reduce(tf.distribute.ReduceOp.SUM, bad) == 0
        tf.cond(finite, apply, lambda: None)
    else:
        # apply_gradients synchronises replicas with merge_call, which tf.distribute forbids inside a tf.cond
        # in replica context: decide in cross-replica context (as keras' LossScaleOptimizer does).
        def decide(strategy, bad, grads):
            def apply_on_each_replica():
                strategy.extended.call_for_each_replica(
                    lambda g: optimizer.apply_gradients(zip(g, variables, strict=True)), args=(grads,))

            tf.cond(strategy.reduce(tf.distribute.ReduceOp.SUM, bad, axis=None) == 0, apply_on_each_replica,
                    lambda: None)

        replica.merge_call(decide, args=(bad, grads))
    return tf.identity(optimizer.iterations) > before  # read after the update (automatic control dependencies)
