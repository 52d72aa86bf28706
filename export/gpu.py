"""Would the mobile GPU delegate run a TFLite model whole? Its op rules, checked on the flatbuffer.

TFLite's model analyzer (`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`, LiteRT's
`ModelAnalyzer`) no longer checks anything in GPU mode: TF 2.21 and ai-edge-litert 2.3 call a model with
TOPK_V2, CUMSUM and a rank-5 RESHAPE "compatible" (tensorflow/tensorflow#77042). `gpu_compatibility` still
runs it and keeps any warning it prints, and applies the delegate's rules itself: the op must be one the
GPU delegate implements, every tensor it touches at most 4-D (BHWC), and the conditions on its inputs and
options below hold (constant weights, axes and shapes; fused activations the delegate has; slice masks;
block sizes). An op missing from these tables counts as rejected.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

# Ops the delegate takes with one runtime (non-constant) input, or with two runtime inputs or one runtime
# and one constant input; the other supported ops have the checks in _CHECKS.
_UNARY = {"ABS", "CEIL", "COS", "ELU", "EXP", "FLOOR", "GELU", "HARD_SWISH", "LOG", "LOGISTIC", "NEG", "RSQRT",
          "SIGN", "SIN", "SQRT", "SQUARE", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "QUANTIZE",
          "TRANSPOSE", "TILE", "SOFTMAX", "AVERAGE_POOL_2D", "MAX_POOL_2D"}
_BINARY = {"SUB", "DIV", "MAXIMUM", "MINIMUM", "POW", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD", "EQUAL",
           "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "LOGICAL_AND", "ATAN2"}
_FREE = {"CONCATENATION", "PACK", "SPLIT", "SPLIT_V", "BATCH_MATMUL", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
_ACTIVATIONS = {0, 1, 2, 3, 4}  # NONE, RELU, RELU_N1_TO_1, RELU6, TANH (not SIGN_BIT)
_MAX_RANK = 4


class _Op:
    """One operator of subgraph 0 with what the rules ask of it."""

    def __init__(self, model, subgraph, op, name: str, folded: set[int]):
        self.name, self.options = name, op.builtinOptions
        self.inputs = [self._tensor(model, subgraph, t, folded) for t in op.inputs if t >= 0]
        self.outputs = [self._tensor(model, subgraph, t, folded) for t in op.outputs]

    @staticmethod
    def _tensor(model, subgraph, index: int, folded: set[int]) -> dict:
        tensor = subgraph.tensors[index]
        shape = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
        data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
        constant = (data is not None and len(data) > 0) or index in folded
        values = None
        if constant and tensor.type == 2:  # INT32: shapes, axes, paddings
            values = np.frombuffer(bytes(data), np.int32).tolist()
        return {"shape": [] if shape is None else [int(d) for d in shape], "const": constant, "values": values,
                "type": tensor.type}

    @property
    def runtime_inputs(self) -> int:
        return sum(not t["const"] for t in self.inputs)


def _activation(op: _Op) -> str | None:
    fused = getattr(op.options, "fusedActivationFunction", 0)
    return None if fused in _ACTIVATIONS else f"fused activation {fused} (SIGN_BIT) is not implemented"


def _elementwise(op: _Op, unary: bool) -> str | None:
    if unary:
        return None if op.runtime_inputs == 1 and len(op.inputs) == 1 else "needs exactly one runtime input"
    if len(op.inputs) != 2 or op.runtime_inputs < 1:
        return "needs two inputs, at least one of them a runtime tensor"
    return _activation(op)


def _broadcast(op: _Op) -> str | None:
    if len(op.inputs) != 2:
        return f"{op.name} needs two inputs"
    a, b = (t["shape"] for t in op.inputs)
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x != y and 1 not in (x, y) and -1 not in (x, y):
            return f"cannot broadcast {a} with {b}"
    if op.name == "MUL" and len(a) == len(b):
        known = [(x, y) for x, y in zip(a, b, strict=True) if -1 not in (x, y)]
        if any(x < y for x, y in known) and any(y < x for x, y in known):
            return f"neither input covers the other ({a} x {b}; a matrix product, not a MUL)"
    return _activation(op)


def _conv(op: _Op) -> str | None:
    if op.runtime_inputs > 2 or len(op.outputs) != 1:
        return "needs one or two runtime inputs and one output"
    o = op.options
    if min(o.strideH, o.strideW, o.dilationHFactor, o.dilationWFactor) <= 0:
        return "strides and dilations must be positive"
    if op.name == "DEPTHWISE_CONV_2D" and o.depthMultiplier != 1 and op.inputs[0]["shape"][-1] != 1:
        return "depth_multiplier != 1 needs a 1-channel input"
    return _activation(op)


def _block(op: _Op) -> str | None:
    if op.runtime_inputs != 1:
        return "needs exactly one runtime input"
    return None if op.options.blockSize > 1 else f"block size {op.options.blockSize} must be > 1"


def _strided_slice(op: _Op) -> str | None:
    o = op.options
    for mask in ("ellipsisMask", "newAxisMask", "shrinkAxisMask"):
        if getattr(o, mask):
            return f"{mask} is not implemented"
    if len(op.inputs) < 4:
        return "needs begin, end and strides inputs"
    return _rank_3_or_4(op)


def _rank_3_or_4(op: _Op) -> str | None:
    rank = len(op.inputs[0]["shape"])
    return None if rank in (3, 4) else f"takes 3-D or 4-D tensors only, not {rank}-D"


def _reshape(op: _Op) -> str | None:
    return None if op.runtime_inputs == 1 else "the new shape must be a constant, not computed at run time"


def _prelu(op: _Op) -> str | None:
    if len(op.inputs) != 2 or not op.inputs[1]["const"]:
        return "alpha must be a constant"
    alpha, channels = op.inputs[1]["shape"], op.inputs[0]["shape"][-1:]
    if len(alpha) > 3 or any(d != 1 for d in alpha[:-1]) or (alpha and alpha[-1:] not in ([1], channels)):
        return f"alpha of shape {alpha} is neither per channel ([C] or [1, 1, C]) nor a scalar"
    return None


def _pad(op: _Op) -> str | None:
    if op.name == "MIRROR_PAD" and op.options.mode != 0:
        return "only REFLECT mirror padding is implemented"
    if op.runtime_inputs != 1:
        return "the paddings must be a constant"
    shape = op.inputs[1]["shape"]
    return None if shape in ([4, 2], [3, 2]) else f"paddings of shape {shape}, not [4, 2] or [3, 2]"


def _reduce(op: _Op) -> str | None:
    if op.runtime_inputs != 1 or not op.inputs[1]["const"] or op.inputs[1]["type"] != 2:
        return "the axes must be an int32 constant"
    return None


def _resize(op: _Op) -> str | None:
    if op.runtime_inputs != 1:
        return "the output size must be a constant, not computed at run time"
    if op.name == "RESIZE_BILINEAR" and op.options.alignCorners and op.options.halfPixelCenters:
        return "align_corners and half_pixel_centers together"
    return None


def _dequantize(op: _Op) -> str | None:
    return "int16 input is not implemented" if op.inputs[0]["type"] == 7 else None


_CHECKS = {
    "ADD": _broadcast, "MUL": _broadcast, "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv,
    "DEPTH_TO_SPACE": _block, "SPACE_TO_DEPTH": _block, "STRIDED_SLICE": _strided_slice, "SLICE": _rank_3_or_4,
    "RESHAPE": _reshape, "PRELU": _prelu, "PAD": _pad, "PADV2": _pad, "MIRROR_PAD": _pad, "MEAN": _reduce,
    "SUM": _reduce, "REDUCE_MAX": _reduce, "REDUCE_MIN": _reduce, "REDUCE_PROD": _reduce,
    "RESIZE_BILINEAR": _resize, "RESIZE_NEAREST_NEIGHBOR": _resize, "DEQUANTIZE": _dequantize,
    **{name: lambda op: _elementwise(op, unary=True) for name in _UNARY},
    **{name: lambda op: _elementwise(op, unary=False) for name in _BINARY},
    **{name: lambda op: None for name in _FREE},
}


def _reason(op: _Op) -> str | None:
    """Why the GPU delegate would refuse `op`, or None."""
    check = _CHECKS.get(op.name)
    if check is None:
        return "not an op the GPU delegate implements"
    ranks = [len(t["shape"]) for t in op.inputs + op.outputs if not t["const"]]
    if ranks and max(ranks) > _MAX_RANK:
        return f"a {max(ranks)}-D tensor (the delegate's tensors are at most 4-D)"
    return check(op)


def analyzer_report(model_bytes: bytes) -> str:
    """The model analyzer's text for `model_bytes` in GPU-compatibility mode: LiteRT's when installed,
    else TensorFlow's (which prints it; captured here)."""
    try:
        from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer

        return analyzer.ModelAnalyzer(model_bytes, False, True)
    except ImportError:
        import tensorflow as tf

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            tf.lite.experimental.Analyzer.analyze(model_content=model_bytes, gpu_compatibility=True)
        return out.getvalue()


def gpu_compatibility(model_bytes: bytes) -> dict:
    """GPU-delegate readiness of a TFLite flatbuffer (see the module docstring).

    Returns {"compatible": bool, "rejected": [{"subgraph", "index", "op", "reason"}, ...] in graph order,
    "analyzer_warnings": [the analyzer's "GPU COMPATIBILITY WARNING" lines]}; the model is compatible when
    both lists are empty.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import schema_util
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    rejected = []
    for g, subgraph in enumerate(model.subgraphs or []):
        ops = []
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = schema_util.get_builtin_code_from_operator_code(code)
            name = names.get(builtin, str(builtin))
            ops.append((op, (code.customCode or b"CUSTOM").decode() if builtin == schema.BuiltinOperator.CUSTOM
                        else name))
        # The delegate folds a DEQUANTIZE of constant (float16 or int8) weights into the op that reads them.
        folded = {int(op.outputs[0]) for op, name in ops if name == "DEQUANTIZE"
                  and _Op(model, subgraph, op, name, set()).inputs[0]["const"]}
        for i, (op, name) in enumerate(ops):
            reason = _reason(_Op(model, subgraph, op, name, folded))
            if reason:
                rejected.append({"subgraph": g, "index": i, "op": name, "reason": reason})
    warnings = [line.strip() for line in analyzer_report(model_bytes).splitlines()
                if "GPU COMPATIBILITY WARNING" in line]
    return {"compatible": not rejected and not warnings, "rejected": rejected, "analyzer_warnings": warnings}
