"""The one way to turn a model spec into an upscaler: `load_upscaler("bicubic")`, `load_upscaler("g.keras")`.

Every kind of spec becomes an `Upscaler` with the same interface, so evaluation, export checks and
serving compare like with like. Adding a kind means one `_load_<kind>` function and one `_LOADERS` entry;
`_spec_kind` decides which kind a spec is.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from srgan_tf.errors import first_line
from srgan_tf.imresize import imresize
from srgan_tf.tiling import SplitGenerator

if TYPE_CHECKING:
    import keras

_PROBE_SIZE = 16  # low-resolution side of the dummy image used to check a generator's scale


class ModelLoadError(ValueError):
    """A model spec that cannot be used; the message (one line) names the spec and the reason."""


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8, rounding half up."""
    return np.clip(np.floor(np.asarray(x, np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


class Upscaler:
    """A super-resolution model with a fixed integer `scale`.

    - `upscaler(lr)`: uint8 [H, W, 3] -> uint8 [scale*H, scale*W, 3].
    - `upscaler.predict_float(x)`: float32 [N, h, w, 3] in [0, 1] -> float32 [N, scale*h, scale*w, 3] in
      [0, 1].

    A loader supplies `predict_float`; it may also supply its own uint8 path (bicubic does, to round as
    MATLAB does), otherwise uint8 calls go through `predict_float` and are rounded to the nearest level.
    """

    def __init__(
        self,
        name: str,
        scale: int,
        predict_float: Callable[[np.ndarray], np.ndarray],
        upscale_uint8: Callable[[np.ndarray], np.ndarray] | None = None,
        split: SplitGenerator | None = None,
    ):
        self.name = name
        self.scale = int(scale)
        self._predict_float = predict_float
        self._upscale_uint8 = upscale_uint8
        # Given by the Keras loader for generators of srgan_tf.models: trunk and tail for two-level tiling.
        self.split = split

    def predict_float(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"predict_float wants float32 [N, h, w, 3], got shape {x.shape}")
        return np.clip(np.asarray(self._predict_float(x), dtype=np.float32), 0.0, 1.0)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        lr = np.asarray(lr)
        if lr.dtype != np.uint8 or lr.ndim != 3 or lr.shape[-1] != 3:
            raise ValueError(f"an Upscaler wants uint8 [H, W, 3], got {lr.dtype} {lr.shape}")
        if self._upscale_uint8 is not None:
            return np.asarray(self._upscale_uint8(lr), dtype=np.uint8)
        return _to_uint8(self.predict_float(lr[None].astype(np.float32) / 255.0)[0])

    def __repr__(self) -> str:
        return f"Upscaler(name={self.name!r}, scale={self.scale})"


def _load_bicubic(spec: str, scale: int) -> Upscaler:
    return Upscaler(
        name="bicubic",
        scale=scale,
        predict_float=lambda x: imresize(x, scale).numpy(),
        upscale_uint8=lambda lr: imresize(lr, scale).numpy(),
    )


def _check_generator(model, spec: str, scale: int) -> None:
    """Raises ModelLoadError unless `model` maps [N, h, w, 3] to [N, scale*h, scale*w, 3]."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelLoadError(f"{spec}: not a generator (it has {len(model.inputs)} inputs, "
                             f"{len(model.outputs)} outputs; expected one image in, one image out)")
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] != 3 or len(out_shape) != 4 or out_shape[-1] != 3:
        raise ModelLoadError(f"{spec}: not a generator (maps {in_shape} to {out_shape}; "
                             "expected [N, h, w, 3] to [N, H, W, 3])")
    h, w = (d or _PROBE_SIZE for d in in_shape[1:3])
    try:
        got = tuple(model(tf.zeros([1, h, w, 3]), training=False).shape)
    except Exception as e:  # any failure here means the model is unusable
        raise ModelLoadError(f"{spec}: fails on a {h}x{w} test image ({first_line(e)})") from None
    if got[1:3] != (scale * h, scale * w):
        raise ModelLoadError(f"{spec}: upscales {h}x{w} to {got[1]}x{got[2]}, which is not the "
                             f"requested {scale}x")


# --- the generators that ship with the package: models/ in the repository, srgan_tf.weights installed ---

SHIPPED: dict[str, str] = {"srresnet": "srresnet_x4.keras", "srgan": "srgan_x4.keras"}


def _shipped_folder() -> Path:
    """The installed package srgan_tf.weights (the repository's models/ folder) as a folder on disk."""
    from importlib import resources

    return Path(str(resources.files("srgan_tf.weights")))


def shipped_model_path(name: str) -> Path:
    """The installed file of the shipped generator `name` (a key of SHIPPED).

    Raises ModelLoadError (one line, naming the file) for a name that is not shipped or a file missing
    from this installation.
    """
    if name not in SHIPPED:
        raise ModelLoadError(f"{name}: not a shipped model (the shipped ones are {', '.join(SHIPPED)})")
    path = _shipped_folder() / SHIPPED[name]
    if not path.is_file():
        raise ModelLoadError(f"{name}: the shipped model file {SHIPPED[name]} is missing (looked in {path.parent})")
    return path


def load_generator(spec: str | os.PathLike) -> keras.Model:
    """A saved generator as an uncompiled Keras model, loaded in Keras' safe mode with the project's layers
    registered. `spec` is a `.keras` file or a shipped model's name (a key of SHIPPED: "srresnet", "srgan").

    Raises ModelLoadError (one-line message) for a missing, corrupt or non-Keras file; it does not check
    that the model is a generator of some scale (load_upscaler does).
    """
    import keras

    import srgan_tf.models  # noqa: F401 - registers PixelShuffle and BicubicUpsample for deserialisation

    spec = str(spec)
    path = shipped_model_path(spec) if spec in SHIPPED else Path(spec)
    if not path.is_file():
        raise ModelLoadError(f"{spec}: no such file" + ("" if path.suffix else
                                                        f" (and not a shipped model: {', '.join(SHIPPED)})"))
    if path.suffix.lower() != ".keras":
        raise ModelLoadError(f"{spec}: not a .keras file")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{spec}: not a valid .keras archive (truncated or corrupt)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for bad archives
        raise ModelLoadError(f"{spec}: cannot load Keras model ({first_line(e)})") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{spec}: holds a {type(model).__name__}, not a Keras model")
    return model


def _load_keras(spec: str, scale: int, precision: str = "float32") -> Upscaler:
    return upscaler_from_keras(load_generator(spec), scale, name=Path(spec).stem, source=spec,
                               precision=precision)


def upscaler_from_keras(
    model, scale: int = 4, name: str | None = None, source: str | None = None, fast: bool = True,
    precision: str = "float32",
) -> Upscaler:
    """Wraps an in-memory Keras generator ([N, h, w, 3] in [0, 1] -> [N, scale*h, scale*w, 3] in [-1, 1]),
    e.g. the one being trained, as an Upscaler. Raises ModelLoadError if it is not such a generator;
    `source` names it in that message (default: `name`, then the model's own name). `fast=False` runs
    `model` itself (as validation during training does: no new variables inside a strategy's scope).
    `precision="bfloat16"` computes the feature maps in bfloat16 (inference_graph.with_precision)."""
    from srgan_tf.inference_graph import GraphError, fast_parts, with_precision

    name = name or model.name
    _check_generator(model, source or name, scale)
    model = with_precision(model, precision)
    # A generator of srgan_tf.models runs in its faster, equal form (srgan_tf.inference_graph), and can be
    # tiled at two levels; any other generator runs as it is.
    graph, split = model, None
    if fast:
        with contextlib.suppress(GraphError):  # not a generator of srgan_tf.models: run it as it is
            graph, split = fast_parts(model)

    # A graph function frees each layer's activations as soon as they are used: half the peak memory and
    # time of an eager call, which keeps every intermediate alive. Sizes vary, so shapes stay unknown.
    run = tf.function(lambda x: graph(x, training=False), reduce_retracing=True)

    def predict_float(x: np.ndarray) -> np.ndarray:
        y = run(tf.convert_to_tensor(x))
        return (np.asarray(y, dtype=np.float32) + 1.0) / 2.0  # tanh [-1, 1] -> [0, 1]

    return Upscaler(name=name, scale=scale, predict_float=predict_float, split=split)


# --- SavedModel folders, .tflite and .onnx files written by `python -m srgan_tf.export` ---


def _artifact_name(path: Path) -> str:
    # serving/<name>/<version>/ -> "<name>_v<version>"
    return f"{path.parent.name}_v{path.name}" if path.name.isdigit() else path.name


def _check_artifact(upscaler: Upscaler, spec: str, scale: int) -> Upscaler:
    """Raises ModelLoadError unless `upscaler` maps a uint8 probe image to `scale` times its size."""
    try:
        got = upscaler(np.zeros((_PROBE_SIZE, _PROBE_SIZE, 3), np.uint8)).shape
    except Exception as e:  # any failure here means the model is unusable
        raise ModelLoadError(f"{spec}: fails on a {_PROBE_SIZE}x{_PROBE_SIZE} test image "
                             f"({first_line(e)})") from None
    if got != (scale * _PROBE_SIZE, scale * _PROBE_SIZE, 3):
        raise ModelLoadError(f"{spec}: upscales {_PROBE_SIZE}x{_PROBE_SIZE} to {got[0]}x{got[1]}x{got[2]}, "
                             f"which is not the requested {scale}x")
    return upscaler


def _load_savedmodel(spec: str, scale: int) -> Upscaler:
    """A SavedModel written by `python -m srgan_tf.export`: `upscale_float` for floats, `serving_default`
    for uint8."""
    try:
        loaded = tf.saved_model.load(spec)
    except Exception as e:  # corrupt protos, missing variables, unknown ops
        raise ModelLoadError(f"{spec}: cannot load SavedModel ({first_line(e)})") from None
    missing = [s for s in ("serving_default", "upscale_float") if s not in loaded.signatures]
    if missing:
        raise ModelLoadError(f"{spec}: SavedModel has no {' or '.join(missing)} signature (expected the "
                             "layout `python -m srgan_tf.export` writes)")
    signatures = loaded.signatures  # keeps `loaded`, which owns the variables, alive

    def predict_float(x: np.ndarray) -> np.ndarray:
        return signatures["upscale_float"](images=tf.constant(x, tf.float32))["images"].numpy()

    def upscale_uint8(lr: np.ndarray) -> np.ndarray:
        return signatures["serving_default"](images=tf.constant(lr[None]))["images"].numpy()[0]

    upscaler = Upscaler(_artifact_name(Path(spec)), scale, predict_float, upscale_uint8)
    return _check_artifact(upscaler, spec, scale)


def load_tflite(spec: str, scale: int = 4, backend: str | None = None) -> Upscaler:
    """A .tflite model mapping [N, h, w, 3] in [0, 1] to [0, 1], float32 or quantized (any quantized
    tensor is converted with its own scale and zero point), as an Upscaler. Not thread-safe.

    `backend` is one of litert.TFLITE_BACKENDS, default the first of `litert.tflite_backends()`: LiteRT's CompiledModel
    where installed, else an Interpreter. Raises ModelLoadError for an unusable file or a missing runtime.
    """
    from srgan_tf import litert

    available = litert.tflite_backends()
    if not available:
        raise ModelLoadError(f"{spec}: {litert.LITERT_MISSING}")
    backend = backend or available[0]
    if backend not in available:
        raise ModelLoadError(f"{spec}: TFLite backend {backend!r} is not installed (have: {', '.join(available)})")
    try:
        runner = litert.runner(spec, backend)
    except Exception as e:  # the runtimes raise ValueError or RuntimeError for bad flatbuffers
        raise ModelLoadError(f"{spec}: cannot load TFLite model ({first_line(e)})") from None
    shape = list(runner.input["shape"])
    if len(shape) != 4 or shape[-1] != 3:
        raise ModelLoadError(f"{spec}: not a generator (expected one [N, h, w, 3] input and one output)")

    def predict_float(x: np.ndarray) -> np.ndarray:
        return _dequantize(runner.run(_quantize(x, runner.input)), runner.output)

    upscaler = Upscaler(Path(spec).stem, scale, predict_float)
    upscaler.backend = backend
    return _check_artifact(upscaler, spec, scale)


def _load_tflite(spec: str, scale: int) -> Upscaler:
    return load_tflite(spec, scale)


def _load_onnx(spec: str, scale: int) -> Upscaler:
    """An .onnx model ([N, h, w, 3] in [0, 1] -> [0, 1]) run by ONNX Runtime on the CPU (the optional extra
    `onnx`). The whole image at once: ONNX models are not tiled."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError(f"{spec}: running an ONNX model needs onnxruntime, which is not installed: "
                             "pip install 'srgan-tf[onnx]'") from None
    try:
        session = ort.InferenceSession(spec, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph errors for bad files
        raise ModelLoadError(f"{spec}: cannot load ONNX model ({first_line(e)})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        raise ModelLoadError(f"{spec}: not a generator (expected one [N, h, w, 3] input and one output)")
    name = inputs[0].name

    def predict_float(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]

    upscaler = Upscaler(Path(spec).stem, scale, predict_float)
    upscaler.backend = f"onnxruntime {ort.__version__} CPU"
    return _check_artifact(upscaler, spec, scale)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    s, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / s + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if y.dtype == np.float32:
        return y
    s, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * s


_LOADERS: dict[str, Callable[[str, int], Upscaler]] = {
    "bicubic": _load_bicubic,
    "keras": _load_keras,
    "savedmodel": _load_savedmodel,
    "tflite": _load_tflite,
    "onnx": _load_onnx,
}


def _spec_kind(spec: str) -> str:
    """One of _LOADERS' keys, or ModelLoadError for a spec that is none of them."""
    if spec == "bicubic":
        return "bicubic"
    path = Path(spec)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelLoadError(f"{spec}: a folder without saved_model.pb, so not a SavedModel")
    kind = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}.get(path.suffix.lower())
    if not path.exists():
        raise ModelLoadError(f"{spec}: no such file" + ("" if kind else " (and not 'bicubic' nor a shipped model: "
                                                        f"{', '.join(SHIPPED)})"))
    if kind is None:
        raise ModelLoadError(f"{spec}: unknown model kind; expected 'bicubic', a .keras file, a SavedModel "
                             "folder, a .tflite or an .onnx file")
    return kind



def load_upscaler(spec: str, scale: int = 4, precision: str = "float32") -> Upscaler:
    """Loads `spec` as an `Upscaler` of factor `scale`.

    `spec` is "bicubic" (MATLAB-compatible bicubic interpolation, see srgan_tf.imresize), a shipped
    generator's name ("srresnet", "srgan": the files SHIPPED names, see shipped_model_path) or the path of a
    `.keras` generator mapping [N, h, w, 3] in [0, 1] to [N, scale*h, scale*w, 3] in [-1, 1] (loaded in
    Keras' safe mode), or of a SavedModel folder, `.tflite` or `.onnx` file written by `python -m
    srgan_tf.export` (they map [0, 1] to [0, 1]; see srgan_tf.export; .onnx needs the `onnx` extra).
    Raises ModelLoadError (one-line message) for a missing, corrupt or unsupported spec (a shipped model
    whose file is not installed included), a model that is not such a generator, or one whose factor is
    not `scale`. `precision` "bfloat16" (Keras generators only) computes the feature maps in bfloat16:
    faster on CPUs with AMX or AVX512-BF16 (see BENCHMARKS.md).
    """
    from srgan_tf.inference_graph import PRECISIONS

    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
        raise ModelLoadError(f"scale must be a positive integer, got {scale!r}")
    spec = str(spec)
    if spec in SHIPPED:
        spec = str(shipped_model_path(spec))
    kind = _spec_kind(spec)
    if precision == "float32":
        return _LOADERS[kind](spec, int(scale))
    if kind != "keras":
        raise ModelLoadError(f"{spec}: precision {precision} applies to .keras generators and shipped models only")
    return _load_keras(spec, int(scale), precision)
