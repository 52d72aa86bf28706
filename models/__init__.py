"""The shipped generators (`*.keras`) and their measured figures (`*.json`), installed as `srgan_tf.weights`.

This file only makes the folder a regular package, so that `importlib.resources` finds the files in an
editable install as well as an installed wheel; `srgan_tf.loader.shipped_model_path(name)` resolves a name.
"""
