"""The training schedule across steps and phases: the step learning-rate decay, and phase 2 starting from the
generator that phase 1 saved."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from srgan_tf import train
from srgan_tf.srgan import SRGAN


def _adam_steps(optimizer: keras.optimizers.Optimizer, n: int) -> list[float]:
    """How far each of `n` updates moves a scalar under a constant gradient of 1. Adam's bias-corrected step
    is then the learning rate of that update itself: m_hat / sqrt(v_hat) = 1."""
    w = tf.Variable(0.0)
    moves = []
    for _ in range(n):
        before = float(w.numpy())
        optimizer.apply_gradients([(tf.constant(1.0), w)])
        moves.append(before - float(w.numpy()))
    return moves


def test_the_step_decay_happens_at_lr_decay_steps():
    """The paper's schedule: lr_decay_steps updates at learning_rate, then learning_rate * lr_decay_factor from
    the next update on, in the optimizer that training builds."""
    c = tiny_config()
    c.srgan.learning_rate, c.srgan.lr_decay_steps, c.srgan.lr_decay_factor = 1e-3, 5, 0.1
    moves = _adam_steps(train._optimizer(c.srgan, c), 8)
    np.testing.assert_allclose(moves, [1e-3] * 5 + [1e-4] * 3, rtol=1e-3)


def test_without_lr_decay_steps_the_rate_stays():
    c = tiny_config()
    c.srgan.learning_rate, c.srgan.lr_decay_steps = 1e-3, 0
    np.testing.assert_allclose(_adam_steps(train._optimizer(c.srgan, c), 4), [1e-3] * 4, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("phase_1_earlier", [False, True], ids=["one run", "phase 1 in an earlier run"])
def test_phase_2_starts_from_the_generator_phase_1_saved(tmp_path, monkeypatch, phase_1_earlier):
    """The adversarial phase's G, as its first fit() gets it, is generator_srresnet.keras weight for weight.
    With a weight average, phase 1 saves the average, which differs from its raw G: starting from the raw
    weights fails this test."""
    starts = []
    fit = SRGAN.fit

    def recording_fit(self, *args, **kwargs):
        if getattr(self, "discriminator", None) is not None and not starts:
            starts.append(self.generator.get_weights())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(SRGAN, "fit", recording_fit)
    c = tiny_config(srresnet_steps=3, srgan_steps=1)
    c.train.ema_decay = 0.5
    if phase_1_earlier:
        c.phases = "srresnet"
        train.run(c, tmp_path)
        c.phases = "srresnet,srgan"
    summary = train.run(c, tmp_path)
    assert [p.get("skipped", False) for p in summary["phases"]] == [phase_1_earlier, False]
    assert len(starts) == 1, "the SRGAN phase never started"
    saved = keras.models.load_model(tmp_path / "generator_srresnet.keras").get_weights()
    raw = keras.models.load_model(tmp_path / "generator_srresnet_raw.keras").get_weights()
    assert any(not np.array_equal(s, r) for s, r in zip(saved, raw, strict=True))  # the check can tell them apart
    for got, want in zip(starts[0], saved, strict=True):
        np.testing.assert_array_equal(got, want)
