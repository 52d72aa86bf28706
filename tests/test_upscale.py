"""Tiled upscaling (srgan_tf.tiling) and the `python -m srgan_tf.upscale` command line."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from srgan_tf.export.savedmodel import export_savedmodel
from srgan_tf.export.tflite import export_tflite
from srgan_tf.images import load_image, save_image
from srgan_tf.loader import load_upscaler
from srgan_tf.models import build_generator
from srgan_tf.tiling import TilingError, margin_for, plan_tiles, receptive_radius, upscale_tiled
from srgan_tf.upscale import main

REPO = Path(__file__).resolve().parents[1]


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour patterns plus noise: every pixel matters, like a photograph."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 128 + 90 * np.sin(xx[..., None] / 6.0 + np.arange(3)) * np.cos(yy[..., None] / 9.0)
    return np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small generator with the bicubic skip as .keras, SavedModel (pixel limit 64x64) and fp32 TFLite.

    (test_export covers the paper's tanh generator; this one's skip must tile and convert as well.)"""
    root = tmp_path_factory.mktemp("models")
    generator = build_generator(2, 16, bicubic_skip=True)
    out = generator.get_layer("conv_out")  # as if trained: the trunk contributes
    out.kernel.assign(tf.random.normal(out.kernel.shape, stddev=0.02, seed=4))
    generator.save(root / "g.keras")
    radius = receptive_radius(generator)[0]
    meta = {"scale": 4, "receptive_radius": radius}
    saved = export_savedmodel(generator, root / "serving", "srgan", 1, meta, max_pixels=64 * 64)
    (fp32,) = export_tflite(generator, root, "srgan", ("fp32",), 4, meta, log=lambda _: None).values()
    return {"root": root, "keras": str(root / "g.keras"), "savedmodel": str(saved), "tflite": fp32["path"],
            "model": generator, "radius": radius}


# ---------------------------------------------------------------- receptive field and tiles


def test_default_generator_receptive_radius():
    # 9x9 input conv: 4; 16 residual blocks of two 3x3 convs: 32; conv_mid: 1; first x2 conv (LR side): 1;
    # the second x2 conv and the 9x9 output conv act on 2x and 4x pixels: at most 2 LR pixels together.
    assert receptive_radius(build_generator()) == (40, 4)


@pytest.mark.parametrize(("blocks", "scale", "skip"), [(1, 4, False), (1, 2, False), (2, 8, False), (1, 4, True)])
def test_receptive_radius_is_exact(blocks, scale, skip):
    """The computed radius is the farthest LR pixel any output pixel's gradient reaches."""
    keras.utils.set_random_seed(0)
    model = build_generator(blocks, 4, scale=scale, bicubic_skip=skip)
    out = model.get_layer("conv_out")  # zero-initialised with the skip: give the trunk a gradient
    # Small weights: with unit-variance ones the tanh saturated for some initialisations (a CI run), and a
    # saturated tanh has an exactly zero gradient, so no pixel seemed to reach the output.
    out.kernel.assign(tf.random.normal(out.kernel.shape, stddev=0.01, seed=2))
    radius, got_scale = receptive_radius(model)
    assert got_scale == scale
    centre = radius + 3
    x = tf.Variable(tf.random.uniform([1, 2 * centre + 1, 2 * centre + 1, 3], seed=1))
    reach = 0
    for phase in range(scale):
        with tf.GradientTape() as tape:
            y = model(x, training=False)[0, scale * centre + phase, scale * centre + phase, 0]
        rows, cols = np.nonzero(np.abs(tape.gradient(y, x).numpy()[0]).sum(-1))
        reach = max(reach, np.abs(rows - centre).max(), np.abs(cols - centre).max())
    assert reach == radius


def test_receptive_radius_refuses_unknown_layers():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.MaxPooling2D()(keras.layers.Conv2D(3, 3, padding="same")(inp)))
    with pytest.raises(TilingError, match="MaxPooling2D"):
        receptive_radius(model)


@pytest.mark.parametrize(("h", "w", "tile", "margin"), [(50, 37, 16, 5), (8, 8, 16, 40), (33, 1, 4, 0)])
def test_tiles_cover_every_pixel_once(h, w, tile, margin):
    cover = np.zeros((h, w), int)
    for t in plan_tiles(h, w, tile, margin):
        top, bottom, left, right = t.core
        cover[top:bottom, left:right] += 1
        wt, wb, wl, wr = t.window
        assert (wt, wl) == (max(top - margin, 0), max(left - margin, 0))
        assert (wb, wr) == (min(bottom + margin, h), min(right + margin, w))
    assert (cover == 1).all()


def test_tiled_result_equals_whole_image_result(models):
    up = load_upscaler(models["keras"])
    image = _photo(45, 38)
    whole = up(image)
    tiled = upscale_tiled(up, image, 4, models["radius"], tile=16)
    assert tiled.shape == whole.shape == (180, 152, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    # The margin is what makes it exact: without it, tile seams differ from the whole-image result.
    seams = upscale_tiled(up, image, 4, margin=0, tile=16)
    assert np.abs(seams.astype(int) - whole).max() > 1


@pytest.mark.parametrize("kind", ["savedmodel", "tflite"])
def test_tiling_exported_models(models, kind):
    up = load_upscaler(models[kind])
    image = _photo(30, 21, seed=3)
    tiled = upscale_tiled(up, image, 4, margin_for(models[kind]), tile=8)
    assert margin_for(models[kind]) == models["radius"]
    assert np.abs(tiled.astype(int) - up(image)).max() <= 1


# ---------------------------------------------------------------- command line


def _run(capsys, *flags) -> tuple[int, str]:
    status = main(["upscale", *flags])
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize("kind", ["keras", "savedmodel", "tflite"])
def test_cli_upscales_a_file_in_tiles(models, tmp_path, capsys, kind):
    image = _photo(26, 31, seed=1)
    save_image(tmp_path / "in.png", image)
    out = tmp_path / "deeper" / "out.png"
    status, err = _run(capsys, f"--model={models[kind]}", f"--input={tmp_path / 'in.png'}", f"--output={out}",
                       "--tile=12")
    assert status == 0, err
    whole = load_upscaler(models["keras"])(image)
    assert np.abs(load_image(out).astype(int) - whole).max() <= 1


def test_cli_folder_reports_bad_files_and_writes_the_others(models, tmp_path, capsys):
    src = tmp_path / "in"
    save_image(src / "a.png", _photo(9, 12))
    save_image(src / "sub" / "b.jpg", _photo(7, 5))
    (src / "broken.png").write_bytes(b"not a png")
    status, err = _run(capsys, f"--model={models['keras']}", f"--input={src}", f"--output={tmp_path / 'out'}")
    assert status == 1
    assert load_image(tmp_path / "out" / "a.png").shape == (36, 48, 3)
    assert load_image(tmp_path / "out" / "sub" / "b.png").shape == (28, 20, 3)
    lines = err.splitlines()
    assert len(lines) == 2 and "broken.png" in lines[0] and "1 image(s) failed" in lines[1]
    assert not (tmp_path / "out" / "broken.png").exists()


@pytest.mark.parametrize(
    ("setup", "flags", "message"),
    [
        (None, ["--input={tmp}/missing.png", "--output={tmp}/o.png"], "no such file"),
        ("empty", ["--input={tmp}/empty", "--output={tmp}/o"], "no image files"),
        ("text", ["--input={tmp}/notes.png", "--output={tmp}/o.png"], "not a readable image"),
        ("image", ["--input={tmp}/in.png", "--output={tmp}/blocker/o.png"], "cannot create the output folder"),
        ("image", ["--input={tmp}/in.png", "--output={tmp}/o.xyz"], "unknown image extension"),
        ("image", ["--input={tmp}", "--output={tmp}/blocker"], "is a file"),
        ("image", ["--model={tmp}/missing.keras", "--input={tmp}/in.png", "--output={tmp}/o.png"], "no such file"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_one_line(models, tmp_path, capsys, setup, flags, message):
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    if setup == "empty":
        (tmp_path / "empty" / "sub").mkdir(parents=True)
    elif setup == "text":
        (tmp_path / "notes.png").write_text("hello")
    elif setup == "image":
        save_image(tmp_path / "in.png", _photo(5, 5))
    flags = [f.format(tmp=tmp_path) for f in flags]
    if not any(f.startswith("--model") for f in flags):
        flags.insert(0, f"--model={models['keras']}")
    status, err = _run(capsys, *flags)
    assert status == 1
    assert err.startswith("error:") and "\n" not in err and message in err, err
    assert not (tmp_path / "o.png").exists()


def test_cli_writes_into_an_existing_folder(models, tmp_path, capsys):
    save_image(tmp_path / "in" / "photo.jpg", _photo(6, 7))
    (tmp_path / "out").mkdir()
    status, err = _run(capsys, f"--model={models['keras']}", f"--input={tmp_path / 'in' / 'photo.jpg'}",
                       f"--output={tmp_path / 'out'}")
    assert status == 0, err
    assert load_image(tmp_path / "out" / "photo.png").shape == (24, 28, 3)


def test_cli_bfloat16_precision_is_close_to_float32(models, tmp_path, capsys):
    image = _photo(20, 17, seed=4)
    save_image(tmp_path / "in.png", image)
    outs = {}
    for precision in ("float32", "bfloat16"):
        outs[precision] = tmp_path / f"{precision}.png"
        status, err = _run(capsys, f"--model={models['keras']}", str(tmp_path / "in.png"),
                           f"--output={outs[precision]}", f"--precision={precision}")
        assert status == 0, err
    diff = np.abs(load_image(outs["bfloat16"]).astype(int) - load_image(outs["float32"]))
    assert 0 < diff.max() <= 8 and diff.mean() < 1
    status, err = _run(capsys, f"--model={models['tflite']}", str(tmp_path / "in.png"), "--precision=bfloat16")
    assert status == 1 and "applies to .keras" in err and "\n" not in err, err


@pytest.mark.parametrize(("flags", "message"), [(["--input=x.png", "--outscale=0"], "--outscale"),
                                               (["--input=x.png", "--quality=101"], "quality"),
                                               (["--input=x.png", "--precision=half"], "precision"),
                                               ([], "no input")])
def test_cli_flag_errors_exit_2(capsys, flags, message):
    status, err = _run(capsys, "--model=bicubic", *flags)
    assert status == 2 and message in err and "\n" not in err, err


@pytest.mark.slow
def test_cli_peak_memory_does_not_grow_with_the_image(models, tmp_path):
    """Peak RSS of the command for a 480x480 image stays within a tile's worth of the RSS for a tiny one."""
    save_image(tmp_path / "tiny.png", _photo(16, 16))
    save_image(tmp_path / "big.png", _photo(480, 480))
    probe = ("import resource, sys; from srgan_tf.upscale import main; status = main(sys.argv); "
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(status)")

    def peak_mb(name: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", probe, f"--model={models['keras']}", f"--input={tmp_path / name}",
             f"--output={tmp_path / ('x4_' + name)}", "--tile=64"],
            capture_output=True, text=True, timeout=300, cwd=REPO,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux

    growth = peak_mb("big.png") - peak_mb("tiny.png")
    # Whole-image inference would hold several 960x960x64 and 1920x1920x16 float tensors (~236 MB each).
    assert growth < 300, f"peak RSS grew by {growth:.0f} MB"
    assert load_image(tmp_path / "x4_big.png").shape == (1920, 1920, 3)
