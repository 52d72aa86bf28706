"""The optional peer engines of bench/ compute the same function as the Keras generator (skipped when absent)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from srgan_tf.export.tflite import export_float_savedmodel
from srgan_tf.inference_graph import fast_generator
from srgan_tf.loader import load_upscaler
from srgan_tf.models import build_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import openvino_peer  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    g = build_generator(2, 16, bicubic_skip=True)
    g.save(root / "g.keras")
    export_float_savedmodel(fast_generator(g), root / "saved")
    return root


@pytest.fixture(scope="module")
def openvino_runs(exported):
    """{hint: OpenVINO's upscaler of the exported SavedModel} and Keras' output for the same input."""
    if not openvino_peer.available():
        pytest.skip("openvino is not installed (optional: pip install openvino)")
    hints = ("f32", "bf16")
    x = np.random.default_rng(0).random((1, 12, 9, 3), dtype=np.float32)
    want = load_upscaler(str(exported / "g.keras")).predict_float(x)
    return dict(zip(hints, openvino_peer.openvino_upscalers(exported / "saved", hints), strict=True)), x, want


@pytest.mark.parametrize(("hint", "atol"), [("f32", 1e-4), ("bf16", 0.05)])
def test_openvino_runs_the_exported_savedmodel_as_keras_does(openvino_runs, hint, atol):
    upscalers, x, want = openvino_runs
    up = upscalers[hint]
    got = up.predict_float(x)
    assert got.shape == want.shape == (1, 48, 36, 3)
    np.testing.assert_allclose(got, want, atol=atol)
    other = np.random.default_rng(1).random((1, 7, 5, 3), dtype=np.float32)  # any size: dynamic shapes
    assert up.predict_float(other).shape == (1, 28, 20, 3)
