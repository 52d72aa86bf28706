import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from srgan_tf.imresize import METHODS, imresize, resize


def _rng_image(h, w, c=3, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(h, w, c))
    return img.astype(np.uint8) if dtype == np.uint8 else (img / 255.0).astype(dtype)


def _read_native(path):
    """The file's own pixels as [H, W, C], C = 1 for a grayscale file (no RGB conversion)."""
    a = np.asarray(Image.open(path))
    return a[..., None] if a.ndim == 2 else a


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_matches_matlab_made_lr_files(shared_data, set_name):
    same = total = border_same = border_total = 0
    abs_diff = 0.0
    hr_dir = shared_data / set_name / "HR"
    paths = sorted(hr_dir.glob("*.png"))
    assert paths
    for path in paths:
        hr = _read_native(path)
        lr = _read_native(shared_data / set_name / "LR_bicubic_x4" / path.name)
        out = imresize(hr, 1 / 4).numpy()
        assert out.dtype == np.uint8 and out.shape == lr.shape, path.name
        diff = np.abs(out.astype(np.int32) - lr.astype(np.int32))
        same += int((diff == 0).sum())
        abs_diff += float(diff.sum())
        total += diff.size
        # The outer two rows and columns depend on how taps beyond the edge are handled.
        border = np.ones(diff.shape[:2], bool)
        border[2:-2, 2:-2] = False
        border_same += int((diff[border] == 0).sum())
        border_total += diff[border].size
    assert border_same / border_total >= 0.98, f"{set_name}: border pixels differ (edge handling)"
    assert same / total >= 0.98, f"{set_name}: only {same / total:.4%} identical"
    assert abs_diff / total <= 0.03, f"{set_name}: mean abs diff {abs_diff / total:.4f}"


@pytest.mark.parametrize(
    ("h", "w", "scale", "want"),
    [(37, 53, 1 / 4, (10, 14)), (37, 53, 4, (148, 212)), (5, 7, 2, (10, 14)), (30, 9, 1 / 3, (10, 3)),
     (16, 16, 1, (16, 16))],
)
def test_output_size_is_ceil_of_scaled_size(h, w, scale, want):
    out = imresize(_rng_image(h, w), scale)
    assert tuple(out.shape) == (*want, 3)


def test_batch_rank4_matches_per_image_and_keeps_dtype():
    batch = np.stack([_rng_image(13, 11, seed=s) for s in range(3)])
    out = imresize(batch, 4)
    assert out.dtype == tf.uint8 and tuple(out.shape) == (3, 52, 44, 3)
    for i in range(3):
        np.testing.assert_array_equal(out[i].numpy(), imresize(batch[i], 4).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_dtype_and_rank_preserved(dtype):
    img = _rng_image(12, 20, dtype=dtype)
    out = imresize(img, 0.5)
    assert out.dtype.as_numpy_dtype == dtype and out.shape.rank == 3


def test_single_channel_images():
    out = imresize(_rng_image(20, 24, c=1), 1 / 4)
    assert tuple(out.shape) == (5, 6, 1)


def test_integer_upscale_interpolates_through_input_pixels():
    # With scale 3 every third output pixel sits exactly on an input pixel, where the cubic kernel is 1.
    img = _rng_image(9, 8, dtype=np.float64)
    out = imresize(img, 3).numpy()
    np.testing.assert_allclose(out[1::3, 1::3], img, atol=1e-12)


def test_float_mode_is_unrounded_and_unclipped():
    step = np.zeros((16, 16, 1), np.float32)
    step[:, 8:] = 1.0
    out = imresize(step, 4).numpy()
    assert out.dtype == np.float32
    assert out.min() < 0.0 and out.max() > 1.0  # bicubic overshoot at the edge survives in float mode
    levels = imresize(_rng_image(16, 16).astype(np.float32) / 255.0, 1 / 4).numpy() * 255.0
    assert np.abs(levels - np.round(levels)).max() > 0.01  # not quantised to uint8 levels


def test_constant_image_stays_constant_even_at_borders():
    for scale in (1 / 4, 1 / 3, 2, 4):
        out = imresize(np.full((13, 17, 3), 0.3, np.float32), scale).numpy()
        np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_symmetric_borders_read_a_mirrored_image():
    """Mirrored taps equal edge-clamped taps on an image padded by mirroring (np.pad's 'symmetric' repeats
    the edge pixel, as MATLAB's mirror does); 8 padded pixels are 4 output pixels at scale 1/2."""
    x = _rng_image(24, 20).astype(np.float64) / 255.0
    padded = np.pad(x, ((8, 8), (8, 8), (0, 0)), mode="symmetric")
    want = imresize(padded, 0.5).numpy()[4:-4, 4:-4]
    got = imresize(x, 0.5, borders="symmetric").numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.abs(got - imresize(x, 0.5).numpy()).max() > 1e-3  # the borders do differ
    with pytest.raises(ValueError, match="borders"):
        imresize(x, 0.5, borders="wrap")


def test_uint8_mode_is_close_to_float_mode():
    img = _rng_image(40, 36)
    u8 = imresize(img, 1 / 4).numpy().astype(np.float64)
    f = imresize(img.astype(np.float32) / 255.0, 1 / 4).numpy() * 255.0
    assert np.abs(u8 - f).max() <= 1.0  # only per-pass rounding separates them


def test_runs_in_tf_function_and_dataset_map_with_unknown_shapes():
    images = [_rng_image(21, 18, seed=1), _rng_image(12, 33, seed=2)]

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def down(x):
        return imresize(x, 1 / 3)

    ds = tf.data.Dataset.from_generator(lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3],
                                                                                             tf.uint8))
    mapped = list(ds.map(lambda x: imresize(x, 1 / 3)).as_numpy_iterator())
    for img, got in zip(images, mapped, strict=True):
        eager = imresize(img, 1 / 3).numpy()
        np.testing.assert_array_equal(got, eager)
        np.testing.assert_array_equal(down(img).numpy(), eager)


@pytest.mark.parametrize("method", ["pil", "tf"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_other_methods_same_size_dtype_and_close_values(method, dtype):
    # Smooth content and sizes divisible by 4 (Pillow and TF derive the scale from the sizes, MATLAB uses
    # the given one), so the three bicubic variants should nearly agree.
    yy, xx = np.mgrid[0:48, 0:40]
    img = (127.5 + 100 * np.sin(xx / 6.0) * np.cos(yy / 7.0))[..., None].repeat(3, axis=-1)
    img = img.astype(np.uint8) if dtype == np.uint8 else (img / 255.0).astype(dtype)
    for scale in (1 / 4, 4):
        ref = resize(img, scale, "matlab").numpy()
        out = resize(img, scale, method)
        assert out.dtype.as_numpy_dtype == dtype and out.shape == ref.shape
        unit = 1.0 if dtype == np.uint8 else 1 / 255
        diff = np.abs(out.numpy().astype(np.float64) - ref)[4:-4, 4:-4]  # borders differ by design
        assert diff.mean() < 2.0 * unit, (method, scale, diff.mean())


@pytest.mark.parametrize("method", METHODS)
def test_all_methods_give_the_matlab_output_size(method):
    for scale in (1 / 4, 1 / 3, 4):
        out = resize(_rng_image(37, 53), scale, method)
        assert tuple(out.shape) == tuple(imresize(_rng_image(37, 53), scale).shape)


def test_pil_method_in_dataset_map_has_static_shape():
    ds = tf.data.Dataset.from_tensors(_rng_image(24, 24)).map(lambda x: resize(x, 1 / 4, "pil"))
    assert ds.element_spec.shape.as_list() == [6, 6, 3]
    assert next(iter(ds)).shape == (6, 6, 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="matlab, pil, tf"):
        resize(_rng_image(8, 8), 0.5, "lanczos")
    assert METHODS == ("matlab", "pil", "tf")
    with pytest.raises(ValueError, match="scale"):
        imresize(_rng_image(8, 8), 0)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((8, 8), np.uint8), 2)
    with pytest.raises(TypeError, match="int32"):
        imresize(np.zeros((8, 8, 3), np.int32), 2)
