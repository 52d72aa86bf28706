"""Input pipelines: shapes, ranges, LR/HR alignment, determinism, sources, and every kind of bad file."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from srgan_tf import data
from srgan_tf.config import base_config
from srgan_tf.images import ImageError, load_image
from srgan_tf.imresize import imresize


def _cfg(**kw):
    c = base_config().data
    c.crop, c.shuffle_buffer = 32, 8
    for k, v in kw.items():
        c[k] = v
    return c


def _photo(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / 5 + seed), np.cos(y / 7), np.sin((x + y) / 9)], -1) * 100 + 128
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def _png_header_only(path: Path, w: int, h: int):
    """A PNG whose header claims w x h pixels (a decompression bomb), with one tiny IDAT chunk."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


def test_batches_have_the_papers_ranges_and_lr_is_the_degradation_of_its_own_hr():
    ds = data.train_dataset(_cfg(source="sample", crop=96), scale=4, batch_size=4, seed=1)
    lr, hr = (t.numpy() for t in next(iter(ds)))
    assert lr.shape == (4, 24, 24, 3) and hr.shape == (4, 96, 96, 3)
    assert lr.dtype == np.float32 and hr.dtype == np.float32
    assert lr.min() >= 0 and lr.max() <= 1 and hr.min() >= -1 and hr.max() <= 1
    hr_u8 = np.round((hr + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(np.round(lr * 255).astype(np.uint8), imresize(hr_u8, 1 / 4).numpy())


def test_same_seed_same_batches_other_seed_other_batches():
    def first(seed):
        return next(iter(data.train_dataset(_cfg(source="sample"), 4, 2, seed)))[1].numpy()
    np.testing.assert_array_equal(first(3), first(3))
    assert not np.array_equal(first(3), first(4))


def test_a_dataset_started_at_batch_k_gives_the_batches_from_k_on():
    """What resuming relies on: batch k depends on (seed, k) alone, not on having drawn batches 0..k-1."""
    cfg = _cfg(source="sample")
    from_zero = [hr.numpy() for _, hr in data.train_dataset(cfg, 4, 2, seed=5).take(5)]
    from_three = [hr.numpy() for _, hr in data.train_dataset(cfg, 4, 2, seed=5, start=3).take(2)]
    np.testing.assert_array_equal(from_three[0], from_zero[3])
    np.testing.assert_array_equal(from_three[1], from_zero[4])


_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "I;16": 1, "CMYK": 4}


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), mode=st.sampled_from(sorted(_MODES)),
       fmt=st.sampled_from(["PNG", "JPEG", "BMP", "TIFF"]), seed=st.integers(0, 2**31 - 1))
def test_decode_then_crop_then_degrade_holds_for_any_size_mode_and_format(tmp_path_factory, h, w, mode, fmt, seed):
    """Property: a file decodes to RGB uint8 of its own size or is refused with ImageError; a decoded image at
    least as large as the crop gives an HR crop in [-1, 1] whose LR is exactly its own degradation."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        arr = rng.integers(0, 256, (h, w, _MODES[mode]), dtype=np.uint8)
        im = Image.fromarray(arr[..., 0] if _MODES[mode] == 1 else arr)
        if im.mode != mode:  # P from L, CMYK from RGB
            im = im.convert("RGB").convert(mode) if mode == "CMYK" else im.convert(mode)
    path = tmp_path_factory.mktemp("prop") / f"x.{fmt.lower()}"
    try:
        im.save(path, fmt)
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format; nothing to decode
    try:
        decoded = load_image(path)
    except ImageError as e:
        assert str(path) in str(e)
        return
    assert decoded.dtype == np.uint8 and decoded.shape == (h, w, 3)
    crop = 16
    if min(h, w) < crop:
        return
    lr, hr = data._degraded_crop(_cfg(crop=crop), 4)(tf.constant([seed % 1000, 7], tf.int64), tf.constant(decoded))
    lr, hr = lr.numpy(), hr.numpy()
    assert lr.shape == (4, 4, 3) and hr.shape == (crop, crop, 3)
    assert hr.min() >= -1 and hr.max() <= 1 and lr.min() >= 0 and lr.max() <= 1
    hr_u8 = np.round((hr + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(np.round(lr * 255).astype(np.uint8), imresize(hr_u8, 1 / 4).numpy())


@pytest.mark.parametrize("degradation", ["pil", "tf"])
def test_other_degradations_are_options(degradation):
    lr, hr = next(iter(data.train_dataset(_cfg(source="sample", degradation=degradation), 4, 2, 0)))
    assert lr.shape == (2, 8, 8, 3) and hr.shape == (2, 32, 32, 3)


def _bad_folder(root: Path) -> dict[str, str]:
    """Every kind of file a user's folder may hold. Returns {file name: 'ok' | 'skip'}."""
    sub = root / "nested" / "deeper"
    sub.mkdir(parents=True)
    good = {
        root / "good.png": lambda p: Image.fromarray(_photo(seed=1)).save(p),
        sub / "good.jpg": lambda p: Image.fromarray(_photo(seed=2)).save(p, quality=95),
        sub / "good.bmp": lambda p: Image.fromarray(_photo(seed=3)).save(p),
        root / "good.webp": lambda p: Image.fromarray(_photo(seed=4)).save(p, lossless=True),
        root / "gray.png": lambda p: Image.fromarray(_photo()[..., 0]).save(p),
        root / "palette.png": lambda p: Image.fromarray(_photo()).convert("P").save(p),
        root / "rgba.png": lambda p: Image.fromarray(np.dstack([_photo(), np.full((64, 80), 128, np.uint8)])).save(p),
        root / "sixteen.png": lambda p: Image.fromarray(_photo()[..., 0].astype(np.uint16) * 257).save(p),
        root / "cmyk.jpg": lambda p: Image.fromarray(_photo()).convert("CMYK").save(p),
    }
    for path, make in good.items():
        make(path)
    png, jpg = (root / "good.png").read_bytes(), (sub / "good.jpg").read_bytes()
    bad = {
        root / "truncated.png": lambda p: p.write_bytes(png[: len(png) // 2]),
        root / "truncated.jpg": lambda p: p.write_bytes(jpg[: len(jpg) // 3]),
        root / "empty.png": lambda p: p.write_bytes(b""),
        root / "notes.png": lambda p: p.write_text("this is not an image\n"),
        root / "one_pixel.png": lambda p: Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(p),
        root / "bomb.png": lambda p: _png_header_only(p, 20000, 20000),
        root / "loop.png": lambda p: os.symlink(p, p),
    }
    for path, make in bad.items():
        make(path)
    os.symlink(root, sub / "back_to_root")  # a folder loop: must not be followed forever
    (root / "readme.txt").write_text("ignored: not an image extension")
    return {p.name: "ok" for p in good} | {p.name: "skip" for p in bad}


def test_a_folder_of_every_kind_of_file_trains_on_the_good_ones_and_names_each_bad_one_once(tmp_path, caplog):
    kinds = _bad_folder(tmp_path)
    skipped = data.SkippedFiles()
    ds = data.train_dataset(_cfg(source="folder", path=str(tmp_path), shuffle_buffer=2), 4, 4, 0, skipped)
    it = iter(ds)
    for _ in range(12):  # several passes over the folder
        lr, hr = next(it)
        assert lr.shape == (4, 8, 8, 3) and hr.shape == (4, 32, 32, 3)
    names = {Path(p).name for p in skipped.reasons}
    assert names == {n for n, k in kinds.items() if k == "skip"}
    for name in names:
        assert sum(name in rec.getMessage() for rec in caplog.records) == 1, name
    assert "pixel" in next(r for p, r in skipped.reasons.items() if p.endswith("bomb.png"))


def test_decoding_makes_every_kind_of_image_rgb_uint8(tmp_path):
    kinds = _bad_folder(tmp_path)
    for name, kind in kinds.items():
        if kind == "ok":
            path = next(tmp_path.rglob(name))
            im = load_image(path)
            assert im.dtype == np.uint8 and im.shape == (64, 80, 3), name
    sixteen = load_image(tmp_path / "sixteen.png")
    np.testing.assert_array_equal(sixteen[..., 0], _photo()[..., 0])  # 16-bit scaled back to 8 bits exactly


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray(_photo(40, 60))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    im.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (60, 40, 3)


def test_a_folder_without_usable_images_is_one_error_naming_it(tmp_path):
    (tmp_path / "notes.png").write_text("no")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(data.DataError, match=str(tmp_path)):
        data.train_dataset(_cfg(source="folder", path=str(tmp_path)), 4, 2)
    with pytest.raises(data.DataError, match="does not exist"):
        data.train_dataset(_cfg(source="folder", path=str(tmp_path / "missing")), 4, 2)


def test_paired_folders_are_matched_by_name_and_cropped_in_alignment(tmp_path):
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    for i in range(3):
        hr = _photo(64, 96, seed=i)
        Image.fromarray(hr).save(tmp_path / "HR" / f"{i}.png")
        # An LR that is a plain 4x4 box average, so alignment can be checked exactly.
        Image.fromarray(hr.reshape(16, 4, 24, 4, 3).mean(axis=(1, 3)).round().astype(np.uint8)).save(
            tmp_path / "LR" / f"{i}.png")
    Image.fromarray(_photo()).save(tmp_path / "HR" / "unpaired.png")
    lr, hr = next(iter(data.train_dataset(_cfg(source="paired", path=str(tmp_path)), 4, 6, 0)))
    lr_u8 = np.round(lr.numpy() * 255)
    hr_u8 = np.round((hr.numpy() + 1) * 127.5)
    np.testing.assert_array_equal(lr_u8, hr_u8.reshape(6, 8, 4, 8, 4, 3).mean(axis=(2, 4)).round())


def test_missing_tfds_dataset_says_how_to_get_it(tmp_path):
    cfg = _cfg(source="tfds", tfds_name="div2k/bicubic_x4", tfds_data_dir=str(tmp_path), tfds_download=False)
    with pytest.raises(data.DataError) as err:
        data.train_dataset(cfg, 4, 2)
    message = str(err.value)
    assert "div2k/bicubic_x4" in message and str(tmp_path) in message and "tfds build" in message
    assert "\n" not in message


def test_validation_images_from_a_benchmark_folder(shared_data):
    images = data.validation_images(_cfg(val_dir=str(shared_data / "Set5")), 4)
    assert [n for n, _, _ in images] == [f"img_00{i}" for i in range(1, 6)]
    for _, lr, hr in images:
        assert lr.dtype == np.uint8 and hr.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)


def test_a_prepared_tfds_dataset_trains(tmp_path):
    """The TFDS source end to end, with a local builder standing in for div2k (no network needed)."""
    import tensorflow_datasets as tfds

    photos = [_photo(48 + 8 * i, 64, seed=i) for i in range(3)] + [_photo(48, 64)[..., :1]]  # one grayscale

    class SrganTestPhotos(tfds.core.GeneratorBasedBuilder):
        __module__ = "srgan_tf"  # TFDS looks for builder resources in the defining package; tests/ is none
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(
                {"hr": tfds.features.Image(shape=(None, None, None))}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, p in enumerate(photos):
                yield i, {"hr": p}

    SrganTestPhotos(data_dir=str(tmp_path)).download_and_prepare()  # as `tfds build` would, elsewhere
    cfg = _cfg(source="tfds", tfds_name="srgan_test_photos", tfds_data_dir=str(tmp_path), tfds_download=False)
    lr, hr = next(iter(data.train_dataset(cfg, 4, 8, 0)))
    assert lr.shape == (8, 8, 8, 3) and hr.shape == (8, 32, 32, 3)
    assert float(hr.numpy().min()) >= -1 and float(hr.numpy().max()) <= 1


def test_the_tfds_prepare_path_gets_past_its_lazy_imports(tmp_path):
    """download_and_prepare first reads the builder's code_path, which imports importlib_resources lazily
    (tensorflow-datasets 4.9.10 does not declare it; without it: ModuleNotFoundError before any download).
    The download itself is not attempted: without internet TFDS retries it for minutes before failing."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("div2k/bicubic_x4", data_dir=str(tmp_path))
    assert str(builder.code_path).endswith(".py")


def test_training_data_holds_the_source_batches_and_validation_images_of_one_build():
    cfg = _cfg(source="sample")
    training = data.training_data(cfg, 4, 2, seed=3)
    ((_, want_lr, want_hr),) = data.validation_images(cfg, 4)
    ((_, lr, hr),) = training.validation
    np.testing.assert_array_equal(lr, want_lr)
    np.testing.assert_array_equal(hr, want_hr)
    first = [h.numpy() for _, h in data.train_dataset(cfg, 4, 2, seed=3, start=1).take(2)]
    again = [h.numpy() for _, h in training.batches(1).take(2)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert data.training_data(cfg, 4, 2, validation=False).validation == []
