"""guard.FiniteUpdates and guard.Snapshot on their own: which updates are applied, and what is put back."""

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.guard import FiniteUpdates, Snapshot


def _stepper(optimizer):
    v = tf.Variable([1.0, 2.0])
    guarded = FiniteUpdates(optimizer)
    guarded.build([v])

    @tf.function
    def step(grad, loss):
        return guarded.apply_gradients([(tf.constant(grad), v)], tf.constant(loss))

    return v, guarded, step


def test_only_finite_updates_are_applied_and_the_answer_says_which():
    v, guarded, step = _stepper(keras.optimizers.SGD(0.5))
    assert bool(step([1.0, 1.0], 1.0))
    np.testing.assert_allclose(v.numpy(), [0.5, 1.5])
    assert not bool(step([np.nan, 1.0], 1.0))  # a gradient
    assert not bool(step([1.0, 1.0], np.inf))  # the loss
    np.testing.assert_allclose(v.numpy(), [0.5, 1.5])
    assert int(guarded.iterations) == 1


def test_a_loss_scale_optimizer_skips_overflowing_gradients_itself_and_that_counts_as_not_applied():
    v, guarded, step = _stepper(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5)))
    scale = float(guarded.inner.dynamic_scale)
    assert not bool(step([np.inf, 1.0], 1.0))
    assert float(guarded.inner.dynamic_scale) == scale / 2  # its own reaction to an overflow
    np.testing.assert_allclose(v.numpy(), [1.0, 2.0])
    assert not bool(step([1.0, 1.0], np.nan))  # a non-finite loss never reaches it: the scale stays
    assert float(guarded.inner.dynamic_scale) == scale / 2
    assert bool(step([scale, scale], 1.0)) and int(guarded.iterations) == 1


def test_a_snapshot_is_put_back_only_when_not_applied():
    v = tf.Variable([1.0, 2.0])
    kept = Snapshot([v])
    v.assign([3.0, 4.0])
    kept.restore_unless(tf.constant(True))
    np.testing.assert_array_equal(v.numpy(), [3.0, 4.0])
    kept.restore_unless(tf.constant(False))
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
