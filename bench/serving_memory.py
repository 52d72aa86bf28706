"""Peak process memory and latency of the exported SavedModel's signatures (in-graph tiling, export/tiled.py).

    python bench/serving_memory.py [--generator G.keras] [--max_pixels N] [--concurrent 4] [--json out.json]

Exports the generator (default: a full-size one with random weights; memory and time do not depend on the weights),
then starts server processes that load the SavedModel: one per signature, sent one max-size request (serving_default
and upscale_image at max_pixels, upscale_float at its own lower limit, and upscale_image_batch: 4 PNGs of a quarter
of max_pixels each, the batch's limit in all; `--singles` picks them), then one sent a max-size serving_default
request followed by `--concurrent` of the same image at once from threads, whose outputs must equal the serial one
bit for bit. `--sequence` sends all of it to one process instead, each step after the last (a step's peak then
includes what earlier steps left in TensorFlow's allocator pool). Outputs are read as the server holds them, without
a copy (np.asarray shares the tensor's buffer, where EagerTensor.numpy() copies it; for upscale_image only the PNG's
length is read); a server's response encoding adds its own copy of the output (0.2 GB for a 2048x2048 uint8
request). This process samples each child's RSS from /proc every 20 ms and reports the peak of each step, the peak
of its anonymous part (RssAnon: the memory the server allocated; the rest of RSS is pages of TensorFlow's shared
libraries, which the kernel can drop and which vary by 0.1 GB between identical runs), and the kernel's high-water
mark (VmHWM). `--latency_side S` (0: skip) then times S x S serving_default requests against the same generator's
whole-image graph in another child, the two interleaved, medians of `--latency_runs`, and checks that they agree
within one gray level.

The server processes run in the environment the Dockerfile gives TF Serving (`--server_env dockerfile`, the
default: its LD_PRELOAD allocator, found here by file name, and MALLOC_CONF), or in this process's own
(`--server_env inherit`), so that both can be measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

_SAMPLE_S = 0.02
DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"
# The Dockerfile's ENV variables that set the server's memory allocator.
ALLOCATOR_VARIABLES = ("LD_PRELOAD", "MALLOC_CONF")
_LIBRARY_DIRS = ("/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/lib")


def _image(side_h: int, side_w: int, seed: int) -> np.ndarray:
    """Smooth, photo-like uint8 RGB content with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side_h, 0:side_w]
    img = 127.5 + 127.5 * np.sin(xx / (7.0 + seed))[..., None] * np.cos(yy[..., None] / 11.0 + np.arange(3))
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _side(pixels: int) -> int:
    return math.isqrt(pixels)


def dockerfile_allocator(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The allocator variables (ALLOCATOR_VARIABLES) of `dockerfile`'s ENV instructions, as written there."""
    found = {}
    for line in re.findall(r"^ENV (.+?)$", dockerfile.read_text().replace("\\\n", " "), re.M):
        for word in line.split():
            name, _, value = word.partition("=")
            if name in ALLOCATOR_VARIABLES:
                found[name] = value
    return found


def host_environment(variables: dict[str, str]) -> dict[str, str]:
    """`variables` for a process on this machine: LD_PRELOAD's container path replaced by the library of that
    file name here. Raises SystemExit naming the library when it is not installed."""
    env = dict(variables)
    if "LD_PRELOAD" in env:
        name = Path(env["LD_PRELOAD"]).name
        here = next((str(Path(d) / name) for d in _LIBRARY_DIRS if (Path(d) / name).is_file()), None)
        if here is None:
            raise SystemExit(f"{name}, the Dockerfile's LD_PRELOAD, is not installed here (Debian/Ubuntu: apt-get "
                             "install libjemalloc2); or measure with --server_env inherit")
        env["LD_PRELOAD"] = here
    return env


# ---------------------------------------------------------------- child: the requests themselves


def _say(line: str) -> None:
    print(line, flush=True)


def child_memory(model_dir: str, request: str, concurrent: int, singles: list[str]) -> None:
    import tensorflow as tf

    from srgan_tf.tiling import artifact_metadata

    info = artifact_metadata(model_dir)
    float_side, image_side = _side(info["max_float_pixels"]), _side(info["max_image_pixels"])
    loaded = tf.saved_model.load(model_dir)
    sig = loaded.signatures
    image = np.load(request)  # made by the parent: a server holds the request, not what made it
    side = image.shape[0]

    def run():
        out = np.asarray(sig["serving_default"](images=tf.constant(image[None]))["images"])
        return hashlib.sha256(memoryview(out)).hexdigest(), out.shape

    _say("step loaded")
    serial = None
    for name in singles:
        if name == "serving_default":
            _say(f"step serving_default {side}x{side}")
            serial, shape = run()
            _say(f"shape {shape}")
        elif name == "upscale_float":
            _say(f"step upscale_float {float_side}x{float_side}")
            x = image[:float_side, :float_side][None].astype(np.float32) / 255.0
            np.asarray(sig["upscale_float"](images=tf.constant(x))["images"])
            del x
        elif name == "upscale_image":
            _say(f"step upscale_image {image_side}x{image_side} PNG")
            png = tf.io.encode_png(image[:image_side, :image_side]).numpy()
            # The PNG's length, read without copying the string out of the tensor (a server encodes its
            # response from the tensor itself).
            out = sig["upscale_image"](image_bytes=tf.constant([png]))["image_bytes"]
            _say(f"png_bytes {int(tf.strings.length(out)[0])}")
            del png, out
        elif name == "upscale_image_batch":
            half = image_side // 2
            _say(f"step upscale_image 4 x {half}x{half} PNG")
            pngs = [tf.io.encode_png(image[y:y + half, x:x + half]).numpy() for y in (0, half) for x in (0, half)]
            out = sig["upscale_image"](image_bytes=tf.constant(pngs))["image_bytes"]
            _say(f"png_bytes {int(tf.reduce_sum(tf.strings.length(out)))}")
            del pngs, out
        else:
            raise SystemExit(f"unknown signature {name}")
    if not concurrent:
        _say("step done")
        return
    if serial is None:
        serial = run()[0]
    _say(f"step {concurrent} concurrent serving_default {side}x{side}")
    results = [None] * concurrent

    def worker(t):
        results[t] = run()[0]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _say(f"concurrent_equal_serial {all(r == serial for r in results)}")
    _say("step done")


def child_latency(model_dir: str, generator: str, side: int, runs: int) -> None:
    import keras
    import tensorflow as tf

    from srgan_tf.export.savedmodel import serving_functions
    from srgan_tf.export.tiled import whole_image
    from srgan_tf.inference_graph import fast_generator

    tiled = tf.saved_model.load(model_dir).signatures["serving_default"]
    model = fast_generator(keras.models.load_model(generator, compile=False))
    whole = serving_functions(model, side * side, whole_image(model))["serving_default"]
    x = tf.constant(_image(side, side, 2)[None])
    calls = {"tiled": lambda: tiled(images=x)["images"].numpy(), "whole": lambda: whole(x)["images"].numpy()}
    outs = {k: f() for k, f in calls.items()}  # trace and warm up
    diff = int(np.abs(outs["tiled"].astype(int) - outs["whole"].astype(int)).max())
    times = {k: [] for k in calls}
    for _ in range(runs):
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    _say("latency " + json.dumps({"side": side, "runs": runs, "tiled_s": med["tiled"], "whole_s": med["whole"],
                                  "ratio": med["tiled"] / med["whole"], "max_diff_levels": diff,
                                  "tiled_all_s": times["tiled"], "whole_all_s": times["whole"]}))


# ---------------------------------------------------------------- parent: export, sample, report


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def sampled(cmd: list[str], env: dict[str, str]) -> tuple[list[tuple[str, int, int]], list[str], int]:
    """Runs `cmd` with `env` added to this process's environment, sampling its RSS; returns ([(step, peak RSS
    bytes, peak RssAnon bytes during it)], its other output lines, VmHWM bytes). Steps are the child's `step NAME`
    lines."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    steps, lines, lock, last = [["start", 0, 0]], [], threading.Lock(), [0, 0]

    def read():
        for line in proc.stdout:
            line = line.rstrip("\n")
            with lock:
                if line.startswith("step "):
                    steps.append([line[5:], *last])
                else:
                    lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    hwm = 0
    while proc.poll() is None:
        rss, anon, peak = (_status_kb(proc.pid, k) for k in ("VmRSS", "RssAnon", "VmHWM"))
        if rss is not None and anon is not None:
            with lock:
                last[:] = rss * 1024, anon * 1024
                steps[-1][1:] = max(steps[-1][1], last[0]), max(steps[-1][2], last[1])
            hwm = max(hwm, (peak or 0) * 1024)
        time.sleep(_SAMPLE_S)
    reader.join()
    if proc.returncode:
        raise SystemExit(f"child failed with status {proc.returncode}: {' '.join(cmd)}")
    return [tuple(step) for step in steps], lines, hwm


def export(generator: str, out: Path, max_pixels: int) -> Path:
    import keras

    from srgan_tf.export.savedmodel import export_savedmodel
    from srgan_tf.inference_graph import fast_generator
    from srgan_tf.tiling import receptive_radius

    model = keras.models.load_model(generator, compile=False)
    meta = {"scale": receptive_radius(model)[1], "receptive_radius": receptive_radius(model)[0]}
    return export_savedmodel(fast_generator(model), out / "serving", "srgan", 1, meta, max_pixels)


def main(argv: list[str] | None = None) -> dict:
    from srgan_tf.export.savedmodel import DEFAULT_MAX_PIXELS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--generator", default="", help=".keras generator (default: full size, random weights)")
    p.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS, help="the export's pixel limit")
    p.add_argument("--concurrent", type=int, default=4, help="max-size requests sent at once")
    p.add_argument("--singles", default="serving_default,upscale_float,upscale_image,upscale_image_batch",
                   help="the max-size requests sent before the concurrent ones: signature names, or "
                        "upscale_image_batch (4 PNGs at the limit in all)")
    p.add_argument("--sequence", action="store_true",
                   help="send everything to one server process (each step then holds what the earlier ones left)")
    p.add_argument("--latency_side", type=int, default=512, help="side of the latency request (0: skip)")
    p.add_argument("--latency_runs", type=int, default=3, help="timed calls of each graph")
    p.add_argument("--server_env", choices=("dockerfile", "inherit"), default="dockerfile",
                   help="the server processes' allocator: the Dockerfile's, or this process's environment as it is")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--child", choices=("memory", "latency"), help=argparse.SUPPRESS)
    p.add_argument("--model_dir", help=argparse.SUPPRESS)
    p.add_argument("--request", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "memory":
        child_memory(args.model_dir, args.request, args.concurrent, args.singles.split(","))
        return {}
    if args.child == "latency":
        child_latency(args.model_dir, args.generator, args.latency_side, args.latency_runs)
        return {}

    from common import generator_path, machine

    server_env = host_environment(dockerfile_allocator()) if args.server_env == "dockerfile" else {}
    with tempfile.TemporaryDirectory() as tmp:
        generator = generator_path(args.generator, tmp)
        model_dir = export(generator, Path(tmp), args.max_pixels)
        request = Path(tmp) / "request.npy"
        side = _side(args.max_pixels)
        np.save(request, _image(side, side, 0))
        me = [sys.executable, os.path.abspath(__file__), "--model_dir", str(model_dir), "--generator", generator,
              "--request", str(request)]
        singles = args.singles.split(",")
        # Each signature alone in a fresh server process, then the sequence (one max-size request, then
        # the concurrent ones, unless --concurrent 0) in another; --sequence: everything in one process, each step
        # after the last.
        concurrent_run = [(["serving_default"], args.concurrent)] if args.concurrent else []
        runs = [(singles, args.concurrent)] if args.sequence else [([s], 0) for s in singles] + concurrent_run
        children = []
        for sent, concurrent in runs:
            steps, lines, hwm = sampled(me + ["--child", "memory", "--concurrent", str(concurrent),
                                              "--singles", ",".join(sent)], server_env)
            children.append({"steps": [{"step": s, "peak_rss_bytes": b, "peak_anon_bytes": a} for s, b, a in steps],
                             "vm_hwm_bytes": hwm,
                             "lines": lines})
        result = {"machine": machine(), "generator": args.generator or "build_generator() (random weights)",
                  "max_pixels": args.max_pixels, "server_env": server_env, "metadata": json.loads(
                      (model_dir / "assets.extra" / "srgan_tf.json").read_text()),
                  "one_process": args.sequence, "children": children,
                  # None: no concurrent requests were sent (--concurrent 0).
                  "concurrent_equal_serial": ("concurrent_equal_serial True" in children[-1]["lines"]
                                              if args.concurrent else None)}
        if args.latency_side:
            _, lines, _ = sampled(me + ["--child", "latency", "--latency_side", str(args.latency_side),
                                        "--latency_runs", str(args.latency_runs)], server_env)
            result["latency"] = next(json.loads(x[8:]) for x in lines if x.startswith("latency "))
    print(result["machine"])
    print(f"tiling: {result['metadata']['tiling']}")
    print("server environment: " + (" ".join(f"{k}={v}" for k, v in server_env.items()) or "inherited"))
    for child in result["children"]:
        print(f"  a server process (VmHWM {child['vm_hwm_bytes'] / 1e9:.2f} GB):")
        for s in child["steps"]:
            print(f"    {s['step']:<46} peak RSS {s['peak_rss_bytes'] / 1e9:6.2f} GB, anonymous "
                  f"{s['peak_anon_bytes'] / 1e9:5.2f} GB")
    if args.concurrent:
        print(f"  concurrent results equal serial: {result['concurrent_equal_serial']}")
    if "latency" in result:
        lat = result["latency"]
        print(f"latency {lat['side']}x{lat['side']} serving_default, median of {lat['runs']}: tiled "
              f"{lat['tiled_s']:.2f} s, whole-image {lat['whole_s']:.2f} s, ratio {lat['ratio']:.3f}; "
              f"max difference {lat['max_diff_levels']} gray levels")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
