"""python -m srgan_tf.export on a small generator: SavedModel signatures, warm-up, limits, TFLite variants, report."""

import base64
import dataclasses
import http.server
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from srgan_tf.export import ExportError
from srgan_tf.export.__main__ import main
from srgan_tf.export.gpu import gpu_compatibility
from srgan_tf.export.pipeline import run_export
from srgan_tf.export.report import format_table
from srgan_tf.export.savedmodel import export_savedmodel, max_float_pixels, serving_functions
from srgan_tf.export.tflite import VARIANTS, check_tflite, convert, export_float_savedmodel, relu_form
from srgan_tf.export.tiled import tiled_graph, whole_image
from srgan_tf.export.warmup import WARMUP_FILE
from srgan_tf.images import save_image
from srgan_tf.inference_graph import fast_generator
from srgan_tf.litert import TFLITE_BACKENDS, tflite_backends, tflite_interpreter
from srgan_tf.loader import load_tflite, load_upscaler
from srgan_tf.models import build_generator
from srgan_tf.tiling import artifact_metadata, receptive_radius

REPO = Path(__file__).resolve().parents[1]
REST_EXAMPLES = REPO / "docs" / "rest_examples"
MAX_PIXELS = 256 * 256  # upscale_float's limit, a quarter, fits the largest Set5 LR image exactly


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def generator():
    """build_generator(2, 16): the generator every export of this module is made of."""
    return build_generator(2, 16)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data_or_none, generator):
    """One export of `generator` in every format, reused by the slow tests of this module."""
    root = tmp_path_factory.mktemp("export")
    generator.save(root / "g.keras")
    calib = root / "calib"
    rng = np.random.default_rng(1)
    for i in range(2):  # smooth, photo-like content with the full range of values
        yy, xx = np.mgrid[0:40, 0:56]
        img = 127.5 + 127.5 * np.sin(xx / (3.0 + i))[..., None] * np.cos(yy[..., None] / 5.0 + np.arange(3))
        save_image(calib / f"c{i}.png", np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
    fidelity = None if shared_data_or_none is None else shared_data_or_none / "Set5"
    report = run_export(root / "g.keras", root / "out", calibration_dir=calib, max_pixels=MAX_PIXELS,
                        fidelity_data=fidelity, latency_runs=1, log=lambda _: None)
    return {"root": root, "out": root / "out", "model": generator, "report": report,
            "savedmodel": root / "out" / "serving" / "srgan" / "1"}


@pytest.fixture(scope="module")
def shared_data_or_none():
    """../shared/data when present: the export then measures fidelity on Set5, as the CLI does by default."""
    data = Path(os.environ.get("SRGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
    return data if (data / "Set5" / "HR").is_dir() else None


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported["savedmodel"]))


@pytest.fixture(scope="module")
def served(tmp_path_factory, generator):
    """The SavedModel of `generator` alone, as the export writes it (export_savedmodel of the fast form), loaded:
    the fast tests need none of the other formats, whose conversion and int8 calibration take most of an
    export's time."""
    radius, scale = receptive_radius(generator)
    path = export_savedmodel(fast_generator(generator), tmp_path_factory.mktemp("served"), "srgan", 1,
                             {"scale": scale, "receptive_radius": radius}, MAX_PIXELS)
    return tf.saved_model.load(str(path))


def _keras_unit(model, x_uint8: np.ndarray) -> np.ndarray:
    y = model(x_uint8.astype(np.float32) / 255.0, training=False).numpy()
    return np.clip(y * 0.5 + 0.5, 0.0, 1.0)


def _keras_uint8(model, x_uint8: np.ndarray) -> np.ndarray:
    return np.floor(_keras_unit(model, x_uint8) * 255.0 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------- layout, signatures


@pytest.mark.slow
def test_layout(exported):
    out, sm = exported["out"], exported["savedmodel"]
    assert (sm / "saved_model.pb").is_file() and (sm / "variables").is_dir()
    assert (sm / "assets.extra" / WARMUP_FILE).stat().st_size > 0
    config = (out / "serving" / "models.config").read_text()
    assert 'name: "srgan"' in config and 'base_path: "/models/srgan"' in config
    for variant in VARIANTS:
        assert (out / "tflite" / f"srgan_{variant}.tflite").stat().st_size > 0
    assert not list((out / "serving" / "srgan").glob(".tmp*")), "temporary export folder left behind"
    report = json.loads((out / "report.json").read_text())
    names = [a["name"] for a in report["artifacts"]]
    assert names == ["keras", "savedmodel v1"] + [f"tflite {v}" for v in VARIANTS]
    assert all(a["size_bytes"] > 0 and a["latency_ms"] > 0 for a in report["artifacts"])


@pytest.mark.slow
def test_metadata_records_scale_and_receptive_radius(exported):
    radius = receptive_radius(exported["model"])[0]
    for path in [exported["savedmodel"], *sorted((exported["out"] / "tflite").glob("*.tflite"))]:
        meta = artifact_metadata(path)
        assert meta["scale"] == 4 and meta["receptive_radius"] == radius, path


def test_the_savedmodel_holds_the_signatures_and_the_weights_only(served):
    """The saved root tracks the generator's variables, not the Keras model, whose own traced (untiled) call a
    server would otherwise load and hold beside the signatures."""
    assert not hasattr(served, "model")
    signature_vars = {v.name for v in served.signatures["serving_default"].variables}
    assert {v.name for v in served.weights} == signature_vars


@pytest.mark.slow
def test_every_format_runs_the_fast_output_layer(exported, loaded):
    """The exports hold the 5x5 convolution to 4 * 3 channels before the last shuffle (kernel [5, 5, 4 * 16,
    12] for 16 filters), not the trained 9x9 one to 3 channels; the float tests below pin that it is the
    same function."""
    fast, trained = (5, 5, 64, 12), (9, 9, 16, 3)
    shapes = {tuple(v.shape) for v in loaded.signatures["serving_default"].variables}
    assert fast in shapes and trained not in shapes
    assert artifact_metadata(exported["savedmodel"])["inference_graph"].startswith("fast")
    for variant in VARIANTS:
        path = exported["out"] / "tflite" / f"srgan_{variant}.tflite"
        shapes = {tuple(d["shape"]) for d in tflite_interpreter(model_path=str(path)).get_tensor_details()}
        ohwi = lambda k: (k[3], k[0], k[1], k[2])  # noqa: E731 (TFLite stores conv kernels as OHWI)
        assert ohwi(fast) in shapes and ohwi(trained) not in shapes, variant


@pytest.mark.slow
def test_signatures_have_serving_names_and_types(loaded):
    sigs = loaded.signatures
    assert set(sigs) == {"serving_default", "upscale_float", "upscale_image"}
    expect = {"serving_default": ("images", tf.uint8), "upscale_float": ("images", tf.float32),
              "upscale_image": ("image_bytes", tf.string)}
    for name, (key, dtype) in expect.items():
        (spec,) = sigs[name].structured_input_signature[1].values()
        assert list(sigs[name].structured_input_signature[1]) == [key]
        assert spec.dtype == dtype
        assert list(sigs[name].structured_outputs) == [key]


@pytest.mark.slow
def test_serving_default_matches_keras_within_one_level(exported, loaded):
    x = np.random.default_rng(2).integers(0, 256, (2, 13, 7, 3), dtype=np.uint8)
    y = loaded.signatures["serving_default"](images=tf.constant(x))["images"]
    assert y.dtype == tf.uint8 and y.shape == (2, 52, 28, 3)
    diff = np.abs(y.numpy().astype(int) - _keras_uint8(exported["model"], x))
    assert diff.max() <= 1 and diff.mean() < 0.01


@pytest.mark.slow
def test_upscale_float_matches_keras(exported, loaded):
    x = np.random.default_rng(3).integers(0, 256, (1, 9, 11, 3), dtype=np.uint8)
    y = loaded.signatures["upscale_float"](images=tf.constant(x / np.float32(255)))["images"].numpy()
    assert y.shape == (1, 36, 44, 3) and y.min() >= 0 and y.max() <= 1
    np.testing.assert_allclose(y, _keras_unit(exported["model"], x), atol=1e-5)


def _small_tiles(model):
    """The export's tile plan for `model`, with tiles small enough that a 40x53 image needs 3x4 trunk windows
    and several tail tiles in each."""
    return dataclasses.replace(tiled_graph(model), whole_pixels=100, trunk_tile=17, tail_tile=7)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])
def test_in_graph_tiles_give_the_whole_image_result(exported, batch):
    """Each signature, tiled at both levels inside the graph, equals the whole-image Keras result (uint8 within
    one gray level, float within round-off); without the trunk's margin the seams show."""
    model = fast_generator(exported["model"])
    tiles = _small_tiles(model)
    fns = serving_functions(model, MAX_PIXELS, tiles)
    x = np.random.default_rng(5).integers(0, 256, (batch, 40, 53, 3), dtype=np.uint8)
    got = fns["serving_default"](tf.constant(x))["images"].numpy()
    assert got.shape == (batch, 160, 212, 3)
    assert np.abs(got.astype(int) - _keras_uint8(exported["model"], x)).max() <= 1
    y = fns["upscale_float"](tf.constant(x / np.float32(255)))["images"].numpy()
    np.testing.assert_allclose(y, _keras_unit(exported["model"], x), atol=1e-5)
    pngs = fns["upscale_image"](tf.constant([_png(image) for image in x]))["image_bytes"].numpy()
    for png, want in zip(pngs, got, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), want)
    seams = serving_functions(model, MAX_PIXELS, dataclasses.replace(tiles, trunk_margin=tiles.tail_margin))
    assert np.abs(seams["serving_default"](tf.constant(x))["images"].numpy().astype(int) - got).max() > 1


def test_a_small_request_runs_the_tail_on_its_larger_tiles(generator):
    """A request of at most whole_pixels LR pixels in all (batch*h*w) runs the tail on small_tail_tile cores, a
    larger one on tail_tile cores: with the tail's margin taken away, only tiled tails show seams."""
    model = fast_generator(generator)
    plan = dataclasses.replace(tiled_graph(model), whole_pixels=100, tail_margin=0)
    assert plan.small_tail_tile > plan.tail_tile
    x = np.random.default_rng(8).random((2, 9, 11, 3), dtype=np.float32)
    want = np.clip(model(x).numpy() * 0.5 + 0.5, 0, 1)

    def error(small_tail_tile, tail_tile, images):
        fns = serving_functions(model, MAX_PIXELS, dataclasses.replace(plan, small_tail_tile=small_tail_tile,
                                                                       tail_tile=tail_tile))
        return np.abs(fns["upscale_float"](tf.constant(images))["images"].numpy() - want[:len(images)]).max()

    assert error(11, 4, x[:1]) < 1e-5 < error(4, 11, x[:1])  # 99 pixels: the small request's tile
    assert error(11, 4, x) > 1e-3 > error(4, 11, x)  # 198 pixels: the large request's tile


def test_the_untiled_form_serves_the_whole_image_at_the_models_scale(generator):
    """whole_image (models whose receptive radius is unknown, and the comparison graph of
    bench/serving_memory.py) runs the model once per batch and agrees with the tiled signatures."""
    model = fast_generator(generator)
    x = np.random.default_rng(7).integers(0, 256, (2, 23, 30, 3), dtype=np.uint8)
    whole = serving_functions(model, MAX_PIXELS, whole_image(model))
    tiled = serving_functions(model, MAX_PIXELS, _small_tiles(model))
    got = whole["serving_default"](tf.constant(x))["images"].numpy()
    assert got.shape == (2, 92, 120, 3)
    assert np.abs(got.astype(int) - tiled["serving_default"](tf.constant(x))["images"].numpy()).max() <= 1
    y = whole["upscale_float"](tf.constant(x / np.float32(255)))["images"].numpy()
    np.testing.assert_allclose(y, _keras_unit(generator, x), atol=1e-5)


def test_a_model_without_the_generator_trunk_is_tiled_at_one_level():
    from srgan_tf.models import PixelShuffle

    lr = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(lr)
    y = keras.layers.Conv2D(12, 5, padding="same", activation="tanh")(y)
    model = keras.Model(lr, PixelShuffle(2)(y))
    graph = tiled_graph(model)
    assert graph.tail is None and graph.trunk_margin == receptive_radius(model)[0] == 3
    fns = serving_functions(model, MAX_PIXELS, dataclasses.replace(graph, trunk_tile=5))
    x = np.random.default_rng(6).random((2, 23, 17, 3), dtype=np.float32)
    np.testing.assert_allclose(fns["upscale_float"](tf.constant(x))["images"].numpy(),
                               np.clip(model(x).numpy() * 0.5 + 0.5, 0, 1), atol=1e-6)


def test_command_line_default_pixel_limit_is_the_exports():
    from srgan_tf.export.__main__ import _flag_values
    from srgan_tf.export.savedmodel import DEFAULT_MAX_PIXELS

    assert _flag_values()["max_pixels"].default == DEFAULT_MAX_PIXELS >= 2048 * 2048


# The target for any request up to the pixel limit, in bytes of process memory.
MEMORY_TARGET = 1.5e9


def _serving_memory_bench():
    spec = importlib.util.spec_from_file_location("serving_memory", REPO / "bench" / "serving_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_runs_servers_with_the_dockerfiles_allocator(tmp_path):
    """The bench's server environment is read from the Dockerfile (jemalloc, preloaded where the Dockerfile's RUN
    links it), so the two cannot drift; a missing library is named, not skipped over."""
    bench = _serving_memory_bench()
    text = (REPO / "Dockerfile").read_text()
    env = bench.dockerfile_allocator()
    assert Path(env["LD_PRELOAD"]).name == "libjemalloc.so.2" and "dirty_decay_ms" in env["MALLOC_CONF"]
    run = text[text.index("RUN apt-get"):text.index("ENV LD_PRELOAD")]  # as root, before USER
    assert "install -y --no-install-recommends libjemalloc2" in run and text.index(run) < text.index("USER 10001")
    assert re.search(r"ln -s .* " + re.escape(env["LD_PRELOAD"]) + "$", run.strip())
    docker = tmp_path / "Dockerfile"
    docker.write_text("FROM x\nENV LD_PRELOAD=/nowhere/libnothing.so.9 \\\n    MALLOC_CONF=a:1\n")
    assert bench.dockerfile_allocator(docker) == {"LD_PRELOAD": "/nowhere/libnothing.so.9", "MALLOC_CONF": "a:1"}
    with pytest.raises(SystemExit, match="libnothing.so.9, the Dockerfile's LD_PRELOAD, is not installed"):
        bench.host_environment(bench.dockerfile_allocator(docker))


@pytest.mark.slow
def test_max_size_requests_stay_within_the_memory_target(exported, tmp_path):
    """bench/serving_memory.py (RSS sampled from another process) on a 1024x1024 limit, in the Dockerfile's
    server environment where jemalloc is installed (.ci/run installs it), else in the inherited one: one max-size
    request, and a batch of 4 PNGs at the limit in all to upscale_image, peak below the target; two at once equal
    the serial result. The whole-image graph of this small generator needs more than 1 GB for each 4096x4096x16
    float map of the tail alone."""
    bench = _serving_memory_bench()
    try:
        bench.host_environment(bench.dockerfile_allocator())
        server_env = "dockerfile"
    except SystemExit:
        server_env = "inherit"
    out = tmp_path / "memory.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "serving_memory.py"), "--generator",
                    str(exported["root"] / "g.keras"), "--max_pixels", str(1024 * 1024), "--concurrent", "2",
                    "--singles", "serving_default,upscale_image_batch", "--latency_side", "0",
                    "--server_env", server_env,
                    "--json", str(out)], check=True, timeout=1200, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    assert bool(result["server_env"]) == (server_env == "dockerfile")
    assert result["concurrent_equal_serial"] is True
    # Each single request alone, then the serving_default one followed by the concurrent ones.
    fresh, batch, sequence = result["children"]
    for child in (fresh, sequence):
        assert [s["step"] for s in child["steps"]][2:3] == ["serving_default 1024x1024"]
    assert [s["step"] for s in sequence["steps"]][3:] == ["2 concurrent serving_default 1024x1024", "done"]
    assert [s["step"] for s in batch["steps"]][2:] == ["upscale_image 4 x 512x512 PNG", "done"]
    for child, name in ((fresh, "serving_default 1024x1024"), (batch, "upscale_image 4 x 512x512 PNG")):
        step = {s["step"]: s for s in child["steps"]}[name]
        assert 0 < step["peak_anon_bytes"] < step["peak_rss_bytes"] < MEMORY_TARGET
        assert child["vm_hwm_bytes"] < MEMORY_TARGET


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["png", "jpeg", "gray_png", "rgba_png"])
def test_upscale_image_returns_png_of_the_upscaled_pixels(exported, loaded, kind):
    rgb = np.random.default_rng(4).integers(0, 256, (10, 15, 3), dtype=np.uint8)
    data = {
        "png": _png(rgb), "jpeg": _jpeg(rgb), "gray_png": _png(rgb[..., 0]),
        "rgba_png": _png(np.dstack([rgb, np.full((10, 15), 255, np.uint8)])),
    }[kind]
    (png,) = loaded.signatures["upscale_image"](image_bytes=tf.constant([data]))["image_bytes"].numpy()
    assert png.startswith(b"\x89PNG")
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    assert out.shape == (40, 60, 3)
    assert np.abs(out.astype(int) - _keras_uint8(exported["model"], decoded[None])[0]).max() <= 1


@pytest.mark.slow
def test_upscale_image_batch_keeps_order_and_sizes(loaded):
    a = np.zeros((5, 6, 3), np.uint8)
    b = np.full((7, 3, 3), 200, np.uint8)
    pngs = loaded.signatures["upscale_image"](image_bytes=tf.constant([_png(a), _jpeg(b)]))["image_bytes"]
    sizes = [Image.open(io.BytesIO(p)).size for p in pngs.numpy()]
    assert sizes == [(24, 20), (12, 28)]


@pytest.mark.slow
def test_concurrent_requests_from_threads_equal_the_serial_results(loaded):
    """TF Serving runs one loaded SavedModel for many clients at once: 8 threads x 3 requests each, with
    different sizes and both pixel signatures, get exactly what the same requests get one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    requests = [rng.integers(0, 256, (1, 5 + i % 7, 4 + i % 5, 3), dtype=np.uint8) for i in range(24)]

    def serve(i):
        if i % 2:
            return loaded.signatures["serving_default"](images=tf.constant(requests[i]))["images"].numpy()
        x = tf.constant(requests[i] / np.float32(255))
        return loaded.signatures["upscale_float"](images=x)["images"].numpy()

    serial = [serve(i) for i in range(len(requests))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(serve, range(len(requests))))
    for one, other in zip(serial, concurrent, strict=True):
        np.testing.assert_array_equal(one, other)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello, not an image", "not a PNG, JPEG, GIF or BMP"),
        (b"", "not a PNG, JPEG, GIF or BMP"),
        ("truncated_png", "PNG"),
        ("truncated_jpeg", "JPEG"),
        (b"GIF89a\x00\x00", "GIF"),
    ],
)
def test_upscale_image_rejects_non_images_with_invalid_argument(served, data, message):
    good = _png(np.zeros((8, 8, 3), np.uint8))
    truncated = {"truncated_png": good[:40], "truncated_jpeg": _jpeg(np.zeros((8, 8, 3), np.uint8))[:120]}
    data = truncated.get(data, data)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served.signatures["upscale_image"](image_bytes=tf.constant([good, data]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signature", "shape"),
    [("serving_default", (1, 257, 256, 3)), ("serving_default", (2, 182, 182, 3)),
     ("upscale_float", (1, 129, 128, 3)), ("upscale_float", (1, 1, MAX_PIXELS // 4 + 1, 3))],
)
def test_requests_above_the_pixel_limit_are_refused(served, signature, shape):
    dtype, limit = (tf.uint8, MAX_PIXELS) if signature == "serving_default" else (tf.float32, MAX_PIXELS // 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{limit}-pixel limit"):
        served.signatures[signature](images=tf.zeros(shape, dtype))


def _graph_ops(fn) -> set[str]:
    graph = fn.graph.as_graph_def()
    return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}


def test_requests_run_one_at_a_time_and_a_refused_one_releases_the_lock(served):
    """Every signature holds the process's request lock while it runs; concurrent requests give the serial
    results, and a refused request releases the lock (the next one, in a thread, would otherwise hang)."""
    for name in ("serving_default", "upscale_float", "upscale_image"):
        assert {"MutexV2", "MutexLock", "ConsumeMutexLock"} <= _graph_ops(served.signatures[name]), name
    sig = served.signatures["serving_default"]
    images = [np.random.default_rng(k).integers(0, 256, (1, 20 + k, 17, 3), dtype=np.uint8) for k in range(3)]
    serial = [sig(images=tf.constant(x))["images"].numpy() for x in images]
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixel limit"):
        sig(images=tf.zeros((1, 257, 256, 3), tf.uint8))
    got = [None] * len(images)

    def call(k):
        got[k] = sig(images=tf.constant(images[k]))["images"].numpy()

    threads = [threading.Thread(target=call, args=(k,), daemon=True) for k in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a request never got the lock"
    for want, have in zip(serial, got, strict=True):
        np.testing.assert_array_equal(want, have)


@pytest.mark.slow
def test_request_at_the_pixel_limit_is_served(exported, loaded):
    out = loaded.signatures["serving_default"](images=tf.zeros((1, 256, 256, 3), tf.uint8))["images"]
    assert out.shape == (1, 1024, 1024, 3)
    out = loaded.signatures["upscale_float"](images=tf.zeros((1, 128, 128, 3)))["images"]
    assert out.shape == (1, 512, 512, 3)
    meta = artifact_metadata(exported["savedmodel"])
    assert meta["max_pixels"] == MAX_PIXELS and meta["max_float_pixels"] == max_float_pixels(MAX_PIXELS)
    assert meta["max_image_pixels"] == MAX_PIXELS


@pytest.mark.slow
def test_upscale_image_limits_each_image_to_the_pixel_limit(loaded):
    """max_pixels per image, as for serving_default: served at it, refused above."""
    limit = MAX_PIXELS
    at = np.zeros((limit // 128, 128, 3), np.uint8)
    (png,) = loaded.signatures["upscale_image"](image_bytes=tf.constant([_png(at)]))["image_bytes"].numpy()
    assert tf.io.decode_png(png).shape == (4 * at.shape[0], 4 * 128, 3)
    above = np.zeros((limit // 128 + 1, 128, 3), np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{limit}-pixel limit"):
        loaded.signatures["upscale_image"](image_bytes=tf.constant([_png(above)]))


@pytest.mark.slow
def test_upscale_image_limits_a_batch_to_the_pixel_limit_in_all(loaded):
    """Two images of 0.6 of the limit each are served one by one and refused together."""
    image = _png(np.zeros((MAX_PIXELS * 6 // 10 // 128, 128, 3), np.uint8))
    (png,) = loaded.signatures["upscale_image"](image_bytes=tf.constant([image]))["image_bytes"].numpy()
    assert png.startswith(b"\x89PNG")
    limit = f"more than the {MAX_PIXELS}-pixel limit of this model in all"
    with pytest.raises(tf.errors.InvalidArgumentError, match=limit):
        loaded.signatures["upscale_image"](image_bytes=tf.constant([image, image]))


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(0, 4, 4, 3), (1, 0, 4, 3)])
def test_empty_requests_are_refused(loaded, shape):
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1"):
        loaded.signatures["serving_default"](images=tf.zeros(shape, tf.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_oversized_encoded_image_is_refused_before_decoding(loaded, fmt):
    big = np.zeros((257, 256, 3), np.uint8)
    data = _png(big) if fmt == "png" else _jpeg(big)
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the .*-pixel limit"):
        loaded.signatures["upscale_image"](image_bytes=tf.constant([data]))


# ---------------------------------------------------------------- warm-up, REST bodies, docs


def _fields(buf: bytes) -> list[tuple[int, bytes]]:
    """(field number, payload) of a protobuf message made only of length-delimited fields."""
    out, i = [], 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(buf):
        key = varint()
        assert key & 7 == 2, "only length-delimited fields expected"
        n = varint()
        out.append((key >> 3, buf[i:i + n]))
        i += n
    return out


@pytest.mark.slow
def test_warmup_requests_replay_against_the_savedmodel(exported, loaded):
    records = list(tf.data.TFRecordDataset(str(exported["savedmodel"] / "assets.extra" / WARMUP_FILE)))
    assert len(records) == 3
    seen = set()
    for record in records:
        ((field, predict_log),) = _fields(record.numpy())
        assert field == 6  # PredictionLog.predict_log
        ((_, request),) = _fields(predict_log)  # PredictLog.request
        parts = _fields(request)
        spec = dict(_fields(next(p for f, p in parts if f == 1)))  # ModelSpec
        assert spec[1] == b"srgan"
        signature = spec[3].decode()
        inputs = {}
        for _, entry in (p for p in parts if p[0] == 2):
            kv = dict(_fields(entry))
            proto = tf.make_tensor_proto(0)
            proto.ParseFromString(kv[2])
            inputs[kv[1].decode()] = tf.constant(tf.make_ndarray(proto))
        out = loaded.signatures[signature](**inputs)
        assert all(v.shape[0] == 1 for v in out.values())
        seen.add(signature)
    assert seen == set(loaded.signatures)


@pytest.mark.slow
def test_warmup_file_parses_with_tensorflow_serving_protos(exported):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    records = tf.data.TFRecordDataset(str(exported["savedmodel"] / "assets.extra" / WARMUP_FILE))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {
        "serving_default", "upscale_float", "upscale_image"}
    assert all(log.predict_log.request.model_spec.name == "srgan" for log in logs)
    assert all(len(log.predict_log.request.inputs) == 1 for log in logs)


def rest_predict(loaded, body: dict) -> dict:
    """What TF Serving's REST :predict does with a row-format ("instances") body, for the tests."""
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    ((name, spec),) = signature.structured_input_signature[1].items()
    rows = [r[name] if isinstance(r, dict) and "b64" not in r else r for r in body["instances"]]
    if spec.dtype == tf.string:
        tensor = tf.constant([base64.b64decode(r["b64"]) for r in rows])
    else:
        tensor = tf.constant(np.asarray(rows, dtype=spec.dtype.as_numpy_dtype))
    ((out_name, value),) = signature(**{name: tensor}).items()
    value = value.numpy()
    if out_name.endswith("_bytes"):
        return {"predictions": [{"b64": base64.b64encode(v).decode()} for v in value]}
    return {"predictions": value.tolist()}


@pytest.mark.slow
@pytest.mark.parametrize("example", ["serving_default", "upscale_float", "upscale_image"])
def test_readme_rest_bodies_run_against_their_signatures(loaded, example):
    body = json.loads((REST_EXAMPLES / f"{example}.json").read_text())
    assert body["signature_name"] == example
    reply = json.loads(json.dumps(rest_predict(loaded, body)))
    (pred,) = reply["predictions"]
    if example == "upscale_image":
        image = Image.open(io.BytesIO(base64.b64decode(pred["b64"])))
        src = Image.open(io.BytesIO(base64.b64decode(body["instances"][0]["b64"])))
        assert image.format == "PNG" and image.size == (4 * src.width, 4 * src.height)
    else:
        h, w = np.asarray(body["instances"][0]).shape[:2]
        assert np.asarray(pred).shape == (4 * h, 4 * w, 3)


@pytest.mark.slow
def test_python_client_against_a_stub_rest_server(exported, loaded, tmp_path):
    """docs/serving_client.py against a local stand-in for TF Serving's REST API (not TF Serving itself)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            try:
                status, reply = 200, rest_predict(loaded, body)
            except tf.errors.InvalidArgumentError as e:
                status, reply = 400, {"error": e.message}
            self._send(status, reply)

        def do_GET(self):  # noqa: N802
            self._send(200, {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})

        def _send(self, status, reply):
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    spec = importlib.util.spec_from_file_location("serving_client", REPO / "docs" / "serving_client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert client.model_status(url)["model_version_status"][0]["state"] == "AVAILABLE"
        lr = np.random.default_rng(5).integers(0, 256, (6, 9, 3), dtype=np.uint8)
        out = np.asarray(Image.open(io.BytesIO(client.upscale(_png(lr), url))))
        assert np.abs(out.astype(int) - _keras_uint8(exported["model"], lr[None])[0]).max() <= 1
        with pytest.raises(RuntimeError, match="HTTP 400: .*not a PNG"):
            client.upscale(b"not an image", url)
    finally:
        server.shutdown()


def test_python_client_help_shows_its_defaults_and_arguments():
    res = subprocess.run([sys.executable, str(REPO / "docs" / "serving_client.py"), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0
    text = " ".join(res.stdout.split())  # argparse wraps lines at the terminal width
    assert "(default: http://localhost:8501)" in text and "(default: srgan)" in text
    assert "input the image file to upscale" in text and "output where to write the upscaled image" in text


@pytest.mark.slow
def test_saved_model_cli_output_in_docs_matches_the_export(exported):
    shown = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all",
         "--dir", str(exported["savedmodel"])],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout

    def signature_defs(text):
        return re.findall(r"signature_def\['(?!__)[^']+'\]:.*?Method name is: \S+", text, re.S)

    documented = (REPO / "docs" / "saved_model_cli.txt").read_text()
    assert signature_defs(shown) and signature_defs(shown) == signature_defs(documented)


def test_dockerfile_serves_the_export_as_non_root_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG TF_SERVING_VERSION=\d+\.\d+\.\d+$", text, re.M)
    assert re.search(r"^FROM tensorflow/serving:\$\{TF_SERVING_VERSION\}$", text, re.M)
    assert re.search(r"^COPY .*\$\{MODEL_DIR\}/ /models/$", text, re.M)
    assert re.search(r"^ENV MODEL_NAME=\$\{MODEL_NAME\}", text, re.M)
    assert re.search(r"^EXPOSE 8500 8501$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in text


@pytest.mark.parametrize(("state", "healthy"), [("AVAILABLE", True), ("LOADING", False)])
def test_dockerfile_healthcheck_command_reads_the_model_status(state, healthy):
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    command = re.search(r"^HEALTHCHECK .*?CMD (.+)$", text, re.M).group(1)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            ok = self.path == "/v1/models/srgan"
            data = json.dumps({"model_version_status": [{"version": "1", "state": state}]} if ok else {},
                              indent=1).encode()
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"PATH": "/usr/bin:/bin", "MODEL_NAME": "srgan", "REST_PORT": str(server.server_address[1])}
    try:
        rc = subprocess.run(["sh", "-c", command], env=env, timeout=30).returncode
    finally:
        server.shutdown()
    assert (rc == 0) == healthy


# ---------------------------------------------------------------- TFLite


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_tflite_accepts_any_input_size(exported, variant):
    interpreter = tflite_interpreter(model_path=str(exported["out"] / "tflite" / f"srgan_{variant}.tflite"))
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, -1, -1, 3]
    for shape in [(1, 5, 9, 3), (2, 12, 7, 3), (1, 1, 1, 3)]:
        interpreter.resize_tensor_input(detail["index"], list(shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], np.zeros(shape, detail["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert out.shape == (shape[0], 4 * shape[1], 4 * shape[2], 3)


@pytest.mark.slow
def test_tflite_runs_on_litert_compiled_model_by_default(exported):
    """ai-edge-litert is a dependency, so users get its CompiledModel API, with the Interpreter beside it."""
    assert tflite_backends() == TFLITE_BACKENDS
    assert load_upscaler(str(exported["out"] / "tflite" / "srgan_fp32.tflite")).backend == "compiled_model"


@pytest.mark.slow
@pytest.mark.parametrize("backend", TFLITE_BACKENDS)
@pytest.mark.parametrize(("variant", "atol"), [("fp32", 1e-3), ("fp16", 2e-2)])
def test_float_tflite_matches_keras(exported, variant, atol, backend):
    if backend not in tflite_backends():
        pytest.skip(f"TFLite backend {backend} not installed")
    up = load_tflite(str(exported["out"] / "tflite" / f"srgan_{variant}.tflite"), backend=backend)
    assert up.backend == backend
    x = np.random.default_rng(6).integers(0, 256, (1, 11, 6, 3), dtype=np.uint8)
    got = up.predict_float(x / np.float32(255))
    np.testing.assert_allclose(got, _keras_unit(exported["model"], x), atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_tflite_backends_take_any_input_size_and_agree(exported, variant):
    """CompiledModel resizes its dynamic input in place, as the Interpreter does; the int8 model's uint8 IO
    is converted with the scale and zero point each backend reads, so both give the same images."""
    path = str(exported["out"] / "tflite" / f"srgan_{variant}.tflite")
    upscalers = [load_tflite(path, backend=b) for b in tflite_backends()]
    rng = np.random.default_rng(12)
    for shape in [(1, 5, 9, 3), (2, 12, 7, 3), (1, 1, 1, 3), (1, 5, 9, 3)]:
        x = rng.uniform(0, 1, shape).astype(np.float32)
        outs = [up.predict_float(x) for up in upscalers]
        assert outs[0].shape == (shape[0], 4 * shape[1], 4 * shape[2], 3)
        for other in outs[1:]:
            np.testing.assert_allclose(other, outs[0], atol=1e-6)
    if len(upscalers) < 2:
        pytest.skip("only one TFLite backend installed: the outputs were not compared")


@pytest.mark.slow
def test_every_tflite_variant_is_gpu_delegate_compatible(exported):
    arts = {a["name"]: a for a in json.loads((exported["out"] / "report.json").read_text())["artifacts"]}
    for variant in VARIANTS:
        gpu = arts[f"tflite {variant}"]["gpu"]
        assert gpu["compatible"] and gpu["rejected"] == [] and gpu["analyzer_warnings"] == [], (variant, gpu)
    table = format_table(exported["report"]["artifacts"])
    assert "GPU delegate" in table.splitlines()[0]
    assert all("all ops" in line for line in table.splitlines() if line.startswith("tflite"))


@pytest.mark.slow  # int8 calibration
def test_bicubic_skip_graphs_are_gpu_delegate_compatible(tmp_path):
    """The generator with the bicubic skip (edge padding by slices and concatenations, a 5x5 convolution and
    a pixel shuffle) in every variant; the export test above covers the plain one."""
    generator = fast_generator(build_generator(2, 16, bicubic_skip=True))
    export_float_savedmodel(generator, tmp_path / "float")
    export_float_savedmodel(relu_form(generator), tmp_path / "int8")
    calibration = [np.random.default_rng(i).uniform(0, 1, (1, 24, 24, 3)).astype(np.float32) for i in range(4)]
    for variant in VARIANTS:
        model = convert(tmp_path / ("int8" if variant == "int8" else "float"), variant, calibration)
        gpu = gpu_compatibility(model)
        assert gpu["compatible"], (variant, gpu)


def test_gpu_check_rejects_what_the_delegate_cannot_run():
    """TFLite's analyzer calls this model GPU-compatible; the delegate's rules do not."""

    @tf.function
    def fn(x):
        y = tf.reduce_sum(tf.reshape(x, [1, 4, 4, 3, 1]), axis=-1)  # a 5-D tensor
        values, _ = tf.math.top_k(tf.reshape(x, [1, 48]), 3)
        return y + tf.reduce_sum(values)

    gpu = gpu_compatibility(_tflite(fn, tf.TensorSpec([1, 4, 4, 3], tf.float32)))
    reasons = {r["op"]: r["reason"] for r in gpu["rejected"]}
    assert not gpu["compatible"]
    assert "5-D" in reasons["RESHAPE"] and "TOPK_V2" in reasons
    assert "SUM" in reasons  # reads the 5-D tensor too


@pytest.mark.slow
def test_report_fidelity_is_what_the_artifacts_produce(exported, shared_data_or_none):
    if shared_data_or_none is None:
        pytest.skip("benchmark data not found")
    from srgan_tf.export.report import fidelity, load_pairs, reference_outputs

    keras_upscaler = load_upscaler(str(exported["root"] / "g.keras"))
    all_pairs = load_pairs(shared_data_or_none / "Set5")
    all_ref = reference_outputs(keras_upscaler, all_pairs)
    itself = fidelity(keras_upscaler, all_pairs[:1], all_ref[:1])
    assert itself["psnr_vs_keras_db"] is None and itself["max_abs_diff_float"] == 0
    assert exported["report"]["fidelity_not_measured"] is None
    arts = {a["name"]: a for a in exported["report"]["artifacts"]}
    for name in ("savedmodel v1", "tflite fp32"):
        fid = arts[name]["fidelity"]
        assert fid["max_abs_diff_float"] <= 1e-3 and fid["max_abs_diff_uint8"] <= 1, name
    keras_y = arts["keras"]["fidelity"]["y_psnr_vs_hr_db"]
    for variant in ("dynamic_int8", "int8"):
        fid = arts[f"tflite {variant}"]["fidelity"]
        assert fid["psnr_vs_keras_db"] > 30, variant  # quantization noise well below the image content
        assert abs(fid["y_psnr_vs_hr_db"] - keras_y) < 1.0, variant
        mine = fidelity(load_upscaler(arts[f"tflite {variant}"]["path"]), all_pairs, all_ref)
        assert mine["psnr_vs_keras_db"] == pytest.approx(fid["psnr_vs_keras_db"], abs=1e-6)


@pytest.mark.slow
def test_int8_model_is_fully_integer_with_uint8_io(exported):
    interpreter = tflite_interpreter(model_path=str(exported["out"] / "tflite" / "srgan_int8.tflite"))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and out["dtype"] == np.uint8
    scale, zero = inp["quantization"]
    assert scale == pytest.approx(1 / 255, rel=0.05) and zero <= 2
    ops = exported["report"]["artifacts"][-1]["ops"]
    assert "DEQUANTIZE" not in ops  # no float islands


@pytest.mark.slow
def test_xnnpack_runs_the_whole_fp32_and_int8_models(exported):
    arts = {a["name"]: a for a in exported["report"]["artifacts"]}
    for variant in VARIANTS:
        xnn = arts[f"tflite {variant}"]["xnnpack"]
        assert xnn["partitions"] >= 1 and xnn["delegated_ops"] > 0, variant
    fp32 = arts["tflite fp32"]["xnnpack"]
    assert fp32["delegated_ops"] == fp32["total_ops"] and not fp32["not_delegated"]
    # In int8 only the uint8 -> int8 input conversion stays outside: no PReLU fallbacks splitting the graph.
    int8 = arts["tflite int8"]
    assert "PRELU" not in int8["ops"] and int8["xnnpack"]["partitions"] == 1
    assert set(int8["xnnpack"]["not_delegated"]) <= {"QUANTIZE"}


def test_relu_form_is_the_same_function_for_any_alpha():
    generator = build_generator(1, 8, bicubic_skip=True)
    rng = np.random.default_rng(7)
    for layer in generator.layers:  # slopes below 0, between 0 and 1, and above 1
        if isinstance(layer, keras.layers.PReLU):
            layer.set_weights([rng.uniform(-0.5, 1.8, layer.get_weights()[0].shape).astype(np.float32)])
    copy = relu_form(generator)
    assert not any(isinstance(layer, keras.layers.PReLU) for layer in copy.layers)
    x = rng.uniform(0, 1, (2, 9, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(copy(x).numpy(), generator(x).numpy(), atol=1e-5)


def _upscale_nearest(x):
    return tf.image.resize(x, tf.shape(x)[1:3] * 4, method="nearest")


def _tflite(fn, spec, module=None, select_tf_ops=False, resource_variables=False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(spec)], module)
    if select_tf_ops:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.experimental_enable_resource_variables = resource_variables
    return converter.convert()


def test_check_accepts_a_plain_dynamic_model():
    data = _tflite(tf.function(_upscale_nearest), tf.TensorSpec([None, None, None, 3], tf.float32))
    report = check_tflite(data, 4, "test")
    assert report["ops"]["RESIZE_NEAREST_NEIGHBOR"] == 1
    assert report["xnnpack"]["total_ops"] == sum(report["ops"].values())


def test_check_refuses_models_with_variables():
    module = tf.Module()
    module.bias = tf.Variable(0.0)

    @tf.function
    def fn(x):
        module.bias.assign_add(1.0)
        return _upscale_nearest(x) + module.bias

    data = _tflite(fn, tf.TensorSpec([None, None, None, 3], tf.float32), module, resource_variables=True)
    with pytest.raises(ExportError, match="VAR_HANDLE|variables"):
        check_tflite(data, 4, "test")


def test_check_refuses_flex_ops():
    @tf.function
    def fn(x):
        text = tf.strings.as_string(x[0, 0, 0, 0])  # no TFLite builtin for this
        return _upscale_nearest(x) + tf.cast(tf.strings.length(text), tf.float32)

    data = _tflite(fn, tf.TensorSpec([None, None, None, 3], tf.float32), select_tf_ops=True)
    with pytest.raises(ExportError, match="Flex"):
        check_tflite(data, 4, "test")


def test_check_refuses_static_shapes():
    fn = tf.function(lambda x: tf.image.resize(x, [28, 36], method="nearest"))
    data = _tflite(fn, tf.TensorSpec([1, 7, 9, 3], tf.float32))
    with pytest.raises(ExportError, match="dynamic"):
        check_tflite(data, 4, "test")


# ---------------------------------------------------------------- command line


@pytest.mark.slow
def test_new_export_gets_the_next_version_and_never_overwrites(exported, tmp_path, capsys):
    out = tmp_path / "o"
    shutil.copytree(exported["out"] / "serving", out / "serving")
    argv = ["export", f"--generator={exported['root'] / 'g.keras'}", f"--out={out}", "--formats=savedmodel",
            "--latency_runs=0", "--fidelity_data=/nonexistent"]
    assert main(argv) == 0
    assert (out / "serving" / "srgan" / "2" / "saved_model.pb").is_file()
    printed = capsys.readouterr().out
    # Without benchmark images fidelity is "not measured" with the reason and the flag to give, not blanks.
    notes = [line for line in printed.splitlines() if "fidelity" in line]
    assert notes == ["note: fidelity not measured: no LR_bicubic_x4/ and HR/ image pairs under /nonexistent; give "
                     "--fidelity_data=SET_DIR, a benchmark folder with LR_bicubic_x4/ and HR/ (e.g. Set5)"], printed
    assert "PSNR vs Keras" not in printed and "max|d|" not in printed
    report = json.loads((out / "report.json").read_text())
    assert report["fidelity_data"] is None and "--fidelity_data" in report["fidelity_not_measured"]
    assert all(a["fidelity"] is None for a in report["artifacts"])
    assert main([*argv, "--version=1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "already exists" in err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--generator={tmp}/missing.keras"], 1, "no such file"),
        (["--generator={tmp}/g.keras", "--formats=coreml"], 2, "unknown or no formats"),
        (["--generator={tmp}/g.keras", "--name=a/b"], 2, "--name"),
        (["--generator={tmp}/g.keras", "--calibration_dir={tmp}/nope"], 1, "not a folder"),
        (["--generator={tmp}/g.keras", "--version=0"], 2, "version"),
        (["--generator={tmp}/g.keras", "stray"], 2, "unexpected arguments"),
    ],
)
def test_bad_arguments_give_one_line_errors(exported, tmp_path, capsys, flags, status, message):
    root = exported["root"]
    argv = ["export", f"--out={tmp_path / 'o'}", "--latency_runs=0"] + [f.format(tmp=root) for f in flags]
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err, err
    assert not (tmp_path / "o" / "report.json").exists()
