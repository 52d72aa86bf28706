"""Builds a MOS study folder from benchmark HR images and the methods to compare.

For each HR image (cropped to a multiple of the scale) the LR input is MATLAB's bicubic downscale
(`imresize(HR, 1/scale)`), and each method turns it into one test item: `nearest` (pixel replication),
`bicubic` (MATLAB bicubic), `hr` (the HR image itself) or any generator `load_upscaler` accepts. Some test
items are copied under a second id as repeats, for the test-retest check. The calibration examples are the
nearest-neighbour (score 1) and HR (score 5) versions of a few images, as in Ledig et al. (2017).

The study is built in a hidden folder beside the target and renamed into place at the end, so a failed or
interrupted `prepare` leaves no half-made study.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srgan_tf.images import atomic_write, crop_to_scale, find_images, load_image, nearest_upscale, save_image
from srgan_tf.mos.store import Item
from srgan_tf.mos.study import DB_FILE, FORMAT, IMAGES_DIR, STUDY_FILE, StudyError, create_store, new_item_id

BUILTIN_METHODS = ("nearest", "bicubic", "hr")
_METHOD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
DEFAULT_TITLE = "Image quality study"


@dataclass(frozen=True)
class Method:
    """A method to compare: `name` (shown in reports, never to raters) and `spec` (a built-in name or a
    model spec for `load_upscaler`)."""

    name: str
    spec: str


def parse_method(text: str) -> Method:
    """`NAME=SPEC`, or a built-in name alone (`bicubic` means `bicubic=bicubic`). Raises StudyError."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep:
        if name not in BUILTIN_METHODS:
            raise StudyError(f"--method {text!r}: write NAME=MODEL (a bare name must be one of "
                             f"{', '.join(BUILTIN_METHODS)})")
        spec = name
    if not _METHOD_NAME.match(name):
        raise StudyError(f"--method {text!r}: the name must start with a letter and have at most 32 letters, "
                         "digits, '_', '.' or '-'")
    if not spec:
        raise StudyError(f"--method {text!r}: no model after '='")
    return Method(name, spec)


def _upscalers(methods: Sequence[Method], scale: int) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Method name -> f(lr, hr) giving that method's image. Loads every model first, so a bad spec fails
    before any work is done."""
    from srgan_tf.loader import load_upscaler

    made: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    for m in methods:
        if m.spec == "nearest":
            made[m.name] = lambda lr, hr: nearest_upscale(lr, scale)
        elif m.spec == "hr":
            made[m.name] = lambda lr, hr: hr
        else:
            upscaler = load_upscaler(m.spec, scale)
            made[m.name] = lambda lr, hr, up=upscaler: up(lr)
    return made


def _hr_and_lr(path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    from srgan_tf.imresize import imresize

    hr = crop_to_scale(load_image(path), scale)
    if min(hr.shape[:2]) < scale:
        raise StudyError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small for {scale}x")
    return hr, imresize(hr, 1.0 / scale).numpy()


def _check_target(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StudyError(f"{out_dir}: already exists and is not an empty folder (a study is never overwritten)")
    parent = out_dir.parent
    while not parent.exists() and parent != parent.parent:  # missing parents are made, but not through a file
        parent = parent.parent
    if not parent.is_dir():
        raise StudyError(f"{parent}: not a folder, so the study folder {out_dir} cannot be made in it")


def _make_parents(folder: Path) -> list[Path]:
    """Makes `folder` and its missing parents; returns those it made, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir()
    return missing[::-1]


def _images(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise StudyError(f"{folder}: no such folder ({what})")
    found = find_images(folder)
    if not found:
        raise StudyError(f"{folder}: no images ({what})")
    return found


def prepare_study(
    hr_dir: str | os.PathLike,
    methods: Sequence[Method | str],
    out_dir: str | os.PathLike,
    scale: int = 4,
    calibration_hr: str | os.PathLike | None = None,
    calibration_images: int = 3,
    repeats: int | None = None,
    seed: int | None = None,
    title: str = DEFAULT_TITLE,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Builds the study folder `out_dir` (which must not exist, or be empty; missing parent folders are
    made, and removed again if the run fails) and returns its manifest.

    `methods` are `Method`s or `NAME=SPEC` strings. `calibration_hr` (default: `hr_dir`) supplies the
    calibration images, of which up to `calibration_images` are picked at random; `repeats` test items
    (default: 10% of them, at least one) are shown twice. `seed` fixes those random choices; item ids are
    always fresh random ids. Raises StudyError, ModelLoadError or ImageError (one-line messages).
    """
    log = log or (lambda _msg: None)
    methods = [m if isinstance(m, Method) else parse_method(m) for m in methods]
    if not methods:
        raise StudyError("no methods: give at least one --method (e.g. --method nearest --method bicubic)")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise StudyError(f"method names must differ, got {', '.join(names)}")
    if calibration_images < 0 or (repeats is not None and repeats < 0):
        raise StudyError("calibration_images and repeats must be >= 0")
    out_dir = Path(out_dir)
    _check_target(out_dir)
    hr_dir = Path(hr_dir)
    hr_paths = _images(hr_dir, "HR images")
    calibration_dir = Path(calibration_hr) if calibration_hr is not None else hr_dir
    rng = random.Random(seed)
    candidates = _images(calibration_dir, "calibration images")
    calibration_paths = sorted(rng.sample(candidates, min(calibration_images, len(candidates))))
    if len(calibration_paths) < calibration_images:
        log(f"note: {calibration_dir} has only {len(candidates)} images for calibration")
    if {p.resolve() for p in calibration_paths} & {p.resolve() for p in hr_paths}:
        log("note: calibration images are also test images; the paper calibrated on other images "
            "(pass --calibration_hr)")
    upscalers = _upscalers(methods, scale)

    made = _make_parents(out_dir.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except BaseException:
        _remove_empty(made)
        raise
    try:
        manifest = _build(tmp, hr_dir, hr_paths, calibration_dir, calibration_paths, methods, upscalers, scale,
                          repeats, rng, title, log)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes the folder private; give it the usual permissions
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above; rename cannot replace a folder on every platform
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise
    return manifest


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders `_make_parents` made (innermost first) while they are empty: a failed run leaves
    nothing behind."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _build(tmp: Path, hr_dir: Path, hr_paths: list[Path], calibration_dir: Path, calibration_paths: list[Path],
           methods: list[Method], upscalers: dict, scale: int, repeats: int | None, rng: random.Random,
           title: str, log: Callable[[str], None]) -> dict:
    images = tmp / IMAGES_DIR
    images.mkdir()
    items: list[Item] = []

    def add(pixels: np.ndarray, **fields) -> Item:
        item = Item(item_id=new_item_id(), position=len(items), **fields)
        save_image(images / f"{item.item_id}.png", pixels)
        items.append(item)
        return item

    for k, path in enumerate(hr_paths, 1):
        name = path.relative_to(hr_dir).as_posix()
        log(f"image {k}/{len(hr_paths)}: {name}")
        hr, lr = _hr_and_lr(path, scale)
        for m in methods:
            sr = np.asarray(upscalers[m.name](lr, hr))
            if sr.shape != hr.shape:
                raise StudyError(f"method {m.name} turned {name} into {sr.shape[1]}x{sr.shape[0]}, "
                                 f"expected {hr.shape[1]}x{hr.shape[0]}")
            add(sr, role="test", method=m.name, image=name)

    tests = list(items)
    n_repeats = max(1, round(0.1 * len(tests))) if repeats is None else min(repeats, len(tests))
    for original in rng.sample(tests, n_repeats):
        item = Item(item_id=new_item_id(), role="repeat", method=original.method, image=original.image,
                    repeat_of=original.item_id, position=len(items))
        shutil.copyfile(images / f"{original.item_id}.png", images / f"{item.item_id}.png")
        items.append(item)

    for path in calibration_paths:
        hr, lr = _hr_and_lr(path, scale)
        name = path.relative_to(calibration_dir).as_posix()
        add(hr, role="calibration", method="hr", image=name, reference_score=5)
        add(nearest_upscale(lr, scale), role="calibration", method="nearest", image=name, reference_score=1)

    # One timestamp for every file, so file times do not reveal the order (and so the method) of making.
    stamp = time.time()
    for item in items:
        os.utime(images / f"{item.item_id}.png", (stamp, stamp))

    store = create_store(tmp / DB_FILE)
    store.add_items(items)
    manifest = {
        "format": FORMAT,
        "study_id": new_item_id(),
        "title": title,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
        "scale": scale,
        "lr": f"MATLAB bicubic imresize(HR, 1/{scale}) of HR cropped to a multiple of {scale}",
        "hr_dir": str(hr_dir.resolve()),
        "methods": [{"name": m.name, "spec": m.spec} for m in methods],
        "images": [p.relative_to(hr_dir).as_posix() for p in hr_paths],
        "calibration_dir": str(calibration_dir.resolve()),
        "calibration_images": [p.relative_to(calibration_dir).as_posix() for p in calibration_paths],
        "counts": {"test": len(tests), "repeat": n_repeats, "calibration": 2 * len(calibration_paths)},
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(tmp / STUDY_FILE, lambda t: Path(t).write_text(text))
    return manifest
