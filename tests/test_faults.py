"""Training faults, injected: non-finite updates, divergence, damaged checkpoints, and exact resumption."""

import json
import logging
import os
import signal
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, make_batch, tiny_config, train_cmd, wait_for

from srgan_tf import data, train
from srgan_tf.losses import pixel_mse
from srgan_tf.models import build_discriminator, build_generator
from srgan_tf.srgan import SRGAN


@pytest.mark.parametrize(("adversarial_weight", "poisoned_input"), [(0.0, "lr"), (1e-3, "hr")])
def test_a_non_finite_update_is_not_applied(adversarial_weight, poisoned_input):
    """Weights, BatchNorm statistics (which every training-mode pass moves) and the step stay as they were."""
    keras.utils.set_random_seed(0)
    model = SRGAN(build_generator(2, 16), build_discriminator(32), pixel_mse, adversarial_weight)
    model.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    lr, hr = make_batch()
    model.train_on_batch(lr, hr)
    before = [w.numpy().copy() for w in model.generator.weights + model.discriminator.weights]

    bad_lr, bad_hr = lr.copy(), hr.copy()
    (bad_lr if poisoned_input == "lr" else bad_hr)[0, 3, 3, 0] = np.nan
    logs = model.train_on_batch(bad_lr, bad_hr, return_dict=True)
    after = [w.numpy() for w in model.generator.weights + model.discriminator.weights]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b, a)
    assert int(model.g_optimizer.iterations) == 1 and int(model.skipped_steps) == 1 and int(model.bad_streak) == 1
    assert all(np.isfinite(v) for v in logs.values())  # the refused step does not poison the epoch means

    model.train_on_batch(lr, hr)
    assert int(model.g_optimizer.iterations) == 2 and int(model.bad_streak) == 0 and int(model.skipped_steps) == 1


def test_a_refused_discriminator_update_refuses_the_generator_update_too():
    """D's update can fail alone (here its loss-scaled gradients overflow, as mixed_float16's first steps do):
    then G does not move either, so a step counted as skipped has moved nothing."""
    keras.utils.set_random_seed(0)
    model = SRGAN(build_generator(2, 16), build_discriminator(32), pixel_mse, 1e-3)
    overflowing = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=3e38)
    model.compile(keras.optimizers.Adam(1e-3), overflowing)
    before = [w.numpy().copy() for w in model.generator.weights + model.discriminator.weights]
    model.train_on_batch(*make_batch())
    after = [w.numpy() for w in model.generator.weights + model.discriminator.weights]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(b, a)
    assert int(model.skipped_steps) == 1 and int(model.g_optimizer.iterations) == 0
    assert float(overflowing.dynamic_scale) < 3e38  # D's optimizer did see the overflow


def _poison(monkeypatch, bad):
    """Makes data.train_batches put a NaN into every HR batch whose number satisfies `bad(k)`."""
    real = data.train_batches

    def poisoned(source, cfg, scale, batch_size, seed=0, start=0):
        ds = real(source, cfg, scale, batch_size, seed, start=start)

        def maybe_nan(k, pair):
            lr, hr = pair
            return lr, tf.where(bad(k), tf.fill(tf.shape(hr), float("nan")), hr)

        return tf.data.Dataset.zip(tf.data.Dataset.counter(start), ds).map(maybe_nan)

    monkeypatch.setattr(train.data, "train_batches", poisoned)


@pytest.mark.slow
def test_a_run_of_bad_updates_rolls_back_to_the_last_checkpoint_and_goes_on(tmp_path, monkeypatch, caplog):
    _poison(monkeypatch, lambda k: (k >= 12) & (k < 16))  # batches 12..15: four bad in a row
    c = tiny_config(srresnet_steps=20)
    c.phases, c.train.checkpoint_every, c.train.max_bad_steps = "srresnet", 5, 3
    with caplog.at_level(logging.INFO):
        summary = train.run(c, tmp_path)
    phase = summary["phases"][0]
    # Steps 0..11 applied; 12..14 refused -> back to ckpt-10; batch 15 refused; batches 16..25 -> steps 10..19.
    assert phase["rollbacks"] == 1 and phase["skipped_steps"] == 4
    assert phase["checkpoint"].endswith("ckpt-20")
    messages = [r.getMessage() for r in caplog.records]
    assert any("3 non-finite updates in a row at step 12: restored" in m and m.find("ckpt-10") > 0 for m in messages)
    assert sum("update not applied" in m for m in messages) == 4
    g = keras.models.load_model(tmp_path / "generator.keras")
    assert all(np.isfinite(w).all() for w in g.get_weights())


@pytest.mark.slow
def test_endless_divergence_stops_with_the_reason_after_the_allowed_rollbacks(tmp_path, monkeypatch):
    _poison(monkeypatch, lambda k: k >= 7)
    c = tiny_config(srresnet_steps=20)
    c.phases, c.train.checkpoint_every, c.train.max_bad_steps, c.train.max_rollbacks = "srresnet", 5, 2, 2
    with pytest.raises(train.DivergenceError, match=r"srresnet diverged: 2 non-finite updates in a row at step 5, "
                                             r"after 2 rollback\(s\); lower srresnet.learning_rate"):
        train.run(c, tmp_path)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "srresnet")))
    assert all(np.isfinite(reader.get_tensor(k)).all() for k, dtype in reader.get_variable_to_dtype_map().items()
               if dtype.is_floating)
    assert not (tmp_path / "generator.keras").exists()


@pytest.mark.slow
def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    c = tiny_config(srresnet_steps=10)
    c.phases, c.train.checkpoint_every = "srresnet", 5
    train.run(c, tmp_path)
    ckpts = tmp_path / "checkpoints" / "srresnet"
    newest = next(ckpts.glob("ckpt-10.data-*"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash half-way through the write

    c.srresnet.steps = 15
    with caplog.at_level(logging.INFO):
        summary = train.run(c, tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert any("ckpt-10 cannot be restored" in m for m in messages)
    assert any(f"resuming from {ckpts}/ckpt-5 at step 5" in m for m in messages)
    assert summary["phases"][0]["steps_run"] == 10


@pytest.mark.slow
def test_checkpoints_of_another_model_are_refused_with_what_to_do(tmp_path):
    c = tiny_config(srresnet_steps=2)
    c.phases = "srresnet"
    train.run(c, tmp_path)
    c.model.num_blocks, c.srresnet.steps = 3, 4
    with pytest.raises(train.CheckpointError, match="can be restored .*train in a new --workdir"):
        train.run(c, tmp_path)
    assert train.CheckpointError in train.USER_ERRORS  # so the command line prints it as one error line


def _final_weights(workdir: Path, name: str = "generator.keras") -> list[np.ndarray]:
    return keras.models.load_model(workdir / name).get_weights()


@pytest.mark.slow
def test_a_killed_deterministic_run_resumes_to_the_uninterrupted_runs_weights(tmp_path):
    """SIGKILL mid-phase, the same command again: with determinism on, the weights after the last step are
    those of a run that was never interrupted (optimizer state, schedule position, data position restored),
    and so is the weight average (train.ema_decay; generator.keras holds the average, *_raw.keras the raw G)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["--config.phases=srresnet", "--config.srresnet.steps=150", "--config.srresnet.lr_schedule=cosine",
            "--config.train.checkpoint_every=10", "--config.train.log_every=5", "--config.train.eval_every=0",
            "--config.data.val_max_images=1", "--config.train.deterministic=True", "--config.train.ema_decay=0.9"]
    whole = subprocess.run(train_cmd(tmp_path / "whole", *args), cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    proc = subprocess.Popen(train_cmd(tmp_path / "killed", *args), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "checkpoints" / "srresnet" / "checkpoint"
    wait_for(lambda: state.exists() and "ckpt-30" in state.read_text())
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    latest = tf.train.latest_checkpoint(str(state.parent))
    killed_at = int(latest.rsplit("-", 1)[1])
    resumed = subprocess.run(train_cmd(tmp_path / "killed", *args), cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # Checkpoints every 10 steps: the steps redone are those after ckpt-killed_at, fewer than 10.
    assert f"resuming from {latest} at step {killed_at}" in resumed.stderr and killed_at >= 30
    assert json.loads(resumed.stdout[resumed.stdout.index("{"):])["phases"][0]["steps_run"] == 150 - killed_at

    for a, b in zip(_final_weights(tmp_path / "whole"), _final_weights(tmp_path / "killed"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    raw = "generator_srresnet_raw.keras"
    for a, b in zip(_final_weights(tmp_path / "whole", raw), _final_weights(tmp_path / "killed", raw), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_an_unusable_workdir_is_a_one_line_error_at_start(tmp_path):
    """A workdir that cannot be created or written is refused before any training, with one line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    (tmp_path / "blocker").write_text("a file where the workdir's parent should be")
    res = subprocess.run(train_cmd(tmp_path / "blocker" / "run", "--config.srresnet.steps=2"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1  # bad input (srgan_tf.cli's convention)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "blocker" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "srresnet: steps" not in res.stdout
