"""Exporting a trained SRGAN generator for serving: a TF Serving SavedModel and TFLite models.

Installed as `srgan_tf.export` (the repository keeps it in the top-level export/ folder, which a checkout can
also run as `python -m export`). Run `python -m srgan_tf.export --generator=RUN/generator.keras --out=DIR`;
see __main__.py for the flags. Imports inside the package are relative, so both names work.
Modules: pipeline (the whole export), savedmodel (serving signatures), warmup (TF Serving warm-up
records), tflite (conversion and checks), report (size, fidelity and latency of every artifact).
"""


class ExportError(Exception):
    """An export that cannot be done or whose artifact fails a check; the message is one line."""


class ExportOptionError(ExportError):
    """An export option (a flag of the command line) whose value cannot work; the command exits 2 for it."""
