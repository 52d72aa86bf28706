"""The committed generator (models/cpu_demo_srresnet.keras) reproduces the figures recorded beside it."""

import json
from pathlib import Path

import pytest

from srgan_tf.evaluate import evaluate
from srgan_tf.loader import load_upscaler

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_committed_srresnet_reproduces_its_set5_figures_and_beats_bicubic(shared_data):
    meta = json.loads((MODELS / "cpu_demo_srresnet.json").read_text())
    want = meta["y_psnr_ssim"]["Set5"]
    got = evaluate(load_upscaler(str(MODELS / meta["model"])), shared_data / "Set5", save_images=False)["mean"]
    assert got["psnr"] == pytest.approx(want["srresnet"]["psnr"], abs=0.01)
    assert got["ssim"] == pytest.approx(want["srresnet"]["ssim"], abs=1e-4)
    bicubic = evaluate(load_upscaler("bicubic"), shared_data / "Set5", save_images=False)["mean"]
    assert got["psnr"] - bicubic["psnr"] >= 1.0  # issue 7's target on Set5
