"""The ONNX export (export/onnx.py): tf2onnx's model run by onnxruntime computes the Keras generator's function,
at any size, and the export command writes and measures it. Needs the optional extra (`pip install
'srgan-tf[onnx]'`); without it only the missing-package error is tested and the rest skips."""

import json
import sys

import numpy as np
import pytest

from srgan_tf.export import ExportError
from srgan_tf.export import onnx as onnx_export
from srgan_tf.export.__main__ import main
from srgan_tf.export.pipeline import run_export
from srgan_tf.inference_graph import fast_generator
from srgan_tf.models import build_generator

SKIP_REASON = "the ONNX export's packages are not installed (optional: pip install 'srgan-tf[onnx]')"


def _random_output_layer(model, seed=0):
    """Gives the zero-initialised output convolution of a bicubic-skip generator random weights, so that its
    output is not the bicubic image alone."""
    layer = model.get_layer("conv_out")
    rng = np.random.default_rng(seed)
    layer.set_weights([0.05 * rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def needs_onnx():
    for name in ("tf2onnx", "onnx", "onnxruntime"):
        pytest.importorskip(name, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def exported(needs_onnx, tmp_path_factory):
    """(fast graph, path) of a 2-block, 16-filter bicubic-skip generator exported to ONNX."""
    model = fast_generator(_random_output_layer(build_generator(2, 16, bicubic_skip=True)))
    path = onnx_export.export_onnx(model, tmp_path_factory.mktemp("onnx") / "g.onnx", 4, {"producer": "test"})
    return model, path


@pytest.mark.parametrize("shape", [(1, 64, 64, 3), (1, 48, 80, 3), (2, 11, 7, 3)])
def test_onnxruntime_computes_the_keras_function_at_any_size(exported, shape):
    model, path = exported
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    want = np.clip(model(x, training=False).numpy() * 0.5 + 0.5, 0, 1)
    got = onnx_export.onnx_upscaler(path, 4).predict_float(x)
    assert got.shape == (shape[0], 4 * shape[1], 4 * shape[2], 3)
    assert np.max(np.abs(want - 0.5)) > 0.05  # the output is an image, not a constant
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_file_has_dynamic_shapes_and_the_export_metadata(exported):
    _, path = exported
    info = onnx_export.onnx_info(path)
    assert info["input_shape"][3] == info["output_shape"][3] == 3
    assert not any(isinstance(d, int) for d in info["input_shape"][:3] + info["output_shape"][:3])
    assert info["metadata"]["producer"] == "test" and "[0, 1]" in info["metadata"]["output"]
    assert info["ops"]["DepthToSpace"] == 3 and info["ops"]["Conv"] > 0  # two shuffles and the bicubic skip


def test_the_export_report_measures_an_altered_model_as_different(exported):
    """The fidelity the export reports for the ONNX model (export.report.fidelity against the Keras model it
    came from) is near exact for its own model and far off for another one."""
    from srgan_tf.export import report
    from srgan_tf.loader import upscaler_from_keras

    model, path = exported
    upscaler = onnx_export.onnx_upscaler(path, 4)
    rng = np.random.default_rng(2)
    lr, hr = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    pairs = [("x", lr, hr)]
    same = report.fidelity(upscaler, pairs, report.reference_outputs(upscaler_from_keras(model, 4, fast=False), pairs))
    assert same["max_abs_diff_float"] < 1e-5 and same["max_abs_diff_uint8"] <= 1
    other = fast_generator(_random_output_layer(build_generator(2, 16, bicubic_skip=True), seed=1))
    changed = report.fidelity(upscaler, pairs, report.reference_outputs(upscaler_from_keras(other, 4, fast=False),
                                                                         pairs))
    assert changed["max_abs_diff_float"] > 1e-2 and changed["max_abs_diff_uint8"] > 2
    assert same["psnr_vs_keras_db"] is None or changed["psnr_vs_keras_db"] < same["psnr_vs_keras_db"] - 20


def test_a_failed_check_writes_nothing_and_keeps_the_old_file(exported, tmp_path, monkeypatch):
    model, path = exported
    target = tmp_path / "g.onnx"
    target.write_bytes(b"old")

    def failing(*_):
        raise ExportError("ONNX: check failed")

    monkeypatch.setattr(onnx_export, "check_onnx", failing)
    with pytest.raises(ExportError, match="check failed"):
        onnx_export.export_onnx(model, target, 4)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["g.onnx"]


def test_a_missing_package_is_a_one_line_error_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx now raises ImportError
    with pytest.raises(ExportError, match=r"needs tf2onnx.*pip install 'srgan-tf\[onnx\]'"):
        onnx_export.require()
    generator = tmp_path / "g.keras"
    build_generator(2, 16).save(generator)
    out = tmp_path / "out"
    assert main(["export", f"--generator={generator}", f"--out={out}", "--formats=savedmodel,onnx"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'srgan-tf[onnx]'" in err, err
    assert not out.exists()


def test_the_export_command_writes_and_measures_the_onnx_model(needs_onnx, tmp_path, capsys):
    generator = tmp_path / "g.keras"
    _random_output_layer(build_generator(2, 16, bicubic_skip=True)).save(generator)
    out = tmp_path / "out"
    assert main(["export", f"--generator={generator}", f"--out={out}", "--formats=onnx", "--latency_runs=1",
                 f"--fidelity_data={tmp_path / 'none'}"]) == 0
    report = json.loads((out / "report.json").read_text())
    onnx = next(a for a in report["artifacts"] if a["format"] == "onnx")
    assert onnx["path"] == str(out / "onnx" / "srgan.onnx") and onnx["size_bytes"] > 0
    assert onnx["latency_ms"] > 0 and onnx["opset"] >= 13 and "Conv" in onnx["ops"]
    assert [a["format"] for a in report["artifacts"]] == ["keras", "onnx"]  # savedmodel and tflite not asked
    assert "onnx" in capsys.readouterr().out


def test_the_onnx_row_of_the_export_measures_fidelity_on_set5(needs_onnx, shared_data, tmp_path):
    generator = tmp_path / "g.keras"
    _random_output_layer(build_generator(2, 16, bicubic_skip=True)).save(generator)
    report = run_export(generator, tmp_path / "out", formats=["onnx"], fidelity_data=shared_data / "Set5",
                        latency_runs=0, log=lambda _: None)
    keras_row, onnx_row = report["artifacts"]
    assert onnx_row["fidelity"]["max_abs_diff_float"] < 1e-5 and onnx_row["fidelity"]["max_abs_diff_uint8"] <= 1
    assert abs(onnx_row["fidelity"]["y_psnr_vs_hr_db"] - keras_row["fidelity"]["y_psnr_vs_hr_db"]) < 0.01


def test_the_loader_and_the_upscale_command_run_an_onnx_file(exported, tmp_path):
    """`load_upscaler("x.onnx")` (srgan_tf's one loader) and `srgan-upscale --model=x.onnx` run the export,
    tiled with the receptive radius recorded in its metadata."""
    from PIL import Image

    from srgan_tf.loader import load_upscaler
    from srgan_tf.tiling import margin_for, receptive_radius
    from srgan_tf.upscale import main as upscale_main

    model, _ = exported
    radius = receptive_radius(model)[0]
    path = onnx_export.export_onnx(model, tmp_path / "g.onnx", 4, {"receptive_radius": radius, "scale": 4})
    assert margin_for(path) == radius
    image = np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    upscaler = load_upscaler(str(path), 4)
    assert upscaler.backend.startswith("onnxruntime")
    want = np.clip(model(image[None] / np.float32(255), training=False).numpy()[0] * 0.5 + 0.5, 0, 1)
    assert np.abs(upscaler(image).astype(int) - np.floor(want * 255 + 0.5)).max() <= 1
    Image.fromarray(image).save(tmp_path / "in.png")
    assert upscale_main(["upscale", f"--input={tmp_path / 'in.png'}", f"--output={tmp_path / 'out.png'}",
                         f"--model={path}"]) == 0
    assert Image.open(tmp_path / "out.png").size == (40, 48)


def test_an_onnx_file_without_onnxruntime_is_a_one_line_load_error(tmp_path, monkeypatch):
    from srgan_tf.loader import ModelLoadError, load_upscaler

    (tmp_path / "g.onnx").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelLoadError, match=r"needs onnxruntime.*pip install 'srgan-tf\[onnx\]'") as e:
        load_upscaler(str(tmp_path / "g.onnx"), 4)
    assert "\n" not in str(e.value)
