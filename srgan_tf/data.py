"""tf.data input pipelines: HR images in, aligned (LR, HR) training crops out.

Training batches are `(lr, hr)`: lr float32 [B, crop/scale, crop/scale, 3] in [0, 1], hr float32
[B, crop, crop, 3] in [-1, 1] (the paper's ranges), where lr is the configured degradation of its own hr
crop, rounded to uint8 first as a saved LR image would be.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import ml_collections
import numpy as np
import tensorflow as tf
from PIL import Image

from srgan_tf.errors import check
from srgan_tf.images import DEFAULT_MAX_PIXELS, ImageError, crop_to_scale, find_images, load_image
from srgan_tf.imresize import METHODS, resize

log = logging.getLogger(__name__)

# Photographs in scikit-image's wheel (none from Set5/Set14): the built-in training data.
SAMPLE_TRAIN = ("astronaut.png", "camera.png", "chelsea.png", "coins.png", "hubble_deep_field.jpg", "ihc.png",
                "moon.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg", "brick.png", "grass.png",
                "gravel.png")
SAMPLE_VAL = ("coffee.png",)
# config.data.source: scikit-image's photos | a folder of HR images | a TFDS dataset | HR/ and LR/ folders
SOURCES = ("sample", "folder", "tfds", "paired")


class DataError(ValueError):
    """Training or validation data that cannot be used; the message names the folder or dataset."""


class SkippedFiles:
    """The files a pipeline skipped, each logged once with its reason. Thread-safe (tf.data maps in parallel)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reasons: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            if path not in self.reasons:
                self.reasons[path] = reason
                log.warning("skipping %s: %s", path, reason)

    def __len__(self) -> int:
        return len(self.reasons)


def sample_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _probe(path: Path, min_side: int, skipped: SkippedFiles, max_pixels: int) -> bool:
    """Header check: a usable, not too large, not too small image. Decodes nothing."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h <= max_pixels:
                im.verify()
    except Image.DecompressionBombError:
        skipped.add(str(path), "more pixels than Pillow's decompression-bomb limit")
        return False
    except Exception as e:  # PIL raises many kinds of errors for bad files
        skipped.add(str(path), f"not a readable image ({type(e).__name__})")
        return False
    if w * h > max_pixels:
        skipped.add(str(path), f"{w}x{h} is more than the {max_pixels}-pixel limit")
        return False
    if min(w, h) < min_side:
        skipped.add(str(path), f"{w}x{h} is smaller than the {min_side}-pixel crop")
        return False
    return True


def hr_paths(cfg: ml_collections.ConfigDict, skipped: SkippedFiles) -> list[Path]:
    """Usable HR image files of a `sample` or `folder` source; DataError when there is none."""
    if cfg.source == "sample":
        candidates, where = [sample_dir() / n for n in SAMPLE_TRAIN], "scikit-image's sample photos"
    else:
        folder = Path(cfg.path)
        if not folder.is_dir():
            raise DataError(f"config.data.path: folder {folder} does not exist")
        candidates, where = find_images(folder), f"folder {folder}"
    usable = [p for p in candidates if _probe(p, cfg.crop, skipped, DEFAULT_MAX_PIXELS)]
    if not usable:
        raise DataError(f"{where} has no usable image of at least {cfg.crop}x{cfg.crop} pixels")
    return usable


def _decode_files(paths: list[Path], skipped: SkippedFiles) -> tf.data.Dataset:
    def decode(path: bytes) -> np.ndarray:
        try:
            return load_image(path.decode())
        except ImageError as e:
            skipped.add(path.decode(), str(e).split(": ", 1)[-1])
            return np.zeros((0, 0, 3), np.uint8)

    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    ds = ds.map(lambda p: tf.ensure_shape(tf.numpy_function(decode, [p], tf.uint8, stateful=False), [None, None, 3]),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.filter(lambda im: tf.size(im) > 0)


def _tfds_images(cfg: ml_collections.ConfigDict, seed: int) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    data_dir = cfg.tfds_data_dir or None
    try:
        builder = tfds.builder(cfg.tfds_name, data_dir=data_dir)
        if cfg.tfds_download:
            builder.download_and_prepare()
        ds = builder.as_dataset(split=cfg.tfds_split, shuffle_files=True,
                                read_config=tfds.ReadConfig(shuffle_seed=seed))
        keys = builder.info.features.keys()
    except Exception as e:  # tfds raises assorted errors for missing, unprepared or unreachable data
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(
            f"TFDS dataset {cfg.tfds_name!r} (split {cfg.tfds_split!r}) is not available in "
            f"{data_dir or '~/tensorflow_datasets'} and could not be prepared: {reason}. Prepare it where there is "
            f"internet (tfds build {cfg.tfds_name} --data_dir=DIR), copy DIR here and set "
            "--config.data.tfds_data_dir=DIR, or train on a folder (--config.data.source=folder --config.data.path=...)"
        ) from None
    key = "hr" if "hr" in keys else "image"
    if key not in keys:
        raise DataError(f"TFDS dataset {cfg.tfds_name!r} has no 'hr' or 'image' feature (it has {sorted(keys)})")

    def rgb(ex):
        im = ex[key]
        return tf.cond(tf.shape(im)[-1] == 1, lambda: tf.image.grayscale_to_rgb(im), lambda: im[..., :3])

    ds = ds.map(rgb, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.filter(lambda im: tf.reduce_min(tf.shape(im)[:2]) >= cfg.crop)


def _augment(images: list[tf.Tensor], seed: tf.Tensor) -> list[tf.Tensor]:
    """The same random flip and 90-degree rotation for every image of the list."""
    s = tf.random.experimental.stateless_split(seed, 3)
    flip_lr = tf.random.stateless_uniform([], s[0]) < 0.5
    flip_ud = tf.random.stateless_uniform([], s[1]) < 0.5
    k = tf.random.stateless_uniform([], s[2], 0, 4, dtype=tf.int32)

    def one(im):
        im = tf.cond(flip_lr, lambda: tf.reverse(im, [1]), lambda: im)
        im = tf.cond(flip_ud, lambda: tf.reverse(im, [0]), lambda: im)
        return tf.image.rot90(im, k)

    return [one(im) for im in images]


def _random_offset(seed: tf.Tensor, size: tf.Tensor, crop: int) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed, 0, size - crop + 1, dtype=tf.int32)


def _to_ranges(lr_u8: tf.Tensor, hr_u8: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(lr_u8, tf.float32) / 255.0, tf.cast(hr_u8, tf.float32) / 127.5 - 1.0


def _degraded_crop(cfg: ml_collections.ConfigDict, scale: int):
    def fn(seed, hr):
        s = tf.random.experimental.stateless_split(seed, 3)
        shape = tf.shape(hr)
        y, x = _random_offset(s[0], shape[0], cfg.crop), _random_offset(s[1], shape[1], cfg.crop)
        hr = hr[y:y + cfg.crop, x:x + cfg.crop]
        if cfg.augment:
            (hr,) = _augment([hr], s[2])
        hr = tf.ensure_shape(hr, [cfg.crop, cfg.crop, 3])
        return _to_ranges(resize(hr, 1 / scale, cfg.degradation), hr)

    return fn


def _paired_images(cfg: ml_collections.ConfigDict, scale: int, skipped: SkippedFiles) -> tf.data.Dataset:
    hr_dir = Path(cfg.path) / "HR" if (Path(cfg.path) / "HR").is_dir() else Path(cfg.path)
    lr_dir = Path(cfg.lr_dir) if cfg.lr_dir else Path(cfg.path) / "LR"
    if not Path(cfg.path).is_dir():
        raise DataError(f"config.data.path: folder {cfg.path} does not exist")
    if not lr_dir.is_dir():
        raise DataError(f"LR folder {lr_dir} does not exist (config.data.lr_dir)")
    lr_by_name = {p.name: p for p in find_images(lr_dir)}
    pairs = [(lr_by_name[p.name], p) for p in find_images(hr_dir) if p.name in lr_by_name]
    if not pairs:
        raise DataError(f"no image in {hr_dir} has a same-named LR image in {lr_dir}")

    def decode(lr_path: bytes, hr_path: bytes):
        try:
            lr, hr = load_image(lr_path.decode()), load_image(hr_path.decode())
        except ImageError as e:
            skipped.add(str(e).split(": ", 1)[0], str(e).split(": ", 1)[-1])
            return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)
        too_big = lr.shape[0] * scale > hr.shape[0] or lr.shape[1] * scale > hr.shape[1]
        if too_big or min(lr.shape[:2]) < cfg.crop // scale:
            skipped.add(hr_path.decode(), f"LR {lr.shape[1]}x{lr.shape[0]} does not fit HR {hr.shape[1]}x{hr.shape[0]} "
                        f"at scale {scale}, or is smaller than the crop")
            return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0, 3), np.uint8)
        return lr, hr

    ds = tf.data.Dataset.from_tensor_slices(([str(a) for a, _ in pairs], [str(b) for _, b in pairs]))
    ds = ds.map(lambda a, b: tuple(tf.ensure_shape(t, [None, None, 3]) for t in
                                   tf.numpy_function(decode, [a, b], [tf.uint8, tf.uint8], stateful=False)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.filter(lambda lr, hr: tf.size(lr) > 0)


def _paired_crop(cfg: ml_collections.ConfigDict, scale: int):
    lr_crop = cfg.crop // scale

    def fn(seed, images):
        lr, hr = images
        s = tf.random.experimental.stateless_split(seed, 3)
        shape = tf.shape(lr)
        y, x = _random_offset(s[0], shape[0], lr_crop), _random_offset(s[1], shape[1], lr_crop)
        lr = lr[y:y + lr_crop, x:x + lr_crop]
        hr = hr[y * scale:(y + lr_crop) * scale, x * scale:(x + lr_crop) * scale]
        if cfg.augment:
            lr, hr = _augment([lr, hr], s[2])
        return _to_ranges(tf.ensure_shape(lr, [lr_crop, lr_crop, 3]), tf.ensure_shape(hr, [cfg.crop, cfg.crop, 3]))

    return fn


def training_source(cfg: ml_collections.ConfigDict, scale: int, seed: int = 0,
                    skipped: SkippedFiles | None = None) -> tf.data.Dataset:
    """The endless, shuffled stream that `train_batches` cuts training crops from: decoded HR images (uint8
    [h, w, 3]), or (lr, hr) image pairs for a `paired` source, cached as `cfg.cache` says.

    `cfg` is `config.data`. Built once per run: the folder's headers are probed and the TFDS builder opened
    here, and every iterator of the batches made from it shares its cache and its order (which depends on
    `seed` alone). Unusable files are skipped and recorded in `skipped`; DataError when the source has no
    usable image at all, errors.ArgumentError for a `source`, `degradation` or `shuffle_buffer` that
    cannot work.
    """
    check(cfg.source in SOURCES, "source", f"must be one of {SOURCES}, got {cfg.source!r}")
    check(cfg.degradation in METHODS, "degradation", f"must be one of {METHODS}, got {cfg.degradation!r}")
    check(cfg.shuffle_buffer >= 1, "shuffle_buffer", f"must be >= 1, got {cfg.shuffle_buffer}")
    skipped = SkippedFiles() if skipped is None else skipped
    if cfg.source == "paired":
        images = _paired_images(cfg, scale, skipped)
    elif cfg.source == "tfds":
        images = _tfds_images(cfg, seed)
    else:
        images = _decode_files(hr_paths(cfg, skipped), skipped)
    if cfg.cache == "memory":
        images = images.cache()
    elif cfg.cache != "none":
        images = images.cache(cfg.cache)
    # Not reshuffled per iterator: a strategy's distributed dataset may iterate it more than once.
    return images.repeat().shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)


def train_batches(source: tf.data.Dataset, cfg: ml_collections.ConfigDict, scale: int, batch_size: int,
                  seed: int = 0, start: int = 0) -> tf.data.Dataset:
    """`(lr, hr)` batches (see the module docstring) cut from `source` (`training_source` of the same `cfg`,
    `scale` and `seed`). Batch k is a function of (`seed`, k) alone, and the dataset begins at batch `start`
    without cropping or degrading the ones before it: a resumed run sees the batches the interrupted one would
    have seen."""
    make_pair = _paired_crop(cfg, scale) if cfg.source == "paired" else _degraded_crop(cfg, scale)
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip(seeds, source).skip(start * batch_size)
    # TF ops and Python branches on the config alone: converting them with autograph (the resize's whole call
    # tree) would add seconds to every pipeline build and change nothing.
    ds = ds.map(tf.autograph.experimental.do_not_convert(make_pair), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True  # batch k depends on (seed, k) alone, also where a strategy's defaults differ
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(options)


def train_dataset(cfg: ml_collections.ConfigDict, scale: int, batch_size: int, seed: int = 0,
                  skipped: SkippedFiles | None = None, start: int = 0) -> tf.data.Dataset:
    """The batches of a `training_data` built for them alone, without validation images."""
    return training_data(cfg, scale, batch_size, seed, skipped, validation=False).batches(start)


def validation_images(cfg: ml_collections.ConfigDict, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Whole validation images as `(name, lr uint8 [h, w, 3], hr uint8 [scale*h, scale*w, 3])`.

    From `cfg.val_dir` (a benchmark folder with HR/ and, if present, LR_bicubic_x<scale>/), else the held-out
    sample photos; HR is cropped to a multiple of `scale` and LR made with the configured degradation when
    the folder has none. At most `cfg.val_max_images` images.
    """
    if cfg.val_dir:
        if not (Path(cfg.val_dir) / "HR").is_dir():
            raise DataError(f"config.data.val_dir: {cfg.val_dir} has no HR/ folder")
        hr_files = find_images(Path(cfg.val_dir) / "HR")
        lr_dir = Path(cfg.val_dir) / f"LR_bicubic_x{scale}"
    else:
        hr_files, lr_dir = [sample_dir() / n for n in SAMPLE_VAL], None
    out = []
    for path in hr_files[: cfg.val_max_images]:
        hr = crop_to_scale(load_image(path), scale)
        if lr_dir is not None and (lr_dir / path.name).is_file():
            lr = load_image(lr_dir / path.name)
        else:
            lr = resize(hr, 1 / scale, cfg.degradation).numpy()
        out.append((path.stem, lr, hr))
    if not out:
        raise DataError(f"validation folder {cfg.val_dir}/HR has no image")
    return out


@dataclass(frozen=True)
class TrainingData:
    """What a run trains and validates on, built once (`training_data`); every fit() draws from it."""

    source: tf.data.Dataset
    cfg: ml_collections.ConfigDict
    scale: int
    batch_size: int
    seed: int
    validation: list[tuple[str, np.ndarray, np.ndarray]]

    def batches(self, start: int = 0) -> tf.data.Dataset:
        """`train_batches` of the source from batch number `start` on."""
        return train_batches(self.source, self.cfg, self.scale, self.batch_size, self.seed, start=start)


def training_data(cfg: ml_collections.ConfigDict, scale: int, batch_size: int, seed: int = 0,
                  skipped: SkippedFiles | None = None, validation: bool = True) -> TrainingData:
    """The run's `training_source` and, with `validation`, its `validation_images`, from `cfg` (`config.data`):
    unusable data fails here, before any model is built."""
    source = training_source(cfg, scale, seed, skipped)
    return TrainingData(source, cfg, scale, batch_size, seed, validation_images(cfg, scale) if validation else [])
