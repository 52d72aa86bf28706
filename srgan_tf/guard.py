"""Updates that leave no trace when they are not finite: an optimizer wrapper that applies only finite updates,
and a snapshot that puts state (BatchNorm moving statistics) back after a refused step."""

from __future__ import annotations

import keras
import tensorflow as tf


class FiniteUpdates:
    """Wraps an optimizer, in the manner of keras' LossScaleOptimizer: `apply_gradients` applies an update only
    when its loss and every gradient are finite on every replica, and returns whether it applied it.

    Not an Optimizer subclass: it holds no state of its own, so the wrapped optimizer (`inner`) is what
    checkpoints hold, under the same keys as without the wrapper. A refused update moves nothing, the
    optimizer's `iterations` included. A LossScaleOptimizer gets every finite-loss update: it skips overflowing
    (scaled) gradients itself and lowers its scale, which also counts as not applied."""

    def __init__(self, optimizer: keras.optimizers.Optimizer):
        self.inner = optimizer

    @property
    def iterations(self) -> tf.Variable:
        return self.inner.iterations

    @property
    def learning_rate(self):
        return self.inner.learning_rate

    def build(self, variables: list) -> None:
        """Creates the optimizer's slots now: the first update runs inside a tf.cond, where it cannot."""
        if not self.inner.built:
            self.inner.build(variables)

    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        """The loss to differentiate on one replica: the replicas' gradients are summed (the optimizer all-reduces
        them), so each replica's mean loss is divided by their number; then scaled by a LossScaleOptimizer."""
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return self.inner.scale_loss(loss / replicas if replicas > 1 else loss)

    def apply_gradients(self, grads_and_vars, loss: tf.Tensor, when: tf.Tensor | None = None) -> tf.Tensor:
        """Applies the update if `loss` and the gradients are finite on every replica (and `when`, a bool scalar
        agreed by the replicas, holds); returns whether it was applied (a bool scalar, the same on every
        replica). Call in replica context, as Keras' train_step runs."""
        grads, variables = zip(*grads_and_vars, strict=True)
        before = tf.identity(self.inner.iterations)
        finite = tf.math.is_finite(tf.cast(loss, tf.float32))
        if not isinstance(self.inner, keras.optimizers.LossScaleOptimizer):
            finite = tf.reduce_all([finite] + [tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        if when is not None:
            finite = tf.logical_and(finite, when)
        # One replica's NaN poisons the summed gradients, so the replicas skip together: any one bad, all skip.
        bad = tf.cast(tf.logical_not(finite), tf.int32)
        replica = tf.distribute.get_replica_context()

        def apply(grads):
            self.inner.apply_gradients(zip(grads, variables, strict=True))

        if not tf.distribute.has_strategy() or tf.__internal__.distribute.strategy_supports_no_merge_call():
            if replica.num_replicas_in_sync > 1:
                finite = replica.all_reduce(tf.distribute.ReduceOp.SUM, bad) == 0
            tf.cond(finite, lambda: apply(grads), lambda: None)
        else:
            # apply_gradients synchronises replicas with merge_call, which tf.distribute forbids inside a tf.cond
            # in replica context: decide in cross-replica context (as keras' LossScaleOptimizer does).
            def decide(strategy, bad, grads):
                tf.cond(strategy.reduce(tf.distribute.ReduceOp.SUM, bad, axis=None) == 0,
                        lambda: strategy.extended.call_for_each_replica(apply, args=(grads,)), lambda: None)

            replica.merge_call(decide, args=(bad, list(grads)))
        return tf.identity(self.inner.iterations) > before  # read after the update (automatic control dependencies)


class Snapshot:
    """The values `variables` hold now, to be put back unless a step's updates were applied."""

    def __init__(self, variables: list):
        self.variables = variables
        self.values = [tf.identity(v) for v in variables]

    def restore_unless(self, applied: tf.Tensor) -> None:
        """Puts the saved values back where `applied` (a bool scalar) is false. A select, not a tf.cond: safe in
        replica context."""
        for v, value in zip(self.variables, self.values, strict=True):
            v.assign(tf.where(applied, v, value))
