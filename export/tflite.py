"""TFLite models of the generator: fp32, fp16 weights, dynamic-range int8 and full-integer int8.

Every model maps `images` [N, h, w, 3] in [0, 1] to [N, s*h, s*w, 3] in [0, 1] with every dimension but
the channels dynamic (use `resize_tensor_input`). The float and dynamic-range models take and return
float32; the full-integer model takes and returns uint8 tensors whose real values are
`scale * (q - zero_point)` (see the tensors' quantization parameters; the input's are about 1/255 and 0).
Conversion goes through a plain float SavedModel (the Keras 3 route). A model that keeps variables,
needs Flex (select TF) or custom ops, or loses its dynamic shape is an ExportError, never an artifact.

The full-integer model computes each PReLU as `alpha * x + relu((1 - alpha) * x)` (`ReluFormPReLU`), the
same function in exact arithmetic: the XNNPACK delegate has no int8 PReLU, and with the PReLU op every
activation of the generator fell back to TFLite's reference kernels (see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.errors import first_line
from srgan_tf.images import atomic_write
from srgan_tf.litert import tflite_interpreter
from srgan_tf.tiling import TFLITE_METADATA_NAME

from . import ExportError
from .gpu import gpu_compatibility

VARIANTS = ("fp32", "fp16", "dynamic_int8", "int8")
CALIBRATION_CROPS = 64
CALIBRATION_CROP_SIZE = 64
_FORBIDDEN_OPS = {"CUSTOM", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}
_PROBE_HW = (7, 9)  # odd, non-square: catches shapes baked in at conversion


@keras.saving.register_keras_serializable(package="srgan_tf")
class ReluFormPReLU(keras.layers.Layer):
    """PReLU with fixed slopes `alpha` (one per channel): y = alpha * x + s * relu(|1 - alpha| * x), with
    s = sign(1 - alpha), equal to max(x, 0) + alpha * min(x, 0) for every alpha. Float32 [..., C] in and out.

    Its ops are multiplications (the converter fuses the ReLU into one) and an addition, which XNNPACK runs
    in int8; the multiplication by s is left out when every alpha <= 1 (the usual case).
    """

    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        self.alpha = np.asarray(alpha, np.float32).reshape(-1)

    def call(self, x):
        alpha = tf.constant(self.alpha)
        if np.all(self.alpha <= 1.0):
            return alpha * x + tf.nn.relu(tf.constant(1.0 - self.alpha) * x)
        sign, slope = np.sign(1.0 - self.alpha), np.abs(1.0 - self.alpha)
        return alpha * x + tf.constant(sign) * tf.nn.relu(tf.constant(slope) * x)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha.tolist()}


def relu_form(model: keras.Model) -> keras.Model:
    """A copy of `model` (same weights, same function up to float rounding) whose PReLU layers, which must
    share alpha over all axes but the channels, are ReluFormPReLU."""

    def clone(layer):
        if isinstance(layer, keras.layers.PReLU):
            alpha = layer.get_weights()[0]
            if alpha.size != alpha.shape[-1]:
                raise ExportError(f"{layer.name}: the int8 model needs one PReLU alpha per channel")
            return ReluFormPReLU(alpha, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights and not isinstance(layer, keras.layers.PReLU):
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


def float_upscale_function(model: keras.Model, output: str = "images"):
    """The float graph the TFLite and ONNX models are converted from, as a tf.function: `images` float32
    [N, h, w, 3] in [0, 1] -> {output: float32 [N, s*h, s*w, 3] in [0, 1]}. No clipping (tanh * 0.5 + 0.5 is
    in range) and no assertions, so the graph is pure builtins."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def upscale(images):
        return {output: model(images, training=False) * 0.5 + 0.5}

    return upscale


def export_float_savedmodel(model: keras.Model, path: str | os.PathLike) -> None:
    """A SavedModel with one signature, float_upscale_function's: `images` in [0, 1] -> `images` in [0, 1]."""
    upscale = float_upscale_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", upscale)
    archive.write_out(str(path), verbose=False)


def calibration_crops(
    images: list[np.ndarray], count: int = CALIBRATION_CROPS, size: int = CALIBRATION_CROP_SIZE, seed: int = 0
) -> list[np.ndarray]:
    """`count` random crops (float32 [1, size, size, 3] in [0, 1], smaller if an image is) of uint8 images."""
    if not images:
        raise ExportError("no calibration images for the int8 model")
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        image = images[i % len(images)]
        h, w = min(size, image.shape[0]), min(size, image.shape[1])
        top, left = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - w + 1)
        crops.append(image[None, top:top + h, left:left + w].astype(np.float32) / 255.0)
    return crops


def convert(
    saved_model_dir: str | os.PathLike, variant: str, calibration: list[np.ndarray] | None = None
) -> bytes:
    """Converts the float SavedModel to TFLite flatbuffer bytes for one of VARIANTS.

    `calibration` (float32 [1, h, w, 3] arrays in [0, 1]) is required for "int8".
    """
    if variant not in VARIANTS:
        raise ExportError(f"unknown TFLite variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # Flex ops fail conversion
    converter.experimental_enable_resource_variables = False
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if not calibration:
            raise ExportError("the int8 model needs calibration images (--calibration_dir)")

        def representative() -> Iterator[list[np.ndarray]]:
            for crop in calibration:
                yield [crop]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    try:
        return converter.convert()
    except Exception as e:  # ConverterError and friends carry multi-line MLIR diagnostics
        raise ExportError(f"TFLite {variant} conversion failed: {first_line(e)}") from None


def add_metadata(model_bytes: bytes, metadata: dict) -> bytes:
    """`model_bytes` with `metadata` stored as JSON in the flatbuffer's metadata entry "srgan_tf"."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = TFLITE_METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def check_tflite(model_bytes: bytes, scale: int, variant: str) -> dict:
    """Checks a converted model and reports its ops and XNNPACK delegation; raises ExportError on failure.

    Fails for resource variables, Flex/custom ops, an input or output that is not [-1, -1, -1, 3], or
    wrong output shapes on an odd-sized input. Returns {"ops": {name: count}, "xnnpack": {...}, "gpu": {...}}
    ("gpu": export.gpu.gpu_compatibility, what the mobile GPU delegate would reject; reported, not an error).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    ops = model_ops(model_bytes)
    bad = sorted(op for op in ops if op in _FORBIDDEN_OPS or op.startswith("Flex"))
    if bad:
        raise ExportError(f"TFLite {variant}: unsupported ops left after conversion: {', '.join(bad)}")
    if flatbuffer_utils.count_resource_variables(bytearray(model_bytes)):
        raise ExportError(f"TFLite {variant}: the model keeps resource variables; weights must be constants")
    try:
        plain = tflite_interpreter(model_content=model_bytes, delegates=False)
    except Exception as e:
        raise ExportError(f"TFLite {variant}: the interpreter cannot load it ({first_line(e)})") from None
    inputs, outputs = plain.get_input_details(), plain.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"TFLite {variant}: expected one input and one output")
    for what, detail in (("input", inputs[0]), ("output", outputs[0])):
        if list(detail["shape_signature"]) != [-1, -1, -1, 3]:
            raise ExportError(f"TFLite {variant}: {what} shape {list(detail['shape_signature'])} is not "
                              "[-1, -1, -1, 3] (dynamic batch, height and width)")
    delegated = tflite_interpreter(model_content=model_bytes, delegates=True)
    for interpreter in (plain, delegated):
        got = _run_probe(interpreter)
        want = (1, scale * _PROBE_HW[0], scale * _PROBE_HW[1], 3)
        if got != want:
            raise ExportError(f"TFLite {variant}: a 1x{_PROBE_HW[0]}x{_PROBE_HW[1]}x3 input gave {got}, "
                              f"expected {want}")
    return {"ops": ops, "xnnpack": xnnpack_coverage(delegated), "gpu": gpu_compatibility(model_bytes)}


def _run_probe(interpreter) -> tuple[int, ...]:
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1, *_PROBE_HW, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], np.zeros([1, *_PROBE_HW, 3], detail["dtype"]))
    interpreter.invoke()
    return tuple(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape)


def model_ops(model_bytes: bytes) -> dict[str, int]:
    """{op name: count} over all subgraphs of a flatbuffer; custom ops (Flex ones included) by their code."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import schema_util
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    counts: dict[str, int] = {}
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = schema_util.get_builtin_code_from_operator_code(code)
            if builtin == schema.BuiltinOperator.CUSTOM:
                custom = code.customCode or b"CUSTOM"
                name = custom.decode() if isinstance(custom, bytes) else str(custom)
            else:
                name = builtin_names.get(builtin, str(builtin))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def xnnpack_coverage(interpreter) -> dict:
    """Which ops of an allocated interpreter the default (XNNPACK) delegate took over.

    The interpreter lists each delegate partition as a node named DELEGATE whose inputs and outputs are
    the partition's boundary tensors; an original op is delegated when it lies between them. Returns
    {"partitions", "delegated_ops", "total_ops", "not_delegated": {op name: count}}.
    """
    ops = interpreter._get_ops_details()
    producer = {int(t): op["index"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    covered: set[int] = set()
    for part in partitions:
        boundary = {int(t) for t in part["inputs"]}
        stack, seen = [int(t) for t in part["outputs"]], set()
        while stack:
            t = stack.pop()
            if t in boundary or t in seen or t not in producer:
                continue
            seen.add(t)
            covered.add(producer[t])
            stack.extend(int(i) for i in ops[producer[t]]["inputs"] if i >= 0)
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    missing: dict[str, int] = {}
    for op in originals:
        if op["index"] not in covered:
            missing[op["op_name"]] = missing.get(op["op_name"], 0) + 1
    return {"partitions": len(partitions), "delegated_ops": len(covered), "total_ops": len(originals),
            "not_delegated": dict(sorted(missing.items()))}


def export_tflite(
    model: keras.Model, out_dir: str | os.PathLike, name: str, variants: tuple[str, ...], scale: int,
    metadata: dict, calibration: list[np.ndarray] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Writes `out_dir/<name>_<variant>.tflite` per variant; returns {variant: check_tflite's report + path}.

    Each file is checked before it is written (atomically); the first failure raises ExportError.
    """
    results = {}
    with tempfile.TemporaryDirectory(prefix="srgan-tflite-") as tmp:
        float_dir, int8_dir = Path(tmp) / "float_savedmodel", Path(tmp) / "int8_savedmodel"
        if set(variants) - {"int8"}:
            export_float_savedmodel(model, float_dir)
        if "int8" in variants:
            export_float_savedmodel(relu_form(model), int8_dir)
        for variant in variants:
            log(f"converting TFLite {variant} ...")
            model_bytes = convert(int8_dir if variant == "int8" else float_dir, variant,
                                  calibration if variant == "int8" else None)
            io = ("uint8 quantized, real = scale * (q - zero_point), [0, 1]" if variant == "int8"
                  else "float32 [0, 1]")
            info = {**metadata, "variant": variant, "input": io, "output": io}
            model_bytes = add_metadata(model_bytes, info)
            report = check_tflite(model_bytes, scale, variant)
            path = Path(out_dir) / f"{name}_{variant}.tflite"
            atomic_write(path, lambda p, b=model_bytes: Path(p).write_bytes(b))
            results[variant] = {"path": str(path), **report}
    return results

