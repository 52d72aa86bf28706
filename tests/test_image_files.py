"""Images go out as they came in: srgan_tf.images' ImageFile and `python -m srgan_tf.upscale` on real files.

Each kind of file is made with Pillow (16-bit colour PNGs with TensorFlow's encoder, since Pillow has no
16-bit colour mode), upscaled by the command line with a tiny generator, and its result compared with
what the plain uint8 RGB path (Upscaler on load_image's pixels) or the float path gives for the same
colour content.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageCms, ImageOps

from srgan_tf.images import (
    ImageError,
    ImageFile,
    ImageWarning,
    check_writable,
    load_image,
    read_image_file,
    write_image_file,
)
from srgan_tf.imresize import imresize, resize_to
from srgan_tf.loader import load_generator, load_upscaler
from srgan_tf.models import build_generator
from srgan_tf.upscale import main

REPO = Path(__file__).resolve().parents[1]
H, W = 11, 14  # LR size of the test images; --tile=8 makes several tiles
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 128 + 90 * np.sin(xx[..., None] / 3.0 + np.arange(3)) * np.cos(yy[..., None] / 4.0)
    return np.clip(img + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def _gradient_alpha(h: int = H, w: int = W) -> np.ndarray:
    return np.linspace(0, 255, h * w).reshape(h, w).round().astype(np.uint8)


def _rgb16(h: int = H, w: int = W) -> np.ndarray:
    """16-bit colour whose low bytes matter (not a multiple of 257)."""
    rng = np.random.default_rng(5)
    return (_rgb(h, w).astype(np.int64) * 257 + rng.integers(-120, 120, (h, w, 3))).clip(0, 65535).astype(np.uint16)


def _png16(path: Path, planes: np.ndarray) -> Path:
    path.write_bytes(tf.io.encode_png(planes).numpy())
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A 2-block generator with the bicubic skip and a trunk that contributes, as a .keras file."""
    root = tmp_path_factory.mktemp("model")
    generator = build_generator(2, 16, bicubic_skip=True)
    out = generator.get_layer("conv_out")
    out.kernel.assign(tf.random.normal(out.kernel.shape, stddev=0.02, seed=4))
    generator.save(root / "g.keras")
    spec = str(root / "g.keras")
    return {"spec": spec, "up": load_upscaler(spec)}


def _upscale(capsys, model, src: Path, *flags: str) -> Path:
    """Runs the command line on `src`; returns the written path (the last 'wrote' line)."""
    status = main(["upscale", str(src), f"--model={model['spec']}", "--tile=8", *flags])
    out, err = capsys.readouterr()
    assert status == 0, err
    return Path(out.strip().splitlines()[-1].removeprefix("wrote "))


def _close(a: np.ndarray, b: np.ndarray, tol: int = 1) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= tol


def _float16_reference(up, pixels16: np.ndarray) -> np.ndarray:
    """The whole-image float path: 16-bit in, 16-bit out, no 8-bit step."""
    x = np.repeat(pixels16, 3, -1) if pixels16.shape[2] == 1 else pixels16
    y = up.predict_float(x[None].astype(np.float32) / 65535)[0].astype(np.float64)
    y = y.mean(-1, keepdims=True) if pixels16.shape[2] == 1 else y
    return np.floor(y * 65535 + 0.5).astype(np.uint16)


# ---------------------------------------------------------------- reading and writing (no model)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_rgb(5, 7)).save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    np.testing.assert_array_equal(read_image_file(tmp_path / "o.png").pixels, expected)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("kind", ["L", "LA", "RGB", "RGBA", "L;16"])
def test_pillow_modes_round_trip_losslessly(tmp_path, kind, ext):
    rgb = _rgb()
    pixels = {"L": rgb[..., :1], "LA": rgb[..., :1], "RGB": rgb, "RGBA": rgb, "L;16": _rgb16()[..., :1]}[kind]
    alpha = _gradient_alpha() if kind.endswith("A") else None
    write_image_file(tmp_path / f"x{ext}", ImageFile(pixels, alpha))
    back = read_image_file(tmp_path / f"x{ext}")
    assert back.mode == kind
    np.testing.assert_array_equal(back.pixels, pixels)
    if alpha is not None:
        np.testing.assert_array_equal(back.alpha, alpha)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_and_gray_alpha_png_round_trip_with_icc(tmp_path, channels):
    base = _rgb16()
    alpha = base[..., :1] // 3
    planes = {2: np.dstack([base[..., :1], alpha]), 3: base, 4: np.dstack([base, alpha])}[channels]
    src = _png16(tmp_path / "in.png", planes)
    # Pillow alone keeps the high byte only; that is why 16-bit colour PNGs are decoded by TensorFlow.
    assert np.asarray(Image.open(src)).dtype == np.uint8
    image = read_image_file(src)
    assert image.bits == 16 and image.mode == {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    np.testing.assert_array_equal(np.dstack([image.pixels] + ([] if image.alpha is None else [image.alpha])),
                                  planes)
    icc = SRGB if channels > 2 else None  # (an RGB profile must not label gray pixels)
    write_image_file(tmp_path / "out.png", ImageFile(image.pixels, image.alpha, icc))
    back = read_image_file(tmp_path / "out.png")
    assert back.mode == image.mode and back.icc == icc
    np.testing.assert_array_equal(back.pixels, image.pixels)


def test_16_bit_colour_tiff_falls_back_to_8_bits_with_a_warning(tmp_path):
    with pytest.warns(ImageWarning, match="8 bits"):
        write_image_file(tmp_path / "x.tif", ImageFile(_rgb16()))
    back = read_image_file(tmp_path / "x.tif")
    assert back.mode == "RGB"
    np.testing.assert_array_equal(back.pixels, (_rgb16().astype(np.int64) + 128) // 257)


def test_16_bit_colour_tiff_is_read_with_8_bits_and_a_warning(tmp_path):
    tifffile = pytest.importorskip("tifffile")  # only to make the file; Pillow cannot write it
    tifffile.imwrite(tmp_path / "c16.tif", _rgb16(), photometric="rgb")
    with pytest.warns(ImageWarning, match="read with 8 bits"):
        image = read_image_file(tmp_path / "c16.tif")
    assert image.mode == "RGB"
    _close(image.pixels, _rgb16() >> 8)


def test_palette_images_become_rgb_or_rgba(tmp_path):
    p = Image.fromarray(_rgb()).quantize(16)
    p.save(tmp_path / "p.png")
    p.save(tmp_path / "pt.png", transparency=3)
    assert read_image_file(tmp_path / "p.png").mode == "RGB"
    image = read_image_file(tmp_path / "pt.png")
    assert image.mode == "RGBA"
    np.testing.assert_array_equal(image.alpha == 0, np.asarray(p) == 3)


def test_jpeg_takes_opaque_alpha_and_refuses_transparency(tmp_path):
    opaque = ImageFile(_rgb(), np.full((H, W), 255, np.uint8))
    write_image_file(tmp_path / "o.jpg", opaque)
    assert Image.open(tmp_path / "o.jpg").mode == "RGB"
    with pytest.raises(ImageError, match="JPEG cannot hold transparency"):
        check_writable(tmp_path / "t.jpg", ImageFile(_rgb(), _gradient_alpha()))
    with pytest.raises(ImageError, match="unknown image extension"):
        check_writable(tmp_path / "t.gif", opaque)


# ---------------------------------------------------------------- the command line, kind by kind


def test_rgba_keeps_its_alpha_upscaled_with_matlab_bicubic(model, tmp_path, capsys):
    rgb, alpha = _rgb(), _gradient_alpha()
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    image = read_image_file(_upscale(capsys, model, tmp_path / "a.png"))
    assert image.mode == "RGBA" and image.pixels.shape == (4 * H, 4 * W, 3)
    _close(image.pixels, model["up"](rgb))
    np.testing.assert_array_equal(image.alpha, imresize(alpha[..., None], 4).numpy()[..., 0])


@pytest.mark.parametrize("bits", [8, 16])
def test_fully_opaque_alpha_stays_exactly_opaque(model, tmp_path, capsys, bits):
    if bits == 8:
        Image.fromarray(np.dstack([_rgb(), np.full((H, W), 255, np.uint8)])).save(tmp_path / "o.png")
    else:
        _png16(tmp_path / "o.png", np.dstack([_rgb16(), np.full((H, W), 65535, np.uint16)]))
    image = read_image_file(_upscale(capsys, model, tmp_path / "o.png", "--outscale=2.5"))
    assert image.mode == ("RGBA" if bits == 8 else "RGBA;16")
    assert (image.alpha == (255 if bits == 8 else 65535)).all()


def test_gray_alpha_stays_gray_alpha(model, tmp_path, capsys):
    gray, alpha = _rgb()[..., 1], _gradient_alpha()
    Image.fromarray(np.dstack([gray, alpha])).save(tmp_path / "la.png")
    out = _upscale(capsys, model, tmp_path / "la.png")
    assert Image.open(out).mode == "LA"
    image = read_image_file(out)
    # The model runs on the gray replicated to RGB; the three result channels are averaged.
    rgb_path = model["up"](np.repeat(gray[..., None], 3, -1)).astype(np.float64)
    _close(image.pixels, np.floor(rgb_path.mean(-1, keepdims=True) + 0.5))
    np.testing.assert_array_equal(image.alpha, imresize(alpha[..., None], 4).numpy()[..., 0])


def test_16_bit_gray_gives_16_bit_gray_from_the_float_path(model, tmp_path, capsys):
    gray = _rgb16()[..., :1]
    Image.fromarray(gray[..., 0]).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    out = _upscale(capsys, model, tmp_path / "g16.png")
    assert Image.open(out).mode == "I;16"
    image = read_image_file(out)
    assert image.mode == "L;16"
    _close(image.pixels, _float16_reference(model["up"], gray))
    assert len(np.unique(image.pixels % 257)) > 1  # not an 8-bit result scaled up
    # ... and the same content as the 8-bit RGB path, within the 8-bit path's rounding.
    eight = model["up"](load_image(tmp_path / "g16.png")).mean(-1, keepdims=True)
    _close(np.round(image.pixels / 257.0), np.round(eight), tol=2)


def test_16_bit_rgb_png_gives_16_bit_rgb(model, tmp_path, capsys):
    rgb16 = _rgb16()
    out = _upscale(capsys, model, _png16(tmp_path / "c16.png", rgb16), "--output=" + str(tmp_path / "c16_out.png"))
    image = read_image_file(out)
    assert image.mode == "RGB;16" and image.pixels.shape == (4 * H, 4 * W, 3)
    _close(image.pixels, _float16_reference(model["up"], rgb16))


def test_palette_with_transparency_comes_out_rgba(model, tmp_path, capsys):
    p = Image.fromarray(_rgb()).quantize(16)
    p.save(tmp_path / "p.png", transparency=0)
    image = read_image_file(_upscale(capsys, model, tmp_path / "p.png"))
    assert image.mode == "RGBA"
    _close(image.pixels, model["up"](np.asarray(p.convert("RGB"))))
    alpha = np.where(np.asarray(p) == 0, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(image.alpha, imresize(alpha[..., None], 4).numpy()[..., 0])


def test_cmyk_jpeg_comes_out_rgb_without_its_cmyk_profile(model, tmp_path, capsys):
    fake_cmyk_profile = bytes(16) + b"CMYK" + bytes(108)
    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "k.jpg", quality=95, icc_profile=fake_cmyk_profile)
    assert read_image_file(tmp_path / "k.jpg").icc == fake_cmyk_profile
    out = _upscale(capsys, model, tmp_path / "k.jpg")
    assert Image.open(out).mode == "RGB" and "icc_profile" not in Image.open(out).info
    _close(read_image_file(out).pixels, model["up"](load_image(tmp_path / "k.jpg")))


def test_exif_rotated_jpeg_comes_out_upright(model, tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(_rgb()).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = read_image_file(_upscale(capsys, model, tmp_path / "r.jpg"))
    assert image.pixels.shape == (4 * W, 4 * H, 3)
    _close(image.pixels, model["up"](load_image(tmp_path / "r.jpg")))


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_is_carried_to_every_format(model, tmp_path, capsys, ext):
    Image.fromarray(_rgb()).save(tmp_path / "icc.png", icc_profile=SRGB)
    out = _upscale(capsys, model, tmp_path / "icc.png", f"--output={tmp_path / ('out' + ext)}")
    assert Image.open(out).info.get("icc_profile") == SRGB
    assert out.suffix == ext and Image.open(out).format == {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP",
                                                             ".tif": "TIFF"}[ext]


# ---------------------------------------------------------------- flags and names


@pytest.mark.parametrize("outscale", [2.5, 6, 4])
def test_outscale_resizes_the_model_result_with_matlab_bicubic(model, tmp_path, capsys, outscale):
    rgb, alpha = _rgb(), _gradient_alpha()
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "in.png")
    out = _upscale(capsys, model, tmp_path / "in.png", f"--outscale={outscale}")
    assert out.name == f"in_x{outscale:g}.png"
    image = read_image_file(out)
    size = (int(np.floor(outscale * H + 0.5)), int(np.floor(outscale * W + 0.5)))  # 2.5 * 11 = 27.5 -> 28
    assert image.pixels.shape == (*size, 3) and image.alpha.shape == size
    sr = model["up"](rgb)
    _close(image.pixels, resize_to(sr, *size))
    if outscale == 4:
        _close(image.pixels, sr)
    np.testing.assert_array_equal(image.alpha, resize_to(imresize(alpha[..., None], 4).numpy(), *size)[..., 0])


def test_resize_to_equals_imresize_for_integer_factors():
    rgb = _rgb(9, 6)
    np.testing.assert_array_equal(resize_to(rgb, 27, 18), imresize(rgb, 3).numpy())
    np.testing.assert_array_equal(resize_to(rgb, 3, 2), imresize(rgb, 1 / 3).numpy())
    x = rgb.astype(np.float32) / 255
    np.testing.assert_allclose(resize_to(x, 18, 12), imresize(x, 2).numpy(), atol=1e-6)


@pytest.mark.parametrize("ext", [".jpg", ".webp"])
def test_quality_changes_the_file(model, tmp_path, capsys, ext):
    Image.fromarray(_rgb(24, 24)).save(tmp_path / "in.png")
    sizes = [_upscale(capsys, model, tmp_path / "in.png", f"--output={tmp_path / f'q{q}{ext}'}",
                      f"--quality={q}").stat().st_size for q in (30, 95)]
    assert sizes[0] < sizes[1]


def test_positional_input_and_default_names(model, tmp_path, capsys):
    Image.fromarray(_rgb()).save(tmp_path / "photo.jpg")
    assert _upscale(capsys, model, tmp_path / "photo.jpg") == tmp_path / "photo_x4.png"
    assert Image.open(tmp_path / "photo_x4.png").size == (4 * W, 4 * H)
    (tmp_path / "set").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "set" / "a.tif")
    status = main(["upscale", f"--input={tmp_path / 'set'}", f"--model={model['spec']}"])
    assert status == 0, capsys.readouterr().err
    assert Image.open(tmp_path / "set_x4" / "a.png").size == (4 * W, 4 * H)


def test_output_ending_in_a_slash_is_a_folder(model, tmp_path, capsys):
    Image.fromarray(_rgb()).save(tmp_path / "photo.jpg")
    out = _upscale(capsys, model, tmp_path / "photo.jpg", f"--output={tmp_path / 'new' / 'deeper'}/")
    assert out == tmp_path / "new" / "deeper" / "photo.png" and out.is_file()


@pytest.mark.parametrize("flags", [["--outscale=0"], ["--outscale=-2"], ["--quality=0"], ["b.png"],
                                   ["--input=a.png"], []])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags):
    argv = ["upscale", "--model=bicubic", *flags]
    if flags != []:
        argv.insert(1, "a.png")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_precision_loss_is_one_warning_line(model, tmp_path, capsys):
    src = _png16(tmp_path / "c16.png", _rgb16())
    status = main(["upscale", str(src), f"--model={model['spec']}", f"--output={tmp_path / 'c16.tif'}"])
    out, err = capsys.readouterr()
    assert status == 0 and out.strip().splitlines()[-1] == f"wrote {tmp_path / 'c16.tif'}"
    assert err.startswith("warning:") and err.count("\n") == 1 and "8 bits" in err, err
    assert read_image_file(tmp_path / "c16.tif").mode == "RGB"


def test_transparency_to_jpeg_is_one_error_line(model, tmp_path, capsys):
    Image.fromarray(np.dstack([_rgb(), _gradient_alpha()])).save(tmp_path / "a.png")
    status = main(["upscale", str(tmp_path / "a.png"), f"--model={model['spec']}", f"--output={tmp_path / 'a.jpg'}"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and err.startswith("error:") and "JPEG cannot hold transparency" in err and "\n" not in err
    assert not (tmp_path / "a.jpg").exists()


# ---------------------------------------------------------------- what reaches the terminal


@pytest.mark.slow
def test_terminal_shows_only_the_written_file_or_one_error(model, tmp_path):
    """TensorFlow's import-time C++ lines and Python warnings never reach a real stderr."""
    Image.fromarray(np.dstack([_rgb(40, 40), np.full((40, 40), 255, np.uint8)])).save(tmp_path / "in.png")
    Image.fromarray(np.dstack([_rgb(), _gradient_alpha()])).save(tmp_path / "t.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}

    def command(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "srgan_tf.upscale", *args, f"--model={model['spec']}"],
                              capture_output=True, text=True, timeout=300, cwd=REPO, env=env)

    done = command(str(tmp_path / "in.png"), "--tile=16")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"wrote {tmp_path / 'in_x4.png'}"
    failed = command(str(tmp_path / "t.png"), f"--output={tmp_path / 't.jpg'}")
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error:"), failed.stderr


@pytest.mark.slow
def test_terminal_stays_quiet_with_a_tflite_model(model, tmp_path):
    """LiteRT logs its accelerators' teardown at interpreter exit; none of it reaches a real stderr."""
    from srgan_tf.export.tflite import export_tflite
    from srgan_tf.tiling import receptive_radius

    g = load_generator(model["spec"])
    meta = {"scale": 4, "receptive_radius": receptive_radius(g)[0]}
    path = export_tflite(g, tmp_path, "g", ("fp32",), 4, meta, log=lambda _: None)["fp32"]["path"]
    Image.fromarray(_rgb(24, 24)).save(tmp_path / "in.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run([sys.executable, "-m", "srgan_tf.upscale", str(tmp_path / "in.png"), f"--model={path}"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "in_x4.png").is_file()


def test_memory_budget_plans_two_level_tiles_that_equal_the_whole_image(model, tmp_path):
    """Without --tile a generator of this package is tiled within --max_memory: a budget that forces many
    trunk windows gives the whole-image result (within one level), and a too-large output is refused."""
    from srgan_tf.upscale import run

    rng = np.random.default_rng(3)
    rgb = np.clip(rng.normal(128, 60, (90, 70, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    up = model["up"]
    assert up.split is not None
    whole = up(rgb)
    failures = run(model["spec"], tmp_path / "in.png", tmp_path / "out.png", max_memory=2_000_000 + 4 * 4 * 90 * 70 * 3,
                   log=lambda line: None)
    assert failures == []
    got = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.abs(got.astype(int) - whole).max() <= 1
    failures = run(model["spec"], tmp_path / "in.png", tmp_path / "big.png", max_memory=100_000, log=lambda line: None)
    assert len(failures) == 1 and "more than half of --max_memory" in failures[0][1]
    assert not (tmp_path / "big.png").exists()


@pytest.mark.slow
def test_the_console_script_upscales_with_the_shipped_srgan_by_default(tmp_path):
    """`srgan-upscale photo.png` (the installed console script, run from another folder) writes
    photo_x4.png beside the photo with the shipped perceptual generator, and its terminal stays quiet."""
    script = Path(sys.executable).with_name("srgan-upscale")
    if not script.is_file():
        pytest.skip(f"no console script beside {sys.executable} (the package is not installed in this environment)")
    rng = np.random.default_rng(5)
    photo = np.clip(rng.normal(120, 40, (24, 20, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    done = subprocess.run([str(script), "photo.png"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"wrote {Path('photo_x4.png')}"
    out = np.asarray(Image.open(tmp_path / "photo_x4.png"))
    want = load_upscaler("srgan")(photo)
    assert out.shape == (96, 80, 3) and np.abs(out.astype(int) - want).max() <= 1
