"""Makes the project's Keras layers loadable once Keras is usable, without importing Keras to do so.

`keras.models.load_model` finds a custom layer (PixelShuffle, BicubicUpsample) only if the module defining
it, srgan_tf.models, has been imported. Importing it means importing TensorFlow (seconds, and its log
lines), which `import srgan_tf` should not cost a command that never touches a model. So
`register_layers_with_keras()`, which `import srgan_tf` calls:

- imports srgan_tf.models at once when Keras is already imported;
- otherwise puts a finder first on `sys.meta_path` that lets the usual finders locate `keras` and
  `tensorflow` and, after either module has finished executing, imports srgan_tf.models as soon as Keras
  is whole and TensorFlow is either absent or whole too, then removes itself. Waiting for both matters:
  each imports the other while half-initialised, so neither finishing alone is a safe moment.

Promise: after `import srgan_tf`, every completed `import keras` (or `import tensorflow`, which imports
Keras) leaves the layers registered. A failure to import srgan_tf.models there never breaks the user's
import; the layers are then registered the next time srgan_tf.models is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import ModuleType

_WATCHED = ("keras", "tensorflow")


def register_layers_with_keras() -> None:
    """Registers srgan_tf's Keras layers now if Keras is imported, else right after it is (see above)."""
    if _whole("keras"):
        importlib.import_module("srgan_tf.models")
    elif _Finder not in sys.meta_path:
        sys.meta_path.insert(0, _Finder)


def _whole(name: str, just_executed: str | None = None) -> bool:
    """Whether module `name` is imported and done executing (`just_executed` has, though importlib has not
    yet cleared its `_initializing` mark)."""
    module = sys.modules.get(name)
    if module is None:
        return False
    return name == just_executed or not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _after_exec(name: str) -> None:
    if not _whole("keras", name) or ("tensorflow" in sys.modules and not _whole("tensorflow", name)):
        return
    _Finder.remove()
    # Never break the user's `import keras`; srgan_tf.loader imports srgan_tf.models again anyway.
    with contextlib.suppress(Exception):
        importlib.import_module("srgan_tf.models")


class _Finder:
    """A meta path finder that finds nothing itself: it hooks the loaders of `keras` and `tensorflow`."""

    @classmethod
    def find_spec(cls, name: str, path=None, target: ModuleType | None = None):
        if name not in _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            original = loader.exec_module

            def exec_module(module: ModuleType) -> None:
                original(module)
                if module.__name__ != name:  # a loader shared with other modules (a zip file's) loaded one
                    return
                del loader.exec_module  # back to the class's method: the loader is as it was found
                _after_exec(name)

            loader.exec_module = exec_module  # this spec's loader instance only; its type is unchanged
        return spec

    @classmethod
    def remove(cls) -> None:
        while cls in sys.meta_path:
            sys.meta_path.remove(cls)
