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
from absl import app, flags

import srgan_tf.models  # noqa: F401 - registers PixelShuffle for loading
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


_A = flags.DEFINE_string("a", None, "Generator at alpha = 0 (.keras), e.g. generator_srresnet.keras.")
_B = flags.DEFINE_string("b", None, "Generator at alpha = 1 (.keras), e.g. generator_srgan.keras.")
_ALPHA = flags.DEFINE_float("alpha", 0.8, "Blend weight of --b, in [0, 1].")
_OUT = flags.DEFINE_string("out", None, "Where to write the blended generator (.keras).")


def main(argv: list[str]) -> int:
    del argv
    if not (_A.value and _B.value and _OUT.value):
        print("error: --a, --b and --out are required", file=sys.stderr)
        return 2
    if not _OUT.value.endswith(".keras"):
        print(f"error: --out must end in .keras, got {_OUT.value}", file=sys.stderr)
        return 2
    try:
        blended = interpolate(_load(_A.value), _load(_B.value), _ALPHA.value)
    except InterpolationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write(_OUT.value, lambda tmp: blended.save(tmp))
    print(f"wrote {_OUT.value}: {1 - _ALPHA.value:g} x {_A.value} + {_ALPHA.value:g} x {_B.value}")
    return 0


if __name__ == "__main__":
    app.run(main)

