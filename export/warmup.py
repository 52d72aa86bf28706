"""TF Serving warm-up records: `assets.extra/tf_serving_warmup_requests`, a TFRecord of PredictionLog protos.

TF Serving replays these requests when it loads a model version, so the first real request does not pay
for graph initialisation. The protos are written directly in protobuf wire format (the few fields used
here are stable parts of tensorflow_serving/apis/{prediction_log,predict,model}.proto), so exporting does
not need the tensorflow-serving-api package; tests parse the file with that package when it is installed.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

WARMUP_FILE = "tf_serving_warmup_requests"

# Field numbers in TF Serving's protos.
_PREDICTION_LOG_PREDICT_LOG = 6
_PREDICT_LOG_REQUEST = 1
_REQUEST_MODEL_SPEC = 1
_REQUEST_INPUTS = 2  # map<string, TensorProto>: repeated entries with key = 1, value = 2
_MODEL_SPEC_NAME = 1
_MODEL_SPEC_SIGNATURE_NAME = 3


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes and sub-messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(model_name: str, signature_name: str, inputs: dict[str, np.ndarray]) -> bytes:
    """The serialized PredictionLog holding one PredictRequest for `signature_name` with `inputs`."""
    spec = _field(_MODEL_SPEC_NAME, model_name.encode()) + _field(
        _MODEL_SPEC_SIGNATURE_NAME, signature_name.encode()
    )
    request = _field(_REQUEST_MODEL_SPEC, spec)
    for key, value in sorted(inputs.items()):
        tensor = tf.make_tensor_proto(value).SerializeToString()
        request += _field(_REQUEST_INPUTS, _field(1, key.encode()) + _field(2, tensor))
    return _field(_PREDICTION_LOG_PREDICT_LOG, _field(_PREDICT_LOG_REQUEST, request))


def write_warmup(
    path: str | os.PathLike, model_name: str, requests: list[tuple[str, dict[str, np.ndarray]]]
) -> None:
    """Writes one PredictionLog per (signature_name, inputs) pair to the TFRecord file `path`."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature_name, inputs in requests:
            writer.write(prediction_log(model_name, signature_name, inputs))
