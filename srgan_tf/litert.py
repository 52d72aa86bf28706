"""The TFLite runtimes: LiteRT's CompiledModel API (ai-edge-litert 2.x, preferred), else an Interpreter (LiteRT's,
then TensorFlow's deprecated tf.lite.Interpreter). `runner(path, backend)` runs a one-input, one-output
.tflite model on numpy arrays; srgan_tf.loader wraps it as an Upscaler.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

TFLITE_BACKENDS = ("compiled_model", "interpreter")
LITERT_MISSING = "no TFLite runtime: LiteRT (ai-edge-litert, a srgan-tf dependency) is missing; reinstall srgan-tf"


def tflite_backends() -> tuple[str, ...]:
    """The TFLite runtimes of this installation, preferred first: "compiled_model" (LiteRT's CompiledModel
    API, ai-edge-litert 2.x) and "interpreter" (LiteRT's Interpreter, else tf.lite.Interpreter)."""
    import importlib.util

    found = []
    with contextlib.suppress(ImportError):
        if importlib.util.find_spec("ai_edge_litert.compiled_model") is not None:
            found.append("compiled_model")
    with contextlib.suppress(ImportError):
        if importlib.util.find_spec("ai_edge_litert.interpreter") is not None or hasattr(tf.lite, "Interpreter"):
            found.append("interpreter")
    return tuple(found)


def tflite_interpreter(model_path: str | None = None, model_content: bytes | None = None,
                       num_threads: int | None = None, delegates: bool = True):
    """A TFLite Interpreter for a model file or bytes, using every CPU core by default.

    LiteRT's (`ai_edge_litert.interpreter`) when installed, else TF's deprecated `tf.lite.Interpreter` (same
    API); ImportError naming the package to install when neither exists. `delegates=True` lets the runtime
    apply its default delegate (XNNPACK on CPU); False runs the builtin kernels only. Models are run through
    `srgan_tf.loader.load_tflite`, which prefers LiteRT's CompiledModel; this stays for what only the Interpreter shows
    (tensor and op details, delegate partitions).
    """
    import warnings

    try:
        from ai_edge_litert import interpreter as litert

        interpreter_class, resolvers = litert.Interpreter, litert.OpResolverType
    except ImportError:
        if not hasattr(tf.lite, "Interpreter"):
            raise ImportError(LITERT_MISSING) from None
        interpreter_class, resolvers = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    resolver = resolvers.AUTO if delegates else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        return interpreter_class(model_path=model_path, model_content=model_content,
                                 num_threads=num_threads or os.cpu_count() or 1,
                                 experimental_op_resolver_type=resolver)


class InterpreterRunner:
    """One-input, one-output .tflite model on an Interpreter; `run` resizes when the input shape changes."""

    def __init__(self, path: str):
        self._interpreter = tflite_interpreter(model_path=path)
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{len(inputs)} inputs and {len(outputs)} outputs")
        self.input, self.output = inputs[0], outputs[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        index = self.input["index"]
        if tuple(self._interpreter.get_input_details()[0]["shape"]) != x.shape:
            self._interpreter.resize_tensor_input(index, list(x.shape))
            self._interpreter.allocate_tensors()
        self._interpreter.set_tensor(index, x)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self.output["index"])


_litert_environment = None


class CompiledModelRunner:
    """One-input, one-output .tflite model as a LiteRT CompiledModel on the CPU (XNNPACK, every core).

    A CompiledModel resizes a dynamic input in place (`resize_input_tensor`, no recompiling): `run` does so
    when the input shape changes and keeps the buffers of the current shape only. The CompiledModel API
    does not report quantization, so it is read from the flatbuffer.
    """

    def __init__(self, path: str):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        from srgan_tf.cli import muted_stderr

        global _litert_environment
        options = Options(HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=os.cpu_count() or 1))
        with muted_stderr(True):  # LiteRT logs each accelerator it registers, at INFO level, to fd 2
            if _litert_environment is None:  # one for all models: it loads the accelerators, and logs
                from ai_edge_litert.environment import Environment

                _litert_environment = Environment.create()
            self._model = CompiledModel.from_file(path, environment=_litert_environment, options=options)
        signatures = self._model.get_signature_list()
        if len(signatures) != 1:
            raise ValueError(f"{len(signatures)} signatures, expected one")
        ((self._signature, names),) = signatures.items()
        if len(names["inputs"]) != 1 or len(names["outputs"]) != 1:
            raise ValueError(f"{len(names['inputs'])} inputs and {len(names['outputs'])} outputs")
        self._output_name = names["outputs"][0]
        (details_in,) = self._model.get_input_tensor_details(self._signature).values()
        (details_out,) = self._model.get_output_tensor_details(self._signature).values()
        self.input, self.output = (
            {"index": d["index"], "dtype": np.dtype(d["dtype"]), "shape": np.asarray(d["shape"]),
             "quantization": tflite_quantization(path, d["index"])}
            for d in (details_in, details_out))
        self._shape = None

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self._shape:
            self._model.resize_input_tensor(0, list(x.shape))
            self._inputs, self._outputs = self._model.create_input_buffers(0), self._model.create_output_buffers(0)
            details = self._model.get_output_tensor_details(self._signature)[self._output_name]
            self._shape, self._output_shape = x.shape, tuple(details["shape"])
        self._inputs[0].write(np.ascontiguousarray(x))
        self._model.run_by_index(0, self._inputs, self._outputs)
        size = int(np.prod(self._output_shape))
        return self._outputs[0].read(size, self.output["dtype"]).reshape(self._output_shape)


def tflite_quantization(path: str, tensor: int) -> tuple[float, int]:
    """(scale, zero point) of a tensor of the first signature's subgraph of a .tflite file, as the
    Interpreter reports it ((0.0, 0): not quantized)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    subgraph = model.SignatureDefs(0).SubgraphIndex() if model.SignatureDefsLength() else 0
    params = model.Subgraphs(subgraph).Tensors(tensor).Quantization()
    if params is None or params.ScaleLength() == 0:
        return 0.0, 0
    return float(params.Scale(0)), int(params.ZeroPoint(0))


def runner(path: str, backend: str) -> CompiledModelRunner | InterpreterRunner:
    """A runner of `path` on `backend` (one of TFLITE_BACKENDS); the runtimes raise ValueError or
    RuntimeError for bad flatbuffers."""
    return CompiledModelRunner(path) if backend == "compiled_model" else InterpreterRunner(path)
