"""The ONNX model of the generator, for ONNX Runtime and other ONNX engines (optional:
`pip install 'srgan-tf[onnx]'`, which brings tf2onnx, onnx and onnxruntime).

The model maps `images` float32 [N, h, w, 3] in [0, 1] (NHWC) to `upscaled` float32 [N, s*h, s*w, 3] in
[0, 1], with batch, height and width dynamic: the graph of the float TFLite model (the model it is given,
which the export makes the fast inference graph, then tanh's [-1, 1] -> [0, 1], no clip). tf2onnx converts
it from a tf.function, the route Keras 3's `model.export(format="onnx")` takes under TensorFlow. Its command
line cannot take the float SavedModel of export.tflite, whose input and output are both named `images`.
The export metadata is stored as JSON under the model's metadata_props key "srgan_tf". The model is
checked before it is written: one input and one output, dynamic shapes, the right output size on an odd,
non-square input, and the same values as Keras there within MAX_PROBE_DIFF.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from srgan_tf.errors import first_line
from srgan_tf.images import atomic_write
from srgan_tf.loader import ModelLoadError, Upscaler, load_upscaler
from srgan_tf.tiling import ONNX_METADATA_KEY as METADATA_KEY
from srgan_tf.tiling import artifact_metadata

from . import ExportError
from .tflite import float_upscale_function

INPUT, OUTPUT = "images", "upscaled"
INSTALL_HINT = "pip install 'srgan-tf[onnx]'"
MAX_PROBE_DIFF = 1e-3  # [0, 1] units; float32 ONNX Runtime is ~1e-6 from Keras on the shipped generator
_PROBE_HW = (7, 9)  # odd, non-square: catches shapes baked in at conversion
_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")


def missing_packages() -> list[str]:
    """The packages of the `onnx` extra that cannot be imported here (empty when the export can run)."""
    missing = []
    for name in _PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def require() -> None:
    """Raises ExportError (one line naming the extra to install) unless tf2onnx, onnx and onnxruntime
    import."""
    missing = missing_packages()
    if missing:
        raise ExportError(f"the ONNX export needs {', '.join(missing)} (not installed): {INSTALL_HINT}")


def to_onnx(model: keras.Model, opset: int | None = None):
    """`model` (float32 [N, h, w, 3] in [0, 1] -> [N, s*h, s*w, 3] in [-1, 1]) followed by [-1, 1] -> [0, 1]
    as an onnx.ModelProto (see the module docstring); `opset`: tf2onnx's default when None. Raises
    ExportError when a package is missing or tf2onnx fails."""
    require()
    import tf2onnx

    upscale = float_upscale_function(model, OUTPUT)
    try:
        proto, _ = tf2onnx.convert.from_function(upscale, input_signature=upscale.input_signature, opset=opset)
    except Exception as e:  # tf2onnx raises plain ValueErrors and friends with multi-line details
        raise ExportError(f"ONNX conversion failed (tf2onnx {tf2onnx.__version__}): {first_line(e)}") from None
    return proto


def onnx_upscaler(path: str | os.PathLike, scale: int = 4) -> Upscaler:
    """srgan_tf.loader's Upscaler for the ONNX model at `path` (ONNX Runtime on the CPU); ExportError, one
    line, when onnxruntime is missing or cannot use the file."""
    try:
        return load_upscaler(str(path), scale)
    except ModelLoadError as e:
        raise ExportError(str(e)) from None


def check_onnx(path: str | os.PathLike, model: keras.Model, scale: int) -> dict:
    """Checks the ONNX file at `path` against the Keras `model`; raises ExportError on failure.

    Fails for an invalid model (onnx.checker), more than one input or output, an input or output that is
    not [?, ?, ?, 3] with the first three dimensions dynamic, the wrong output shape on a 7x9 input, or
    values there further than MAX_PROBE_DIFF from Keras'. Returns onnx_info's dict plus "probe_max_abs_diff".
    """
    require()
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise ExportError(f"ONNX: the model is not valid ({first_line(e)})") from None
    info = onnx_info(path)
    for what, shape in (("input", info["input_shape"]), ("output", info["output_shape"])):
        if len(shape) != 4 or shape[3] != 3 or any(isinstance(d, int) for d in shape[:3]):
            raise ExportError(f"ONNX: {what} shape {shape} is not [?, ?, ?, 3] (dynamic batch, height and width)")
    probe = np.random.default_rng(0).integers(0, 256, (*_PROBE_HW, 3), dtype=np.uint8)
    upscaler = onnx_upscaler(path, scale)
    got = upscaler.predict_float(probe[None].astype(np.float32) / 255.0).shape  # before any value check
    want = (1, scale * _PROBE_HW[0], scale * _PROBE_HW[1], 3)
    if got != want:
        raise ExportError(f"ONNX: a 1x{_PROBE_HW[0]}x{_PROBE_HW[1]}x3 input gave {got}, expected {want}")
    x = probe[None].astype(np.float32) / 255.0
    want = np.clip(np.asarray(model(x, training=False)) * 0.5 + 0.5, 0.0, 1.0)
    diff = float(np.max(np.abs(upscaler.predict_float(x) - want)))
    if diff > MAX_PROBE_DIFF:
        raise ExportError(f"ONNX: output differs from Keras by {diff:.2e} on a 7x9 input (limit {MAX_PROBE_DIFF})")
    return {**info, "probe_max_abs_diff": diff}


def onnx_info(path: str | os.PathLike) -> dict:
    """What an ONNX file holds: {"opset", "producer", "input_shape", "output_shape" (ints, or names for
    dynamic dimensions), "ops": {op type: count}, "metadata": the srgan_tf JSON or None}."""
    require()
    import onnx

    proto = onnx.load(str(path))

    def shape(value) -> list:
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in value.type.tensor_type.shape.dim]

    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise ExportError(f"ONNX {path}: expected one input and one output, got {len(proto.graph.input)} "
                          f"and {len(proto.graph.output)}")
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"opset": opset, "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            "input_shape": shape(proto.graph.input[0]), "output_shape": shape(proto.graph.output[0]),
            "ops": dict(sorted(ops.items())),
            "metadata": artifact_metadata(path)}


def export_onnx(
    model: keras.Model, path: str | os.PathLike, scale: int = 4, metadata: dict | None = None,
    opset: int | None = None,
) -> Path:
    """Converts `model` (to_onnx), stores `metadata` (JSON-able) in it, checks the result against `model`
    (check_onnx) and writes it to `path` atomically: the file appears complete and checked, or not at
    all (an existing one is kept). Returns `path`. Raises ExportError, naming the extra to install when
    tf2onnx, onnx or onnxruntime is missing."""
    require()
    import onnx

    proto = to_onnx(model, opset)
    info = {**(metadata or {}), "input": f"{INPUT} float32 [N, h, w, 3] in [0, 1]",
            "output": f"{OUTPUT} float32 [N, {scale}h, {scale}w, 3] in [0, 1]"}
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(info)})
    data = proto.SerializeToString()
    path = Path(path)

    def write_checked(tmp: str) -> None:  # checked at the temporary name, so a failure leaves nothing
        Path(tmp).write_bytes(data)
        check_onnx(tmp, model, scale)

    atomic_write(path, write_checked)
    return path

