"""What the test files share: the benchmark data fixture, a tiny training config and batches, the train command
line, and a live MOS server.

The helpers are plain functions, imported by name (`from conftest import tiny_config`), because code that
tests run in a fresh interpreter imports them too (with tests/ on sys.path). Importing this module therefore
sets nothing up: the two logical CPUs are made in `pytest_configure`.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SRGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
# The train command line's overrides for the tiny model of `tiny_config`.
TINY = ["--config.model.num_blocks=2", "--config.model.filters=16", "--config.data.crop=32",
        "--config.train.batch_size=4", "--config.train.verbose=2"]


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # xdist's controller runs no test; importing TensorFlow there would delay the workers' start
    # Two logical CPUs for the MirroredStrategy tests (test_distribute.py): they must exist before TensorFlow
    # initialises its devices. Ops still run on /cpu:0 unless a test places them; both share the thread pools.
    import tensorflow as tf

    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                               [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark sets beside the checkout (../shared/data): Set5/ and Set14/ with HR/ and LR_bicubic_x4/."""
    if not (SHARED_DATA / "Set5" / "HR").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (set SRGAN_SHARED_DATA)")
    return SHARED_DATA


# --- training ---


def tiny_config(srresnet_steps: int = 30, srgan_steps: int = 4) -> ml_collections.ConfigDict:
    """Both phases on the sample photos with a 2-block, 16-filter G, 32-pixel crops and batches of 4; no
    evaluation, one validation image, logs and checkpoints every 10 steps, an MSE SRGAN phase decaying at
    step 2."""
    from srgan_tf.config import base_config

    c = base_config()
    c.data.source = "sample"
    c.model.num_blocks, c.model.filters, c.data.crop = 2, 16, 32
    c.data.val_max_images = 1
    c.train.batch_size, c.train.log_every, c.train.checkpoint_every = 4, 10, 10
    c.train.eval_every, c.train.verbose = 0, 0
    c.srresnet.steps, c.srresnet.learning_rate = srresnet_steps, 1e-3
    c.srgan.steps, c.srgan.content_loss, c.srgan.lr_decay_steps = srgan_steps, "mse", 2
    return c


def make_batch(seed: int = 0, n: int = 4, size: int = 32, scale: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR): smooth random HR images in [-1, 1] and their box-downscaled LR in [0, 1], a learnable mapping."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    freq, phase = rng.uniform(0.5, 2, (n, 1, 1, 3)), rng.uniform(0, 6, (n, 1, 1, 3))
    hr = (0.8 * np.sin(2 * np.pi * freq * (x + y)[None, ..., None] + phase)).astype(np.float32)
    lr = ((hr + 1) / 2).reshape(n, size // scale, scale, size // scale, scale, 3).mean(axis=(2, 4))
    return lr.astype(np.float32), hr


def train_cmd(workdir: Path, *extra: str) -> list[str]:
    """`python -m srgan_tf.train` into `workdir` with the tiny model's overrides, then `extra`."""
    return [sys.executable, "-m", "srgan_tf.train", f"--workdir={workdir}", *TINY, *extra]


def wait_for(predicate: Callable[[], bool], timeout: float = 240) -> bool:
    """Polls `predicate` every 0.2 s; whether it became true within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


# --- the MOS web app ---


def linked_folder(folder: Path, source: Path, names) -> Path:
    """`folder` holding symlinks to `source/name` for each name (the shared data is never copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(source / name)
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(study_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A `python -m srgan_tf.mos serve` subprocess on a free port, its output in `log`; yields its base URL and
    Popen once it answers, and kills it on the way out. Skips without the mos extra."""
    pytest.importorskip("fastapi", reason="the web app needs the mos extra (fastapi, uvicorn)")
    pytest.importorskip("uvicorn", reason="the web app needs the mos extra (fastapi, uvicorn)")
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "srgan_tf.mos", "serve", f"--study={study_dir}",
                                 f"--port={port}"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/api/study", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
