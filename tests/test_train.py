"""Training: the train_step, a whole run of both phases, and resuming after a kill."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY, make_batch, tiny_config, train_cmd, wait_for

from srgan_tf import cli, train
from srgan_tf.losses import pixel_mse
from srgan_tf.models import build_discriminator, build_generator
from srgan_tf.srgan import SRGAN


def _model(adversarial_weight):
    keras.utils.set_random_seed(0)
    g, d = build_generator(2, 16), build_discriminator(32)
    model = SRGAN(g, d, pixel_mse, adversarial_weight)
    model.compile(keras.optimizers.Adam(1e-3, beta_1=0.9), keras.optimizers.Adam(1e-3, beta_1=0.9))
    return model


def test_srresnet_step_trains_g_only_and_loss_falls():
    model = _model(0.0)
    d_before = [w.numpy().copy() for w in model.discriminator.weights]
    lr, hr = make_batch()
    ds = tf.data.Dataset.from_tensors((lr, hr)).repeat()
    history = model.fit(ds, epochs=4, steps_per_epoch=10, verbose=0).history
    assert set(history) == {"g_loss", "content_loss", "psnr"}
    assert history["content_loss"][-1] < 0.5 * history["content_loss"][0]
    for before, after in zip(d_before, model.discriminator.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert int(model.g_optimizer.iterations) == 40


def test_srgan_step_updates_d_then_g_and_reports_the_papers_metrics():
    model = _model(1e-3)
    lr, hr = make_batch(1)
    g_before = [w.numpy().copy() for w in model.generator.trainable_weights]
    d_before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    logs = model.train_on_batch(lr, hr, return_dict=True)
    assert {"g_loss", "d_loss", "content_loss", "adv_loss", "d_real", "d_fake", "psnr"} <= set(logs)
    assert 0 < logs["d_real"] < 1 and 0 < logs["d_fake"] < 1
    assert logs["g_loss"] == pytest.approx(logs["content_loss"] + 1e-3 * logs["adv_loss"], rel=1e-5)
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(g_before, model.generator.trainable_weights,
                                                              strict=True))
    assert any(not np.array_equal(b, a.numpy()) for b, a in zip(d_before, model.discriminator.trainable_weights,
                                                              strict=True))
    assert int(model.g_optimizer.iterations) == 1 and int(model.d_optimizer.iterations) == 1


def _scalars(tb_dir: Path, tag: str) -> dict[int, float]:
    out = {}
    for f in tb_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.tag == tag:
                    out[event.step] = float(tf.make_ndarray(v.tensor))
    return out


@pytest.mark.slow
def test_run_trains_both_phases_and_writes_everything(tmp_path):
    summary = train.run(tiny_config(srresnet_steps=40, srgan_steps=4), tmp_path)
    assert [p["phase"] for p in summary["phases"]] == ["srresnet", "srgan"]
    content = _scalars(tmp_path / "tensorboard", "srresnet/content_loss")
    assert sorted(content) == [10, 20, 30, 40]
    assert content[40] < content[10]
    assert _scalars(tmp_path / "tensorboard", "srgan/d_loss")
    assert "srgan/val_psnr" in {v.tag for f in (tmp_path / "tensorboard").glob("events*")
                                for e in tf.compat.v1.train.summary_iterator(str(f)) for v in e.summary.value}
    assert (tmp_path / "checkpoints" / "srresnet" / "ckpt-40.index").exists()
    assert (tmp_path / "checkpoints" / "srgan" / "ckpt-4.index").exists()
    assert (tmp_path / "samples" / "srgan_coffee.png").exists()
    g = keras.models.load_model(tmp_path / "generator.keras")  # safe mode
    assert g.output_shape == (None, None, None, 3)
    assert json.loads((tmp_path / "config.json").read_text())["srresnet"]["steps"] == 40
    assert json.loads((tmp_path / "summary.json").read_text())["phases"][0]["steps_run"] == 40

    again = train.run(tiny_config(srresnet_steps=40, srgan_steps=4), tmp_path)
    assert all(p.get("skipped") for p in again["phases"])  # a finished phase is not redone


@pytest.mark.slow
def test_killed_run_resumes_with_the_step_count_continuing(tmp_path):
    args = ["--config.phases=srresnet", "--config.srresnet.steps=400", "--config.train.checkpoint_every=5",
            "--config.train.log_every=5", "--config.train.eval_every=0", "--config.data.val_max_images=1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(train_cmd(tmp_path, *args), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "checkpoints" / "srresnet" / "checkpoint"
    wait_for(lambda: state.exists() and "ckpt-10" in state.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "no checkpoint was written before the kill"
    killed_at = int(tf.train.latest_checkpoint(str(state.parent)).rsplit("-", 1)[1])
    assert 10 <= killed_at < 400

    done = subprocess.run(train_cmd(tmp_path, *args[:1], "--config.srresnet.steps=" + str(killed_at + 10),
                                     *args[2:]), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {state.parent}/ckpt-{killed_at} at step {killed_at}" in done.stderr
    assert f"srresnet: steps {killed_at}..{killed_at + 10}" in done.stdout
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["phases"][0]["steps_run"] == 10  # continued, not restarted
    assert tf.train.latest_checkpoint(str(state.parent)).endswith(f"ckpt-{killed_at + 10}")


def _train_in_process(capsys, args: list[str]) -> tuple[int, list[str], str]:
    """train.command on `args` in this process: (exit status, its error lines, all of stderr)."""
    status = train.command(["srgan_tf.train", *args])
    err = capsys.readouterr().err
    return status, [line for line in err.splitlines() if line.startswith("error:")], err


@pytest.mark.parametrize("override,key", [
    ("--config.srresnet.steps=-5", "srresnet.steps"),
    ("--config.train.no_such_key=1", "train.no_such_key"),
    ("--config.data.crop=30", "data.crop"),
    # Checked by the builders that take them (srgan_tf.errors), named by config.section:
    ("--config.model.scale=16", "config.model.scale: must be one of"),  # 16 divides crop 32
    ("--config.model.bn_momentum=1.5", "config.model.bn_momentum: must be in [0, 1)"),
    ("--config.data.source=nope", "config.data.source: must be one of"),
    ("--config.data.degradation=lanczos", "config.data.degradation: must be one of"),
    ("--config.srgan.content_loss=vgg33", "config.srgan.content_loss: must be one of"),
])
def test_bad_config_is_a_one_line_error(tmp_path, capsys, override, key):
    status, errors, err = _train_in_process(capsys, train_cmd(tmp_path, override)[3:])
    assert status == cli.EXIT_BAD_FLAGS  # 2: a config error (srgan_tf.cli's convention)
    assert len(errors) == 1 and key in errors[0], err[-2000:]
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("args,status,message", [
    # A shipped config by name, its overrides applied: srresnet's steps, then a misspelt key.
    (["--config=srresnet", "--config.srresnet.steps=-5"], 2, "config.srresnet.steps: must be >= 0"),
    (["--config", "srresnet", "--config.train.no_such_key=1"], 2, "--config.train.no_such_key: no such config key"),
    (["--config=no_such_config"], 2, "--config=no_such_config: no shipped config of that name"),
    ([f"--config={REPO / 'configs' / 'srresnet.py'}", "stray"], 2, "unexpected arguments: stray"),
    (["--no_such_flag=1"], 2, "no_such_flag"),
    # The name resolved (source tfds), then bad input: a data folder that is not there is not a config error.
    (["--config=srresnet", "--config.data.source=folder", "--config.data.path=/nonexistent"], 1, "/nonexistent"),
])
def test_config_names_and_exit_statuses(tmp_path, capsys, monkeypatch, args, status, message):
    monkeypatch.chdir(tmp_path)  # names resolve to the installed configs, not to files beside the caller
    got, errors, err = _train_in_process(capsys, [f"--workdir={tmp_path}", *args])
    assert got == status and len(errors) == 1 and message in errors[0], err[-2000:]


def test_help_lists_the_flags(capsys):
    assert train.command(["srgan_tf.train", "--help"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m srgan_tf.train") and "--workdir" in out and "--config" in out


def test_missing_data_folder_is_a_one_line_error(tmp_path, capsys):
    status, errors, err = _train_in_process(
        capsys, train_cmd(tmp_path, "--config.data.source=folder", f"--config.data.path={tmp_path}/nope")[3:])
    assert status == cli.EXIT_BAD_INPUT  # 1: bad input, not a bad config
    assert errors == [f"error: config.data.path: folder {tmp_path}/nope does not exist"], err


@pytest.mark.slow
def test_command_line_error_has_no_traceback(tmp_path):
    """The real entry point, in a fresh interpreter: the status and the one line, nothing else of Python's."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run(train_cmd(tmp_path, "--config.train.no_such_key=1"), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == cli.EXIT_BAD_FLAGS and len(errors) == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_interpolate_command_exit_statuses(tmp_path, capsys):
    from srgan_tf.interpolate import main

    build_generator(2, 16).save(tmp_path / "a.keras")
    cases = [([f"--a={tmp_path}/a.keras", f"--out={tmp_path}/c.keras"], 2, "--b"),
             ([f"--a={tmp_path}/a.keras", f"--b={tmp_path}/a.keras", "--alpha=1.5", f"--out={tmp_path}/c.keras"], 2,
              "alpha"),
             ([f"--a={tmp_path}/a.keras", f"--b={tmp_path}/a.keras", f"--out={tmp_path}/c.h5"], 2, ".keras"),
             ([f"--a={tmp_path}/a.keras", f"--b={tmp_path}/nope.keras", f"--out={tmp_path}/c.keras"], 1, "nope.keras")]
    for args, status, message in cases:
        capsys.readouterr()
        assert main(["interpolate", *args]) == status, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert main(["interpolate", f"--a={tmp_path}/a.keras", f"--b={tmp_path}/a.keras",
                 f"--out={tmp_path}/new/folder/c.keras"]) == 0  # missing folders of --out are made
    assert (tmp_path / "new" / "folder" / "c.keras").is_file()


@pytest.mark.slow
def test_interpolation_blends_every_weight(tmp_path):
    from srgan_tf.interpolate import InterpolationError, interpolate

    keras.utils.set_random_seed(0)
    a, b = build_generator(2, 16), build_generator(2, 16)
    x = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
    for alpha in (0.0, 1.0):
        np.testing.assert_allclose(interpolate(a, b, alpha)(x), (a if alpha == 0 else b)(x), atol=1e-6)
    half = interpolate(a, b, 0.5)
    for wa, wb, wh in zip(a.get_weights(), b.get_weights(), half.get_weights(), strict=True):
        np.testing.assert_allclose(wh, (wa + wb) / 2, atol=1e-7)
    with pytest.raises(InterpolationError, match="architecture"):
        interpolate(a, build_generator(3, 16), 0.5)
    with pytest.raises(InterpolationError, match="alpha"):
        interpolate(a, b, 1.5)
    a.save(tmp_path / "a.keras")
    b.save(tmp_path / "b.keras")
    res = subprocess.run([sys.executable, "-m", "srgan_tf.interpolate", f"--a={tmp_path}/a.keras",
                          f"--b={tmp_path}/b.keras", "--alpha=0.25", f"--out={tmp_path}/c.keras"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-1000:]
    c = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(c.get_weights()[0], 0.75 * a.get_weights()[0] + 0.25 * b.get_weights()[0], atol=1e-6)


@pytest.mark.slow
def test_mixed_bfloat16_training_saves_a_float32_generator(tmp_path):
    c = tiny_config(srresnet_steps=10, srgan_steps=2)
    c.train.precision = "mixed_bfloat16"
    summary = train.run(c, tmp_path)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    assert all(np.isfinite(p["val_psnr"]) for p in summary["phases"])
    g = keras.models.load_model(tmp_path / "generator.keras")
    assert {layer.dtype_policy.name for layer in g.layers} == {"float32"}
    assert g(np.zeros((1, 8, 8, 3), np.float32)).dtype == "float32"


@pytest.mark.slow
def test_mixed_float16_scales_each_optimizers_loss_and_saves_a_float32_generator(tmp_path):
    c = tiny_config(srresnet_steps=2, srgan_steps=1)
    c.train.precision = "mixed_float16"
    assert isinstance(train._optimizer(c.srgan, c), keras.optimizers.LossScaleOptimizer)
    c.train.precision = "float32"
    assert not isinstance(train._optimizer(c.srgan, c), keras.optimizers.LossScaleOptimizer)
    c.train.precision = "mixed_float16"
    summary = train.run(c, tmp_path)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert [p["steps_run"] for p in summary["phases"]] == [2, 1]
    assert all(np.isfinite(p["val_psnr"]) for p in summary["phases"])
    g = keras.models.load_model(tmp_path / "generator.keras")
    assert {layer.dtype_policy.name for layer in g.layers} == {"float32"}


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_as_interrupted(tmp_path):
    args = ["--config.phases=srresnet", "--config.srresnet.steps=100000", "--config.train.checkpoint_every=1000",
            "--config.train.log_every=2", "--config.train.eval_every=0", "--config.data.val_max_images=1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(train_cmd(tmp_path, *args), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    events = tmp_path / "tensorboard"
    assert wait_for(lambda: events.exists() and _scalars(events, "srresnet/content_loss")), "training never started"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == train.EXIT_INTERRUPTED, stderr[-2000:]
    assert "interrupted: SIGTERM" in stderr
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "srresnet"))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= 2  # saved on the way out, not at a period


@pytest.mark.slow
def test_the_cpu_demo_pipeline_runs_end_to_end_in_miniature(tmp_path, shared_data):
    """configs/cpu_demo.py itself (full-size nets, bfloat16, both phases, evaluation) with the sizes shrunk."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpu_demo", REPO / "configs" / "cpu_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    demo = module.get_config()
    assert (demo.model.num_blocks, demo.model.filters, demo.data.crop, demo.train.batch_size) == (16, 64, 96, 16)
    assert demo.data.source == "folder" and demo.data.degradation == "matlab"

    set5 = shared_data / "Set5"
    cmd = train_cmd(tmp_path, "--config.srresnet.steps=3", "--config.srgan.steps=2", "--config.train.log_every=1",
                     "--config.train.eval_every=0", f"--config.evaluate_on={set5}",
                     f"--config.data.path={shared_data / 'train291'}", f"--config.data.val_dir={set5}")
    cmd.insert(3, "--config=configs/cpu_demo.py")  # absl wants the file before its overrides
    res = subprocess.run(
        cmd,
        cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    evaluation = json.loads((tmp_path / "summary.json").read_text())["evaluation"]["Set5"]
    assert set(evaluation) == {"bicubic", "srresnet", "srgan"}
    assert evaluation["bicubic"]["psnr"] == pytest.approx(28.42, abs=0.02)


@pytest.mark.slow
def test_srresnet_checkpoints_hold_no_discriminator_and_phase_2_starts_from_phase_1(tmp_path):
    """The SRResNet phase builds and saves G only; SRGAN's first step starts from SRResNet's final G."""
    c = tiny_config(srresnet_steps=10, srgan_steps=2)
    summary = train.run(c, tmp_path)
    phase1 = summary["phases"][0]["checkpoint"]
    names = [name for name, _ in tf.train.list_variables(phase1)]
    assert any(n.startswith("generator/") for n in names)
    assert not any(n.startswith(("discriminator/", "d_optimizer/")) for n in names)
    phase2 = [name for name, _ in tf.train.list_variables(summary["phases"][1]["checkpoint"])]
    assert any(n.startswith("discriminator/") for n in phase2)
    # Phase 2 restored phase 1's weights before its first step: its checkpoint-0 is not written, so compare
    # the restored G with phase 1's saved generator through the init path itself.
    keras.utils.set_random_seed(0)
    g = build_generator(2, 16)
    tf.train.Checkpoint(generator=g).restore(phase1).assert_existing_objects_matched().expect_partial()
    saved = keras.models.load_model(tmp_path / "generator_srresnet.keras")
    for a, b in zip(g.weights, saved.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_phase_2_refuses_an_initial_checkpoint_without_a_generator(tmp_path):
    """The init from phase 1 asserts that it restored G: a checkpoint of something else is an error."""
    keras.utils.set_random_seed(0)
    other = tf.train.Checkpoint(something=tf.Variable(1.0))
    path = other.save(str(tmp_path / "other" / "ckpt"))
    c = tiny_config(srresnet_steps=2, srgan_steps=2)
    c.phases = "srgan"
    g = build_generator(2, 16)
    with pytest.raises(AssertionError):
        train.train_phase("srgan", c, tmp_path / "w", g, None, lambda position: None, [],
                          tf.summary.create_noop_writer(), path)


def test_a_missing_vgg_weights_file_stops_before_the_first_phase(tmp_path):
    """SRGAN-VGG54 after SRResNet: the weights are checked at start, not after the whole SRResNet phase."""
    from srgan_tf.losses import WeightsUnavailableError

    c = tiny_config(srresnet_steps=5, srgan_steps=2)
    c.srgan.content_loss, c.loss.vgg_weights = "vgg54", str(tmp_path / "no_such_vgg19.h5")
    with pytest.raises(WeightsUnavailableError, match="no_such_vgg19.h5"):
        train.run(c, tmp_path / "w")
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize("layout", ["no HR folder", "empty HR folder"])
def test_an_unusable_validation_set_stops_before_the_first_step(tmp_path, layout):
    """Issue 18: the validation set is checked at start, before any model is built or checkpoint written."""
    from srgan_tf.data import DataError

    val = tmp_path / "val"
    (val / "HR" if layout == "empty HR folder" else val).mkdir(parents=True)
    c = tiny_config(srresnet_steps=2, srgan_steps=2)
    c.data.val_dir = str(val)
    with pytest.raises(DataError, match="HR"):
        train.run(c, tmp_path / "w")
    assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.parametrize("config", ["quickstart", "srgan"])
def test_an_unprepared_tfds_dataset_stops_training_before_the_first_step(tmp_path, capsys, config):
    """A TFDS source that is not prepared (and may not be downloaded) stops the run at start with the one line
    that says how to prepare it, exit 1, before any model, checkpoint or VGG lookup; the paper config too."""
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    workdir = tmp_path / "run"
    status, errors, err = _train_in_process(capsys, [
        f"--config={config}", f"--workdir={workdir}", *TINY, "--config.data.source=tfds",
        "--config.data.tfds_name=div2k/bicubic_x4", f"--config.data.tfds_data_dir={data_dir}",
        "--config.data.tfds_download=False"])
    assert status == cli.EXIT_BAD_INPUT, err[-2000:]
    assert len(errors) == 1 and "div2k/bicubic_x4" in errors[0] and "tfds build" in errors[0], err[-2000:]
    assert str(data_dir) in errors[0] and "VGG" not in err
    assert not (workdir / "checkpoints").exists() and not list(workdir.glob("*.keras"))
