"""The generator's weight average (train.ema_decay): its arithmetic, refused steps, checkpoints and outputs."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_batch, tiny_config

from srgan_tf import train
from srgan_tf.distribute import distribute_batches
from srgan_tf.ema import WeightAverage
from srgan_tf.losses import pixel_mse
from srgan_tf.models import build_discriminator, build_generator
from srgan_tf.srgan import SRGAN


def _ema_model(adversarial_weight, decay=0.9):
    keras.utils.set_random_seed(0)
    g = build_generator(2, 16)
    ema = WeightAverage(g, decay)
    adversarial = adversarial_weight > 0  # D only where it trains, as train.train_phase builds it
    model = SRGAN(g, build_discriminator(32) if adversarial else None, pixel_mse, adversarial_weight, ema=ema)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3) if adversarial else None)
    return model, ema


def test_the_average_equals_the_closed_form_over_the_applied_steps():
    """a_T = d^T w_0 + sum_t (1 - d) d^(T-t) w_t over the weights after each applied update; the NaN batch
    (refused) moves neither the weights nor the average. On the SRResNet step: the average moves after G's update
    alike in both phases, and tracing the adversarial step would triple the test's time (the slow test of a run
    with EMA covers the SRGAN phase)."""
    decay = 0.9
    model, ema = _ema_model(0.0, decay)
    g = model.generator
    history = [[v.numpy().copy() for v in g.trainable_variables]]
    lr, hr = make_batch()
    bad_hr = hr.copy()
    bad_hr[0, 0, 0, 0] = np.nan
    for k in range(5):
        model.train_on_batch(lr if k != 2 else lr, hr if k != 2 else bad_hr)
        if k != 2:
            history.append([v.numpy().copy() for v in g.trainable_variables])
    assert int(model.skipped_steps) == 1 and len(history) == 5
    steps = len(history) - 1
    for i, average in enumerate(ema.averages):
        expected = decay ** steps * history[0][i]
        for t in range(1, steps + 1):
            expected = expected + (1 - decay) * decay ** (steps - t) * history[t][i]
        np.testing.assert_allclose(average.numpy(), expected, rtol=1e-5, atol=1e-6)
    # The average differs from the raw weights (otherwise the test above would prove nothing).
    gaps = [np.abs(a.numpy() - v.numpy()).max() for a, v in zip(ema.averages, g.trainable_variables, strict=True)]
    assert max(gaps) > 1e-5


def test_swapped_into_puts_the_raw_weights_back():
    model, ema = _ema_model(0.0)
    lr, hr = make_batch()
    for _ in range(3):
        model.train_on_batch(lr, hr)
    g = model.generator
    raw = [v.numpy().copy() for v in g.trainable_variables]
    with ema.swapped_into(g):
        for a, v in zip(ema.averages, g.trainable_variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), v.numpy())
    for r, v in zip(raw, g.trainable_variables, strict=True):
        np.testing.assert_array_equal(r, v.numpy())


def _mirrored_against_one_device() -> float:
    """The largest difference between the average's movement under MirroredStrategy (two logical CPUs) and on
    one device, relative to the largest movement; fed as train.py feeds it. SGD, as in test_distribute, since
    Adam would magnify the rounding of synchronised BN."""
    batches = [make_batch(seed) for seed in range(3)]

    def moved(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            g = build_generator(2, 16, synchronized_bn=True)
            ema = WeightAverage(g, 0.5)
            model = SRGAN(g, build_discriminator(32, synchronized_bn=True), pixel_mse, 1e-3, ema=ema)
            model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1))
        before = [a.numpy() for a in ema.averages]

        def make_global():
            return tf.data.Dataset.from_tensor_slices(tuple(np.stack(x) for x in zip(*batches, strict=True)))

        model.fit(distribute_batches(strategy, make_global), epochs=1, steps_per_epoch=3, verbose=0)
        return [a.numpy() - b for a, b in zip(ema.averages, before, strict=True)]

    one = moved(tf.distribute.get_strategy())
    two = moved(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    largest = max(np.abs(a).max() for a in one)
    assert largest > 1e-3
    return float(max(np.abs(a - b).max() for a, b in zip(one, two, strict=True)) / largest)


@pytest.mark.slow
def test_mirrored_average_equals_the_single_device_average():
    """Run in a fresh process: MirroredStrategy's collective keys restart with every strategy, and after the
    other mirrored tests of a worker process a new one met their cached collectives (shape mismatch)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import tensorflow as tf; "
            "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0], "
            "[tf.config.LogicalDeviceConfiguration()] * 2); import test_ema; "
            "print('difference', test_ema._mirrored_against_one_device())")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split("difference")[-1]) < 2e-3


@pytest.mark.slow
def test_a_run_with_ema_saves_the_average_and_the_raw_weights(tmp_path):
    """generator_<phase>.keras holds the average (read back from the checkpoint), *_raw.keras the raw G, and
    phase 2 starts from phase 1's average."""
    c = tiny_config(srresnet_steps=12, srgan_steps=4)
    c.train.ema_decay = 0.5
    summary = train.run(c, tmp_path)
    keras.utils.set_random_seed(0)
    g = build_generator(2, 16)
    ema = WeightAverage(g, 0.5)
    tf.train.Checkpoint(generator=g, ema=ema).restore(summary["phases"][1]["checkpoint"]).expect_partial()
    saved = keras.models.load_model(tmp_path / "generator_srgan.keras")
    raw = keras.models.load_model(tmp_path / "generator_srgan_raw.keras")
    for a, s, r, v in zip(ema.averages, saved.trainable_variables, raw.trainable_variables, g.trainable_variables,
                          strict=True):
        np.testing.assert_array_equal(a.numpy(), s.numpy())
        np.testing.assert_array_equal(v.numpy(), r.numpy())
    final = keras.models.load_model(tmp_path / "generator.keras")
    for s, f in zip(saved.weights, final.weights, strict=True):
        np.testing.assert_array_equal(s.numpy(), f.numpy())
