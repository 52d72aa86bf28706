"""Network interpolation (as in ESRGAN, Wang et al. 2018): blend two generators of one architecture.

    python -m srgan_tf.interpolate --a=RUN/generator_srresnet.keras --b=RUN/generator_srgan.keras \
        --alpha=0.8 --out=RUN/generator_alpha0.8.keras

Every weight (BatchNorm statistics included) becomes (1 - alpha) * a + alpha * b: alpha = 0 is `a` (the
PSNR-oriented SRResNet), alpha = 1 is `b` (the perceptual SRGAN), and values between trade distortion for
texture without retraining.
"""

from __future__ import annotations

import sys

import keras
from absl import flags

import srgan_tf.models  # noqa: F401 - registers PixelShuffle for loading
from srgan_tf import cli
from srgan_tf.images import atomic_write


class InterpolationError(ValueError):
    """Two models that cannot be blended; the message says why."""


def interpolate(a: keras.Model, b: keras.Model, alpha: float) -> keras.Model:
    """A new model with `a`'s architecture and weights (1 - alpha) * a + alpha * b, alpha in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise InterpolationError(f"alpha must be in [0, 1], got {alpha}")
    wa, wb = a.get_weights(), b.get_weights()
    shapes_a, shapes_b = [w.shape for w in wa], [w.shape for w in wb]
    if shapes_a != shapes_b:
        raise InterpolationError(f"the models differ in architecture ({len(wa)} weights of shapes "
                                 f"{shapes_a[:3]}... against {len(wb)} of {shapes_b[:3]}...)")
    blended = keras.models.clone_model(a)
    blended.set_weights([((1.0 - alpha) * x + alpha * y).astype(x.dtype) for x, y in zip(wa, wb, strict=True)])
    return blended


def _load(path: str) -> keras.Model:
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises many kinds of errors for missing or bad files
        raise InterpolationError(f"{path}: cannot load ({str(e).strip().splitlines()[0][:200]})") from None


def _flag_values() -> flags.FlagValues:
    fv = flags.FlagValues()  # private, so importing this module defines no global flags
    flags.DEFINE_string("a", None, "Generator at alpha = 0 (.keras), e.g. generator_srresnet.keras.", flag_values=fv)
    flags.DEFINE_string("b", None, "Generator at alpha = 1 (.keras), e.g. generator_srgan.keras.", flag_values=fv)
    flags.DEFINE_float("alpha", 0.8, "Blend weight of --b, in [0, 1].", lower_bound=0.0, upper_bound=1.0,
                       flag_values=fv)
    flags.DEFINE_string("out", None, "Where to write the blended generator (.keras; missing folders are made).",
                        flag_values=fv)
    for name in ("a", "b", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (srgan_tf.cli's: 0 done, 1 a model that cannot be loaded
    or blended, 2 a bad flag)."""
    fv = _flag_values()
    status = cli.parse_flags(fv, sys.argv if argv is None else argv,
                             "python -m srgan_tf.interpolate --a=A.keras --b=B.keras --alpha=0.8 --out=OUT.keras")
    if status is not None:
        return status
    if not fv.out.endswith(".keras"):
        print(f"error: --out must end in .keras, got {fv.out}", file=sys.stderr)
        return cli.EXIT_BAD_FLAGS
    try:
        blended = interpolate(_load(fv.a), _load(fv.b), fv.alpha)
        atomic_write(fv.out, lambda tmp: blended.save(tmp))
    except (InterpolationError, OSError) as e:
        return cli.error(e)
    print(f"wrote {fv.out}: {1 - fv.alpha:g} x {fv.a} + {fv.alpha:g} x {fv.b}")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
