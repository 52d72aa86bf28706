"""Exporting a trained SRGAN generator for serving: a TF Serving SavedModel and TFLite models.

Run `python -m export --generator=RUN/generator.keras --out=DIR`; see export/__main__.py for the flags.
Modules: pipeline (the whole export), savedmodel (serving signatures), warmup (TF Serving warm-up
records), tflite (conversion and checks), report (size, fidelity and latency of every artifact).
"""


class ExportError(Exception):
    """An export that cannot be done or whose artifact fails a check; the message is one line."""
