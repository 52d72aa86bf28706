"""The shipped generators (models/*.keras) reproduce the figures recorded beside them (models/*.json)."""

import json
from pathlib import Path

import pytest

from srgan_tf.evaluate import evaluate
from srgan_tf.loader import load_upscaler

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = ("srresnet_x4", "srgan_x4")


def _remeasure(name: str, set_dir: Path) -> tuple[dict, dict]:
    meta = json.loads((MODELS / f"{name}.json").read_text())
    assert meta["model"] == f"{name}.keras" and (MODELS / meta["model"]).stat().st_size < 10_000_000
    got = evaluate(load_upscaler(str(MODELS / meta["model"])), set_dir, save_images=False)["mean"]
    return got, meta["figures"][set_dir.name]


def _check(got: dict, want: dict) -> None:
    assert got["psnr"] == pytest.approx(want["model"]["psnr"], abs=0.01)
    assert got["ssim"] == pytest.approx(want["model"]["ssim"], abs=1e-4)
    assert got["niqe"] == pytest.approx(want["model"]["niqe"], abs=0.01)
    assert got["hr_niqe"] == pytest.approx(want["hr_niqe"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_generator_reproduces_its_set5_figures(shared_data, name):
    got, want = _remeasure(name, shared_data / "Set5")
    _check(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_generator_reproduces_its_set14_figures(shared_data, name):
    got, want = _remeasure(name, shared_data / "Set14")
    _check(got, want)


def test_srresnet_beats_bicubic_and_srgan_is_the_more_natural(shared_data):
    """What each model is for, from the recorded figures: SRResNet the distortion, SRGAN the perception."""
    srresnet = json.loads((MODELS / "srresnet_x4.json").read_text())["figures"]
    srgan = json.loads((MODELS / "srgan_x4.json").read_text())["figures"]
    for set_name in ("Set5", "Set14"):
        assert srresnet[set_name]["model"]["psnr"] > srresnet[set_name]["bicubic"]["psnr"] + 1.0
        assert srgan[set_name]["model"]["niqe"] < srresnet[set_name]["model"]["niqe"] - 1.0
