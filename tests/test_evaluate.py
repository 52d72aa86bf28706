import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srgan_tf.evaluate import PAPER_RESULTS, EvaluationError, evaluate, main
from srgan_tf.images import load_image, save_image
from srgan_tf.loader import ModelLoadError, Upscaler, load_upscaler, upscaler_from_keras
from srgan_tf.models import build_discriminator, build_generator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    build_generator(2, 16).save(d / "g4.keras")
    build_generator(1, 8, scale=2).save(d / "g2.keras")
    build_discriminator(16).save(d / "disc.keras")
    data = (d / "g4.keras").read_bytes()
    (d / "truncated.keras").write_bytes(data[: len(data) // 2])
    (d / "weights.h5").write_bytes(b"not a model")
    (d / "model.tflite").write_bytes(b"TFL3")
    (d / "saved").mkdir()
    (d / "saved" / "saved_model.pb").write_bytes(b"")
    return d


@pytest.fixture()
def tiny_set(tmp_path):
    """A set without LR files or names.csv, with HR sizes that are not multiples of 4."""
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(50, 61), (45, 44)], start=1):
        yy, xx = np.mgrid[0:h, 0:w]
        img = 128 + 60 * np.sin(xx / 5.0 + i)[..., None] * np.cos(yy / 4.0)[..., None]
        img = np.clip(img + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8)
        save_image(tmp_path / "tiny" / "HR" / f"im{i}.png", img)
    return tmp_path / "tiny"


@pytest.mark.parametrize(("set_name", "psnr", "ssim"), [("Set5", 28.42, 0.810), ("Set14", 26.00, 0.703)])
def test_bicubic_reproduces_the_literature(shared_data, set_name, psnr, ssim):
    # PSNR and SSIM alone: NIQE (the published figures have none) would double the time.
    result = evaluate(load_upscaler("bicubic"), shared_data / set_name, metric_names=("psnr", "ssim"))
    assert result["lr_source"].startswith("LR_bicubic_x4")
    assert len(result["per_image"]) == len(list((shared_data / set_name / "HR").glob("*.png")))
    assert result["mean"]["psnr"] == pytest.approx(psnr, abs=0.02)
    assert result["mean"]["ssim"] == pytest.approx(ssim, abs=0.002)


@pytest.mark.slow
def test_cli_end_to_end_on_a_tiny_generator(shared_data, models, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "srgan_tf.evaluate", f"--model={models / 'g4.keras'}",
         f"--data={shared_data / 'Set5'}", f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| **mean** |" in proc.stdout
    result = json.loads((out / "results.json").read_text())
    assert result["model"] == "g4" and result["set"] == "Set5" and result["scale"] == 4
    assert [r["name"] for r in result["per_image"]] == ["baby", "bird", "butterfly", "head", "woman"]
    assert result["per_image"][0]["file"] == "img_001.png"
    psnrs = [r["psnr"] for r in result["per_image"]]
    assert result["mean"]["psnr"] == pytest.approx(np.mean(psnrs))
    assert result["paper"]["SRGAN"] == {"psnr": 29.40, "ssim": 0.8472}
    md = (out / "results.md").read_text()
    assert "paper: SRResNet | 32.05 | 0.9019" in md and "| baby | img_001.png |" in md
    # NIQE is on by default: per image, for the HR image too, and as means.
    niqes = [r["niqe"] for r in result["per_image"]]
    assert all(isinstance(v, float) for v in niqes) and result["mean"]["niqe"] == pytest.approx(np.mean(niqes))
    assert result["mean"]["hr_niqe"] < result["mean"]["niqe"]  # the untrained G is less natural than HR
    assert "| NIQE | NIQE of HR |" in md and f"**{result['mean']['hr_niqe']:.3f}**" in md
    panels = sorted((out / "images").glob("*.png"))
    assert [p.name for p in panels] == [f"img_00{i}.png" for i in range(1, 6)]
    hr = load_image(shared_data / "Set5" / "HR" / "img_002.png")
    panel = load_image(out / "images" / "img_002.png")
    assert panel.shape[1] == 3 * hr.shape[1] + 16 and panel.shape[0] > hr.shape[0]


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model=bicubic", f"--data={tmp_path / 'nope'}", f"--out={tmp_path / 'r'}"]) == 1
    out, err = capsys.readouterr()
    errors = err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "nope" in errors[0] and "HR" in errors[0], err
    assert not out.strip() and not (tmp_path / "r").exists()


def test_metrics_pick_the_scores_and_small_images_get_no_niqe(tiny_set, shared_data):
    result = evaluate(load_upscaler("bicubic"), shared_data / "Set5", metric_names=["psnr", "ssim"])
    assert "niqe" not in result["mean"] and "niqe" not in result["per_image"][0]
    tiny = evaluate(load_upscaler("bicubic"), tiny_set)  # 44x48 and 60x48: no 96x96 block
    assert tiny["mean"]["niqe"] is None and tiny["per_image"][0]["niqe"] is None
    with pytest.raises(EvaluationError, match="unknown metrics lpips"):
        evaluate(load_upscaler("bicubic"), tiny_set, metric_names=["psnr", "lpips"])


def test_set_without_lr_files_crops_hr_and_degrades_it(tiny_set, tmp_path):
    result = evaluate(load_upscaler("bicubic"), tiny_set, tmp_path / "r", degradation="pil")
    assert "resize(HR, 1/4, 'pil')" in result["lr_source"]
    assert [r["name"] for r in result["per_image"]] == ["im1", "im2"]
    assert all(20 < r["psnr"] < 60 for r in result["per_image"])
    panel = load_image(tmp_path / "r" / "images" / "im1.png")
    assert panel.shape[1] == 3 * 60 + 16  # HR 61 wide cropped to 60
    assert result["paper"] is None
    assert "paper" not in (tmp_path / "r" / "results.md").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model=bicubic", "--data={tmp}/nope"], "no HR/ folder"),
        (["--model=bicubic", "--data={tmp}/empty"], "no images"),
        (["--model={models}/missing.keras", "--data={tmp}/empty"], "no such file"),
        (["--model={models}/weights.h5", "--data={tmp}/empty"], "unknown model kind"),
        (["--model={models}/truncated.keras", "--data={tmp}/empty"], "truncated or corrupt"),
        (["--model={models}/disc.keras", "--data={tmp}/empty"], "not a generator"),
        (["--model={models}/g2.keras", "--data={tmp}/empty"], "not the requested 4x"),
        (["--model={models}/saved", "--data={tmp}/empty"], "cannot load SavedModel"),
        (["--model={models}/model.tflite", "--data={tmp}/empty"], "cannot load TFLite model"),
        (["--model={models}", "--data={tmp}/empty"], "not a SavedModel"),
    ],
)
def test_bad_inputs_exit_nonzero_with_one_line(models, tmp_path, capsys, flags, message):
    (tmp_path / "empty" / "HR").mkdir(parents=True)
    argv = ["evaluate"] + [f.format(tmp=tmp_path, models=models) for f in flags] + [f"--out={tmp_path}/r"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / "r" / "results.json").exists()


def test_missing_flag_is_a_usage_error(capsys):
    assert main(["evaluate", "--model=bicubic"]) == 2
    assert "--data" in capsys.readouterr().err


def test_lr_file_of_wrong_size_is_reported(tiny_set):
    save_image(tiny_set / "LR_bicubic_x4" / "im1.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(EvaluationError, match="expected 15x12"):
        evaluate(load_upscaler("bicubic"), tiny_set)


def test_keras_upscaler_interface(models):
    up = load_upscaler(str(models / "g4.keras"))
    assert isinstance(up, Upscaler) and up.name == "g4" and up.scale == 4
    lr = np.random.default_rng(0).integers(0, 256, (6, 5, 3)).astype(np.uint8)
    out = up(lr)
    assert out.dtype == np.uint8 and out.shape == (24, 20, 3)
    x = np.stack([lr, lr]).astype(np.float32) / 255.0
    f = up.predict_float(x)
    assert f.dtype == np.float32 and f.shape == (2, 24, 20, 3) and f.min() >= 0.0 and f.max() <= 1.0
    assert np.abs(out.astype(np.float64) - f[0] * 255.0).max() <= 0.5 + 1e-3
    with pytest.raises(ValueError, match="uint8"):
        up(lr.astype(np.float32))


def test_in_memory_generator_matches_the_loaded_file(models, tiny_set):
    import keras

    model = keras.models.load_model(models / "g4.keras", compile=False)
    mem = evaluate(upscaler_from_keras(model, 4, name="live"), tiny_set)
    disk = evaluate(load_upscaler(str(models / "g4.keras")), tiny_set)
    assert mem["model"] == "live" and mem["mean"] == disk["mean"]
    with pytest.raises(ModelLoadError, match="not the requested 2x"):
        upscaler_from_keras(model, 2)


def test_bicubic_upscaler_interface():
    up = load_upscaler("bicubic", scale=3)
    lr = np.random.default_rng(1).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    assert up(lr).shape == (21, 27, 3) and up(lr).dtype == np.uint8
    assert up.predict_float(lr[None] / 255.0).shape == (1, 21, 27, 3)
    with pytest.raises(ModelLoadError, match="positive integer"):
        load_upscaler("bicubic", scale=0)


def test_paper_figures_are_complete():
    assert set(PAPER_RESULTS) == {"Set5", "Set14", "BSD100"}
    for rows in PAPER_RESULTS.values():
        assert set(rows) == {"bicubic", "SRResNet", "SRGAN"}
        assert rows["SRResNet"][0] > rows["SRGAN"][0]  # the paper's point: SRGAN trades PSNR for realism
