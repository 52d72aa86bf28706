"""OpenVINO on the CPU, the peer a user serving on Intel CPUs would pick (optional: `pip install openvino`).

`openvino_upscalers(path, hints)` reads an exported float model, a SavedModel folder of
`srgan_tf.export.tflite.export_float_savedmodel` or a float `.tflite` file (OpenVINO reads both directly),
once, compiles it for the CPU with each inference precision hint ("f32" or "bf16"), and wraps each as an
`srgan_tf.loader.Upscaler`, so that it is timed and scored by the same code as every exported artifact. None
when openvino is absent.
"""

from __future__ import annotations

import os

from srgan_tf.loader import Upscaler

HINTS = ("f32", "bf16")


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_upscalers(path: str | os.PathLike, hints: tuple[str, ...], scale: int = 4) -> list[Upscaler] | None:
    """One upscaler per hint, float32 [N, h, w, 3] in [0, 1] -> [0, 1] through OpenVINO's CPU plugin; the model
    is read (a SavedModel converted, which takes seconds) once for all of them. None without openvino."""
    if not available():
        return None
    import openvino as ov

    path = str(path)
    core = ov.Core()
    model = core.read_model(path) if path.endswith(".tflite") else ov.convert_model(path)
    source = "tflite" if path.endswith(".tflite") else "SavedModel"

    def upscaler(hint: str) -> Upscaler:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        return Upscaler(f"OpenVINO {ov.__version__} {hint} ({source})", scale, lambda x: compiled(x)[0])

    return [upscaler(hint) for hint in hints]
