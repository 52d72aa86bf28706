"""tf.distribute training against the single-device run on the same global batches: mirrored over the two
logical CPUs of conftest.py (train steps, fed as train.py feeds them), multi_worker as a whole run of two
worker processes on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, make_batch, tiny_config

from srgan_tf import report, train
from srgan_tf.distribute import DistributeError, distribute_batches, make_strategy
from srgan_tf.losses import pixel_mse
from srgan_tf.models import build_discriminator, build_generator
from srgan_tf.srgan import SRGAN

CPUS = "/cpu:0,/cpu:1"


def _mirrored():
    c = tiny_config()
    c.distribute, c.devices = "mirrored", CPUS
    return make_strategy(c)


def _updates(strategy, adversarial_weight, batches, synchronized_bn=True):
    """SGD steps (SGD, unlike Adam, shows a wrongly scaled gradient) of the tiny G and D, one per batch:
    the model and how far each weight (and BatchNorm statistic) moved."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        g = build_generator(2, 16, synchronized_bn=synchronized_bn)
        d = build_discriminator(32, synchronized_bn=synchronized_bn)
        model = SRGAN(g, d, pixel_mse, adversarial_weight)
        model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1))
    before = [w.numpy() for w in g.weights + d.weights]

    def make_global():
        return tf.data.Dataset.from_tensor_slices(tuple(np.stack(x) for x in zip(*batches, strict=True)))

    # The per-replica slices of each global batch, as train.py makes them.
    model.fit(distribute_batches(strategy, make_global), epochs=1, steps_per_epoch=len(batches),
              verbose=0)
    return model, [w.numpy() - w0 for w, w0 in zip(g.weights + d.weights, before, strict=True)]


def _difference(one, two):
    """The largest difference between two runs' updates, relative to the largest update. (Per weight would
    not do: a bias before BatchNorm has no true gradient, only rounding noise.)"""
    return max(np.abs(a - b).max() for a, b in zip(one, two, strict=True)) / max(np.abs(a).max() for a in one)


@pytest.mark.slow
def test_mirrored_steps_equal_the_single_device_steps():
    """Both phases' updates at once: the adversarial step updates D, then G."""
    batches = [make_batch(seed) for seed in range(2)]
    _, one = _updates(tf.distribute.get_strategy(), 1e-3, batches)
    _, two = _updates(_mirrored(), 1e-3, batches)
    # Synchronised BatchNorm computes the variance as E[x^2] - E[x]^2, which rounds differently in float32:
    # measured 4e-4, and the same against one device with synchronized=True.
    assert _difference(one, two) < 2e-3


@pytest.mark.slow
def test_unsynchronized_batch_norm_would_differ():
    """The check above can fail: per-replica BatchNorm statistics move the weights measurably."""
    batches = [make_batch(seed) for seed in range(2)]
    _, one = _updates(tf.distribute.get_strategy(), 0.0, batches)
    _, two = _updates(_mirrored(), 0.0, batches, synchronized_bn=False)
    assert _difference(one, two) > 0.05  # measured 0.17 and 0.29


@pytest.mark.slow
def test_a_batch_bad_on_one_replica_is_skipped_by_all():
    good, bad = make_batch(0), make_batch(1)
    bad[0][2:] = np.nan  # the second replica's half of the batch only
    model, updates = _updates(_mirrored(), 0.0, [good, bad, make_batch(2)])
    assert int(model.skipped_steps.numpy()) == 1 and int(model.g_optimizer.iterations.numpy()) == 2
    assert all(np.isfinite(u).all() for u in updates)


def test_unknown_devices_and_missing_tf_config_are_one_line_errors(monkeypatch):
    c = tiny_config()
    c.distribute, c.devices = "mirrored", "/cpu:0,/gpu:3"
    with pytest.raises(DistributeError, match="/gpu:3 not found"):
        make_strategy(c)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    c.distribute = "multi_worker"
    with pytest.raises(DistributeError, match="TF_CONFIG"):
        make_strategy(c)


def test_a_batch_that_does_not_split_over_the_replicas_stops_the_run_before_anything_is_built(tmp_path):
    c = tiny_config()
    c.distribute, c.devices, c.train.batch_size = "mirrored", CPUS, 3
    with pytest.raises(DistributeError, match="batch_size: 3 does not split evenly over 2 replicas"):
        train.run(c, tmp_path)
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "checkpoints").exists()


# ---------------------------------------------------------------- whole runs: losses step by step


def _run_config(**overrides):
    """The SRGAN phase alone (from random weights): both optimizers, a few steps."""
    c = tiny_config(srresnet_steps=0, srgan_steps=3)
    c.phases = "srgan"
    c.train.log_every, c.train.checkpoint_every = 1, 2
    for key, value in overrides.items():
        c[key] = value
    return c


def _losses(workdir):
    scalars = report.read_scalars(workdir / "tensorboard")
    return {tag: [v for _, v in sorted(scalars[tag].items())] for tag in ("srgan/g_loss", "srgan/d_loss")}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("single")
    train.run(_run_config(), workdir)
    return _losses(workdir)


def _assert_same_losses(got, want):
    for tag, values in want.items():
        assert len(got[tag]) == len(values), tag
        np.testing.assert_allclose(got[tag], values, rtol=2e-3, err_msg=tag)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_run_on_two_local_processes_logs_the_single_device_losses(single_run, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    config_file = tmp_path / "multi_worker_config.py"
    config_file.write_text(f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\n"
                           "from test_distribute import _run_config\n\n\n"
                           "def get_config():\n    return _run_config(distribute='multi_worker')\n")
    workdir = tmp_path / "run"
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        cmd = [sys.executable, "-m", "srgan_tf.train", f"--config={config_file}", f"--workdir={workdir}"]
        workers.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True))
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out[-3000:]
    _assert_same_losses(_losses(workdir), single_run)
    assert (workdir / "generator.keras").is_file() and (workdir / "checkpoints" / "srgan").is_dir()
    worker = workdir / "worker-1"  # the other worker keeps its own checkpoints, and writes nothing else
    assert (worker / "checkpoints" / "srgan").is_dir() and not list(worker.glob("*.keras"))


def test_distributed_batches_need_a_static_batch_size():
    ragged = tf.data.Dataset.from_tensor_slices((np.zeros((6, 4, 4, 3), np.float32),) * 2).batch(4)
    with pytest.raises(ValueError, match="static batch size"):
        distribute_batches(_mirrored(), lambda: ragged)
