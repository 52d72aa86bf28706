"""srgan-tf: SRGAN (Ledig et al., CVPR 2017) in TensorFlow 2 / Keras 3.

`import srgan_tf` makes the generators this project saves loadable with plain Keras:
`import srgan_tf; keras.models.load_model("g.keras")` works, because the project's Keras layers are
registered as soon as Keras is imported (srgan_tf.registration); importing srgan_tf alone does not import
TensorFlow. `srgan_tf.load_generator(path_or_name)` loads a saved generator as a `keras.Model`; the names
"srresnet" and "srgan" are the generators shipped with the package (srgan_tf.loader.SHIPPED).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srgan_tf import registration as _registration

__version__ = "0.1.0"
__all__ = ["__version__", "load_generator"]

_registration.register_layers_with_keras()

if TYPE_CHECKING:
    from srgan_tf.loader import load_generator


def __getattr__(name: str):
    # load_generator lives in srgan_tf.loader, which imports TensorFlow: fetched on first use.
    if name == "load_generator":
        from srgan_tf.loader import load_generator

        return load_generator
    raise AttributeError(f"module 'srgan_tf' has no attribute {name!r}")
