"""The TF Serving SavedModel: `serving/<name>/<version>/` with three signatures, a warm-up file and metadata.

Signatures (input and output names are what TF Serving's REST and gRPC APIs use):

- `serving_default`: `images` uint8 [batch, h, w, 3] -> `images` uint8 [batch, s*h, s*w, 3];
- `upscale_float`: `images` float32 in [0, 1] -> `images` float32 in [0, 1], same shapes;
- `upscale_image`: `image_bytes` string [batch] (PNG, JPEG, GIF or BMP files) -> `image_bytes` string
  [batch] (PNG files). The `_bytes` suffix makes TF Serving's REST API return `{"b64": ...}` objects.

Every signature is the Keras generator followed by tanh [-1, 1] -> [0, 1] and, for uint8 outputs,
rounding half up and clipping, all inside the graph. The generator runs in tiles inside the graph
(export/tiled.py, the CLI's tile plan), so a request's memory is set by the tile and by its output, not by
the activations of the whole image; the result equals the whole-image one within float round-off.
Requests run one at a time (`one_at_a_time`): concurrent ones wait, so the process holds one request's
working memory however many arrive together.
Requests above `max_pixels` input pixels (batch*h*w for `serving_default`; a quarter of it for
`upscale_float`, whose float32 output takes 4 bytes per value instead of 1; the images' h*w, each and in all,
for `upscale_image`, checked from the file headers before decoding where the format allows: a BMP's size is
known only once decoded, and checked then image by image) and bytes that are not an image fail with
InvalidArgument.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from srgan_tf.images import atomic_write
from srgan_tf.tiling import SAVEDMODEL_METADATA_FILE

from . import ExportError
from .tiled import TiledGraph, tiled_graph
from .warmup import WARMUP_FILE, write_warmup

SERVING_DEFAULT = "serving_default"
UPSCALE_FLOAT = "upscale_float"
UPSCALE_IMAGE = "upscale_image"
IMAGES = "images"
IMAGE_BYTES = "image_bytes"

# Input pixels per request (uint8 outputs). Before in-graph tiling one 512x512 request to the default
# generator peaked at 5.2 GB of process memory on CPU, a 256x256 one at 2.0 GB; bench/serving_memory.py
# measures the tiled graphs (README, Serving).
DEFAULT_MAX_PIXELS = 2048 * 2048
# upscale_float's limit is max_pixels // FLOAT_LIMIT_DIVISOR: its output, float32, is 4x the uint8 bytes.
FLOAT_LIMIT_DIVISOR = 4
# upscale_image's, per image, is max_pixels itself. While the PNG is encoded the request holds its uint8 output
# and the PNG (as large again for an incompressible image) at once: at 2048x2048 a full-size generator's request
# peaks above 1.5 GB with glibc's malloc, below it with the Dockerfile's jemalloc (README, Serving).
_WARMUP_SIDE = 16

_PNG = b"\x89PNG\r\n\x1a\n"
# The name of the mutex every signature holds while it runs (see one_at_a_time).
REQUEST_LOCK = "srgan_tf_one_request_at_a_time"


def one_at_a_time(fn: Callable[[], dict]) -> dict:
    """fn()'s outputs, computed while holding the process's request lock.

    The lock is a mutex found by name in the device's resource manager, so every signature of every loaded
    copy of the model in the process shares it (a tf.CriticalSection cannot be exported: it would capture an
    untracked resource). Concurrent requests therefore run one after the other. On a CPU one request's
    convolutions already use every core, so throughput should stay while the first of them returns sooner, and
    memory is that of one request (README, Serving, has the memory measured). The lock is held until the
    outputs are computed and released when they are returned.
    """
    mutex = tf.raw_ops.MutexV2(container="", shared_name=REQUEST_LOCK)
    lock = tf.raw_ops.MutexLock(mutex=mutex)
    with tf.control_dependencies([lock]):
        outputs = fn()
    with tf.control_dependencies(list(outputs.values())):
        released = tf.raw_ops.ConsumeMutexLock(mutex_lock=lock)
    with tf.control_dependencies([released]):
        return {k: tf.identity(v) for k, v in outputs.items()}


def to_unit_range(y: tf.Tensor) -> tf.Tensor:
    """tanh output [-1, 1] -> [0, 1], clipped against round-off."""
    return tf.clip_by_value(y * 0.5 + 0.5, 0.0, 1.0)


def to_uint8(x: tf.Tensor) -> tf.Tensor:
    """[0, 1] floats -> uint8, rounding half up (as srgan_tf.loader does)."""
    return tf.cast(tf.floor(tf.clip_by_value(x, 0.0, 1.0) * 255.0 + 0.5), tf.uint8)


def _checked(images: tf.Tensor, max_pixels: int, what: str) -> tf.Tensor:
    """`images` [N, h, w, 3], made to depend on assertions that N, h, w >= 1 and N*h*w <= max_pixels."""
    shape = tf.shape(images, out_type=tf.int64)
    checks = [
        tf.debugging.assert_positive(
            shape[:3], message=f"{what}: batch, height and width must be at least 1"),
        tf.debugging.assert_less_equal(
            shape[0] * shape[1] * shape[2], tf.constant(max_pixels, tf.int64),
            message=f"{what}: more than the {max_pixels}-pixel limit of this model (batch*height*width); "
            "send smaller images or tiles",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def _header_pixels(data: tf.Tensor) -> tf.Tensor:
    """height*width read from a PNG, GIF or JPEG header without decoding (int64 scalar), 0 if unknown."""

    def be32(offset):  # big-endian uint32 at `offset`
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, 4), tf.uint8), tf.int64)
        return ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]

    def le16(offset):
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, 2), tf.uint8), tf.int64)
        return b[0] + 256 * b[1]

    length = tf.strings.length(data)
    png = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 8), _PNG), length >= 24)
    gif = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"), length >= 10)
    jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
    return tf.case(
        [
            (png, lambda: be32(16) * be32(20)),
            (gif, lambda: le16(6) * le16(8)),
            (jpeg, lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64))),
        ],
        default=lambda: tf.constant(0, tf.int64),
        exclusive=False,
    )


def _decode(data: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """One encoded image -> uint8 [1, h, w, 3] (RGB; first frame of a GIF; alpha dropped)."""
    prefix = tf.strings.substr(data, 0, 8)
    known = tf.reduce_any(tf.stack([
        tf.equal(prefix, _PNG),
        tf.equal(tf.strings.substr(prefix, 0, 3), b"\xff\xd8\xff"),
        tf.equal(tf.strings.substr(prefix, 0, 4), b"GIF8"),
        tf.equal(tf.strings.substr(prefix, 0, 2), b"BM"),
    ]))
    is_image = tf.debugging.Assert(
        known, [f"{UPSCALE_IMAGE}: input bytes are not a PNG, JPEG, GIF or BMP file"])
    with tf.control_dependencies([is_image]):
        small = tf.debugging.assert_less_equal(
            _header_pixels(data), tf.constant(max_pixels, tf.int64),
            message=f"{UPSCALE_IMAGE}: image is larger than the {max_pixels}-pixel limit of this model",
        )
    with tf.control_dependencies([small]):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return _checked(image[None], max_pixels, UPSCALE_IMAGE)


def max_float_pixels(max_pixels: int) -> int:
    """upscale_float's pixel limit for an export whose uint8 signatures accept `max_pixels`."""
    return max(1, max_pixels // FLOAT_LIMIT_DIVISOR)


def _as_uint8(y: tf.Tensor) -> tf.Tensor:
    return to_uint8(to_unit_range(y))


def serving_functions(
    model: keras.Model, max_pixels: int = DEFAULT_MAX_PIXELS, graph: TiledGraph | None = None,
) -> dict[str, tf.types.experimental.GenericFunction]:
    """The three signature functions (see the module docstring), as tf.functions with input signatures.
    `graph` is the tile plan (default: tiled_graph(model))."""
    graph = graph or tiled_graph(model)
    # One traced graph per dtype, called by the signatures that share it: each copy of the tiled graph costs the
    # server memory when the SavedModel is loaded. [N, h, w, 3] -> [N, s*h, s*w, 3]: uint8 to uint8 (made
    # float window by window) and float32 to float32.
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def tiled_uint8(x):
        return graph.upscale(x, _as_uint8, tf.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def tiled_float(x):
        return graph.upscale(x, to_unit_range, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES)])
    def serving_default(images):
        return one_at_a_time(lambda: {IMAGES: tiled_uint8(_checked(images, max_pixels, SERVING_DEFAULT))})

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=IMAGES)])
    def upscale_float(images):
        return one_at_a_time(lambda: {IMAGES: tiled_float(_checked(images, max_float_pixels(max_pixels),
                                                                      UPSCALE_FLOAT))})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)])
    def upscale_image(image_bytes):
        def one(data):
            return tf.io.encode_png(tiled_uint8(_decode(data, max_pixels))[0])

        def each():  # map_fn stacks its results: a copy of every PNG, which a single image does without
            # The batch's pixels in all, from the headers, before any image is decoded (each image's own limit is
            # checked as it is decoded).
            pixels = tf.map_fn(_header_pixels, image_bytes, fn_output_signature=tf.int64)
            within = tf.debugging.assert_less_equal(
                tf.reduce_sum(pixels), tf.constant(max_pixels, tf.int64),
                message=f"{UPSCALE_IMAGE}: the images have more than the {max_pixels}-pixel limit of this model in "
                "all; send fewer or smaller images")
            with tf.control_dependencies([within]):
                return tf.map_fn(one, image_bytes, parallel_iterations=1,
                                 fn_output_signature=tf.TensorSpec([], tf.string))

        return one_at_a_time(lambda: {IMAGE_BYTES: tf.cond(tf.size(image_bytes) == 1,
                                                           lambda: one(image_bytes[0])[None], each)})

    return {SERVING_DEFAULT: serving_default, UPSCALE_FLOAT: upscale_float, UPSCALE_IMAGE: upscale_image}


def warmup_requests() -> list[tuple[str, dict[str, np.ndarray]]]:
    """One small request per signature, in TF Serving's input names."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, _WARMUP_SIDE, _WARMUP_SIDE, 3), dtype=np.uint8)
    png = tf.io.encode_png(image[0]).numpy()
    return [
        (SERVING_DEFAULT, {IMAGES: image}),
        (UPSCALE_FLOAT, {IMAGES: image.astype(np.float32) / 255.0}),
        (UPSCALE_IMAGE, {IMAGE_BYTES: np.array([png], dtype=object)}),
    ]


def next_version(model_dir: Path) -> int:
    """1 + the largest integer-named version folder in `model_dir` (1 if none)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export_savedmodel(
    model: keras.Model, serving_dir: str | os.PathLike, name: str, version: int, metadata: dict,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Writes `serving_dir/name/version/` and returns it; an existing version is never overwritten.

    The version folder appears complete or not at all (built under a dot-name TF Serving ignores, then
    renamed), so a running server watching `serving_dir/name` never loads a half-written model.
    `metadata` (JSON-able) is stored as assets.extra/srgan_tf.json.
    """
    target = Path(serving_dir) / name / str(version)
    if target.exists():
        raise ExportError(f"{target} already exists; pick another --version")
    tmp = target.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        graph = tiled_graph(model)
        functions = serving_functions(model, max_pixels, graph)
        # Signatures only, on a module that tracks the model's variables and nothing else. keras.export's
        # ExportArchive would also store each function as an attribute, which tf.saved_model.save traces again
        # in its save context: a second copy of every graph in the file (4.2 MB instead of 2.1 with the default
        # generator), which a server instantiates, and holds, when it loads the model. The Keras model itself
        # would bring its own traced call (the untiled generator), held the same way.
        module = tf.Module()
        module.weights = list(model.variables)
        tf.saved_model.save(module, str(tmp), signatures={k: fn.get_concrete_function() for k, fn in functions.items()})
        extra = tmp / "assets.extra"
        extra.mkdir()
        write_warmup(extra / WARMUP_FILE, name, warmup_requests())
        info = {**metadata, "max_pixels": max_pixels, "max_float_pixels": max_float_pixels(max_pixels),
                "max_image_pixels": max_pixels, "tiling": graph.form}
        (extra / SAVEDMODEL_METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_models_config(serving_dir: str | os.PathLike, container_root: str = "/models") -> Path:
    """Writes `serving_dir/models.config` listing every model folder in `serving_dir` that holds a version.

    Paths are as seen inside the serving container, where `serving_dir` is mounted or copied at
    `container_root`. TF Serving serves the latest version of each model.
    """
    serving_dir = Path(serving_dir)
    names = sorted(p.name for p in serving_dir.iterdir() if p.is_dir() and next_version(p) > 1)
    entries = "".join(
        f'  config {{\n    name: "{n}"\n    base_path: "{container_root}/{n}"\n'
        '    model_platform: "tensorflow"\n  }\n'
        for n in names
    )
    path = serving_dir / "models.config"
    atomic_write(path, lambda tmp: Path(tmp).write_text(f"model_config_list {{\n{entries}}}\n"))
    return path
