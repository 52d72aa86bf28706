"""The whole export: load and check the generator, write the artifacts, measure them, write report.json."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from srgan_tf.images import ImageError, atomic_write, find_images, load_image
from srgan_tf.inference_graph import GraphError, fast_generator
from srgan_tf.loader import load_upscaler
from srgan_tf.tiling import TilingError, receptive_radius

from . import ExportError, ExportOptionError, report
from . import onnx as onnx_export
from .savedmodel import DEFAULT_MAX_PIXELS, export_savedmodel, next_version, write_models_config
from .tflite import VARIANTS, calibration_crops, export_tflite

FORMATS = ("savedmodel", "tflite", "onnx")
DEFAULT_FORMATS = ("savedmodel", "tflite")  # onnx needs the optional extra (pip install 'srgan-tf[onnx]')
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def default_calibration_images() -> list[np.ndarray]:
    """Real photographs shipped with scikit-image, used when no --calibration_dir is given."""
    from skimage import data

    photos = (data.astronaut, data.coffee, data.chelsea, data.rocket)
    return [np.ascontiguousarray(photo()[..., :3]) for photo in photos]


def calibration_images(folder: str | os.PathLike | None) -> tuple[list[np.ndarray], str]:
    """(uint8 RGB images, a description of where they came from) for int8 calibration."""
    if folder is None:
        return default_calibration_images(), "scikit-image sample photos (astronaut, coffee, chelsea, rocket)"
    if not Path(folder).is_dir():
        raise ExportError(f"--calibration_dir {folder}: not a folder")
    paths = find_images(folder)
    if not paths:
        raise ExportError(f"--calibration_dir {folder}: no image files in it")
    images = []
    for p in paths:
        try:
            images.append(load_image(p))
        except ImageError as e:
            raise ExportError(f"--calibration_dir: {e}") from None
    return images, f"{len(images)} images in {folder}"


def run_export(
    generator: str | os.PathLike,
    out: str | os.PathLike,
    name: str = "srgan",
    version: int | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    tflite_variants: Sequence[str] = VARIANTS,
    calibration_dir: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fidelity_data: str | os.PathLike | None = None,
    latency_runs: int = 5,
    scale: int = 4,
    log: Callable[[str], None] = print,
) -> dict:
    """Exports the .keras `generator` under `out` and returns the report (also written to out/report.json).

    Writes `out/serving/<name>/<version>/` plus `out/serving/models.config` ("savedmodel") and
    `out/tflite/<name>_<variant>.tflite` ("tflite") and `out/onnx/<name>.onnx` ("onnx", which needs tf2onnx,
    onnx and onnxruntime: without them an ExportError before anything is written). Fidelity is measured on
    the benchmark set `fidelity_data` (LR_bicubic_x4/ and HR/); without one, every artifact's "fidelity" is
    None, the report's "fidelity_not_measured" says why (it is None when fidelity was measured) and the
    printed table has no fidelity columns. Raises ExportOptionError for an option that cannot work, ExportError or
    ModelLoadError (one-line messages) for an unusable generator or an artifact that fails its checks.
    """
    if not _NAME.match(name):
        raise ExportOptionError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
    unknown = sorted(set(formats) - set(FORMATS)) + sorted(set(tflite_variants) - set(VARIANTS))
    if unknown or not formats:
        raise ExportOptionError(f"unknown or no formats {unknown}; choose from {', '.join(FORMATS + VARIANTS)}")
    if version is not None and version < 1:
        raise ExportOptionError(f"--version must be a positive integer, got {version}")
    if max_pixels < 1:
        raise ExportOptionError(f"--max_pixels must be positive, got {max_pixels}")

    if "onnx" in formats:  # before writing anything
        onnx_export.require()
    calibration, notes = None, []
    if "tflite" in formats and "int8" in tflite_variants:  # read before writing anything
        images, source = calibration_images(calibration_dir)
        calibration = calibration_crops(images)
        notes.append(f"int8 calibrated on {len(calibration)} crops of {source}")

    import keras

    reference = load_upscaler(str(generator), scale)  # checks it is a generator of this scale
    model = keras.models.load_model(generator, compile=False)
    try:
        radius = receptive_radius(model)[0]
    except TilingError:
        radius = None
    # Every format runs the generator's faster, equal form (the output convolution before the last pixel
    # shuffle, srgan_tf.inference_graph); a generator of another shape is exported as it is.
    try:
        model, form = fast_generator(model), "fast (output convolution before the last pixel shuffle)"
    except GraphError:
        form = "as trained"
    metadata = {"producer": "srgan_tf export", "generator": Path(generator).name, "scale": scale,
                "receptive_radius": radius, "inference_graph": form, "tensorflow": tf.__version__}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    artifacts = [{"name": "keras", "format": "keras", "path": str(generator)}]

    if "savedmodel" in formats:
        serving = out / "serving"
        version = version or next_version(serving / name)
        log(f"writing SavedModel {serving / name / str(version)} ...")
        path = export_savedmodel(model, serving, name, version, metadata, max_pixels)
        write_models_config(serving)
        artifacts.append({"name": f"savedmodel v{version}", "format": "savedmodel", "path": str(path)})

    if "tflite" in formats and tflite_variants:
        results = export_tflite(model, out / "tflite", name, tuple(tflite_variants), scale, metadata,
                                calibration, log)
        for variant, info in results.items():
            artifacts.append({"name": f"tflite {variant}", "format": "tflite", **info})
        notes += report.gpu_notes(artifacts)

    if "onnx" in formats:
        path = out / "onnx" / f"{name}.onnx"
        log(f"converting ONNX {path} ...")
        onnx_export.export_onnx(model, path, scale, metadata)
        info = onnx_export.onnx_info(path)
        artifacts.append({"name": "onnx", "format": "onnx", "path": str(path),
                          "opset": info["opset"], "producer": info["producer"], "ops": info["ops"]})

    pairs, not_measured = [], None
    if fidelity_data is not None and (Path(fidelity_data) / "HR").is_dir():
        pairs = report.load_pairs(fidelity_data)
    if not pairs:
        where = ("no benchmark set given" if fidelity_data is None
                 else f"no LR_bicubic_x4/ and HR/ image pairs under {fidelity_data}")
        not_measured = (f"{where}; give --fidelity_data=SET_DIR, a benchmark folder with LR_bicubic_x4/ and HR/ "
                        "(e.g. Set5)")
        notes.append(f"fidelity not measured: {not_measured}")
    log(f"measuring {len(artifacts)} artifacts on {len(pairs)} images ...")
    ref_outputs = report.reference_outputs(reference, pairs)
    for artifact in artifacts:
        upscaler = reference if artifact["format"] == "keras" else load_upscaler(artifact["path"], scale)
        artifact["size_bytes"] = report.artifact_size(artifact["path"])
        artifact["fidelity"] = report.fidelity(upscaler, pairs, ref_outputs) if pairs else None
        artifact["latency_ms"] = report.latency_ms(upscaler, latency_runs) if latency_runs > 0 else None

    result = {"generator": str(generator), "name": name, "scale": scale, "receptive_radius": radius,
              "max_pixels": max_pixels, "fidelity_data": None if not pairs else str(fidelity_data),
              "fidelity_images": [p[0] for p in pairs], "fidelity_not_measured": not_measured,
              "latency_input": [report.LATENCY_SIDE] * 2,
              "latency_runs": latency_runs, "machine": report.machine(), "notes": notes,
              "artifacts": artifacts}
    atomic_write(out / "report.json", lambda p: Path(p).write_text(json.dumps(result, indent=2) + "\n"))
    log(report.format_table(artifacts))
    for note in notes:
        log(f"note: {note}")
    return result
