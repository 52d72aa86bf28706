"""python -m srgan_tf.export --generator=RUN/generator.keras --out=DIR [flags]

Writes a TF Serving SavedModel (DIR/serving/<name>/<version>/, DIR/serving/models.config), TFLite models
(DIR/tflite/<name>_{fp32,fp16,dynamic_int8,int8}.tflite), with --formats=...,onnx an ONNX model
(DIR/onnx/<name>.onnx; needs `pip install 'srgan-tf[onnx]'`) and DIR/report.json, and prints the report.
Exit status (srgan_tf.cli's): 0 done, 1 bad input or a failed artifact check, 2 a bad flag or flag value,
130 interrupted; errors are one `error: ...` line. From a checkout, `python -m export` is the same command.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from srgan_tf import cli

_SET5 = os.path.join("..", "shared", "data", "Set5")


def _flag_values() -> flags.FlagValues:
    # A private FlagValues, so importing this module never clashes with another tool's flags.
    fv = flags.FlagValues()
    flags.DEFINE_string("generator", None, "The trained generator, a .keras file.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder (created).", flag_values=fv)
    flags.DEFINE_string("name", "srgan", "Model name: the TF Serving model name and the TFLite file prefix.",
                        flag_values=fv)
    flags.DEFINE_integer("version", None, "SavedModel version (default: one more than the newest there).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_list("formats", ["savedmodel", "tflite"], "Artifacts to write: savedmodel, tflite, onnx (the "
                      "last needs tf2onnx, onnx and onnxruntime: pip install 'srgan-tf[onnx]').", flag_values=fv)
    flags.DEFINE_list("tflite_variants", ["fp32", "fp16", "dynamic_int8", "int8"], "TFLite models to write.",
                      flag_values=fv)
    flags.DEFINE_string("calibration_dir", None, "Folder of real images whose crops calibrate the int8 model "
                        "(default: scikit-image's sample photos).", flag_values=fv)
    # savedmodel.DEFAULT_MAX_PIXELS, written out so that --help does not load TensorFlow (a test compares them).
    flags.DEFINE_integer("max_pixels", 2048 * 2048, "Largest request the SavedModel accepts, in input pixels "
                         "(batch*height*width; upscale_float: a quarter of it).", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("fidelity_data", _SET5, "Benchmark set folder with LR_bicubic_x4/ and HR/ for the "
                        "fidelity check (the default is where a checkout keeps Set5; without such a folder, "
                        "fidelity is not measured and a note says so).", flag_values=fv)
    flags.DEFINE_integer("latency_runs", 5, "Timed runs per artifact for the 128x128 latency (0: skip).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("scale", 4, "Upscaling factor the generator must have.", lower_bound=1,
                         flag_values=fv)
    for name in ("generator", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 bad input or failed check, 2 bad flags, 130
    interrupted)."""
    cli.lower_native_log_level()
    fv = _flag_values()
    status = cli.parse_flags(fv, sys.argv if argv is None else argv,
                             "python -m srgan_tf.export --generator=G.keras --out=DIR")
    if status is not None:
        return status

    from srgan_tf.loader import ModelLoadError

    from . import ExportError, ExportOptionError
    from .pipeline import run_export

    try:
        run_export(fv.generator, fv.out, name=fv.name, version=fv.version, formats=fv.formats,
                   tflite_variants=fv.tflite_variants, calibration_dir=fv.calibration_dir,
                   max_pixels=fv.max_pixels, fidelity_data=fv.fidelity_data, latency_runs=fv.latency_runs,
                   scale=fv.scale)
    except ExportOptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_BAD_FLAGS
    except (ExportError, ModelLoadError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
