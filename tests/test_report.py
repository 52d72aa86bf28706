"""The results report (python -m srgan_tf.report) on a real, tiny training run evaluated on Set5."""

import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config
from PIL import Image

from srgan_tf import report, train
from srgan_tf.evaluate import PAPER_RESULTS, comparison_image, evaluate
from srgan_tf.images import find_images, load_image
from srgan_tf.loader import load_upscaler

REPO = Path(__file__).resolve().parents[1]
LABELS = {"bicubic": "bicubic", "srresnet": "SRResNet", "srgan": "SRGAN"}


def _tiny_config(set_dir: Path):
    c = tiny_config(srresnet_steps=10, srgan_steps=2)
    c.model.num_blocks, c.model.filters = 1, 8
    c.train.log_every = 5
    c.srgan.learning_rate, c.srgan.lr_decay_steps = 1e-3, 0
    c.evaluate_on = str(set_dir)
    return c


def _spec(workdir: Path, method: str) -> str:
    return "bicubic" if method == "bicubic" else str(workdir / f"generator_{method}.keras")


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data):
    """(workdir, set dir, report dir, Markdown path, results.json) of a report on a 10 + 2 step training run.
    The run's SRGAN evaluation is deleted first, so the report reads two methods' figures and computes one."""
    pytest.importorskip("matplotlib", reason="the report's plots need the report extra (matplotlib)")
    workdir = tmp_path_factory.mktemp("workdir")
    set5 = shared_data / "Set5"
    train.run(_tiny_config(set5), workdir)
    shutil.rmtree(workdir / "eval" / "srgan")
    root = tmp_path_factory.mktemp("report")
    out, md = root / "out", root / "docs" / "RESULTS.md"
    status = report.main(["report", f"--workdir={workdir}", f"--out={out}", f"--markdown={md}", f"--sets={set5}",
                          "--alphas=0,1", "--command=python -m srgan_tf.train --config=tiny", "--wall_time=75"])
    assert status == 0
    return workdir, set5, out, md, json.loads((out / "results.json").read_text())


@pytest.mark.slow  # needs `run`: a training run and its report
def test_benchmark_figures_are_what_evaluate_gives(run):
    workdir, set5, _, _, results = run
    b = results["benchmark"]["Set5"]
    expected = {m: evaluate(load_upscaler(_spec(workdir, m)), set5, save_images=False) for m in LABELS}
    for m in LABELS:
        assert b["methods"][m]["psnr"] == pytest.approx(expected[m]["mean"]["psnr"], abs=1e-9)
        assert b["methods"][m]["ssim"] == pytest.approx(expected[m]["mean"]["ssim"], abs=1e-9)
        per_image = {r["file"]: r for r in expected[m]["per_image"]}
        for row in b["images"]:
            assert row[m]["psnr"] == pytest.approx(per_image[row["file"]]["psnr"], abs=1e-9)
    assert b["methods"]["srgan"]["source"] == "evaluated by the report"
    assert b["methods"]["srresnet"]["source"] == str(workdir / "eval" / "srresnet" / "Set5" / "results.json")
    for m in ("srresnet", "srgan"):
        assert b["gain_over_bicubic_db"][m] == pytest.approx(b["methods"][m]["psnr"] - b["methods"]["bicubic"]["psnr"])
        assert (b["paper"][m]["psnr"], b["paper"][m]["ssim"]) == PAPER_RESULTS["Set5"][LABELS[m]]


@pytest.mark.slow  # needs `run`: a training run and its report
def test_interpolation_endpoints_are_the_two_generators(run):
    _, _, out, _, results = run
    b = results["benchmark"]["Set5"]["methods"]
    assert b["srresnet"]["psnr"] != b["srgan"]["psnr"]  # else the check below could not tell them apart
    sweep = results["interpolation"]["sets"]["Set5"]
    assert [r["alpha"] for r in sweep] == [0.0, 1.0]
    for row, method in zip(sweep, ("srresnet", "srgan"), strict=True):
        assert row["psnr"] == pytest.approx(b[method]["psnr"], abs=1e-9)
        assert row["ssim"] == pytest.approx(b[method]["ssim"], abs=1e-9)
        assert row["niqe"] == pytest.approx(b[method]["niqe"], abs=1e-9)
    with Image.open(out / "interpolation.png") as im:
        assert im.format == "PNG" and im.width <= 1200


@pytest.mark.slow  # needs `run`: a training run and its report
def test_one_grid_per_image_with_the_five_panels_in_order(run):
    workdir, set5, out, _, results = run
    rows = results["benchmark"]["Set5"]["images"]
    hr_files = find_images(set5 / "HR")
    assert sorted(r["file"] for r in rows) == [p.name for p in hr_files]
    with open(set5 / "names.csv", newline="") as f:
        names = {r["file"]: r["name"] for r in csv.DictReader(f)}
    upscalers = {m: load_upscaler(_spec(workdir, m)) for m in LABELS}
    for row in rows:
        assert row["grid"] == f"images/Set5_{names[row['file']]}.jpg"
        with Image.open(out / row["grid"]) as im:
            assert im.format == "JPEG"
            grid = np.asarray(im.convert("RGB"), np.float64)
        hr = load_image(set5 / "HR" / row["file"])
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        lr = load_image(set5 / "LR_bicubic_x4" / row["file"])
        panels = [np.repeat(np.repeat(lr, 4, 0), 4, 1)] + [upscalers[m](lr) for m in LABELS] + [hr]
        full_width = comparison_image(panels, [""] * 5).shape[1]
        assert grid.shape[1] == min(full_width, report.MAX_GRID_WIDTH)
        if full_width <= report.MAX_GRID_WIDTH:  # unscaled: every panel must show its own image
            h, w = hr.shape[:2]
            gap = (full_width - 5 * w) // 4
            top = min(range(grid.shape[0] - h), key=lambda y: np.abs(grid[y:y + h, :w] - panels[0]).mean())
            for i in range(5):
                shown = grid[top:top + h, i * (w + gap):i * (w + gap) + w]
                errors = [np.abs(shown - panel).mean() for panel in panels]
                # Each panel shows its own image: near it (JPEG and the red crop box blur the match) and clearly
                # nearer than to any panel that really differs from it. This tiny run's SRResNet and SRGAN are
                # nearly the same image, closer to each other than JPEG's error, so their order is not decidable.
                assert errors[i] < 20, (row["file"], i, errors)
                assert all(e > errors[i] + 5.0 for j, e in enumerate(errors)
                           if np.abs(panels[j].astype(float) - panels[i]).mean() > 10.0), (row["file"], i, errors)
    assert sum((out / r["grid"]).stat().st_size for r in rows) < 2_000_000


@pytest.mark.slow  # needs `run`: a training run and its report
def test_markdown_has_the_table_and_links_that_resolve(run):
    workdir, _, out, md, results = run
    text = md.read_text()
    b = results["benchmark"]["Set5"]
    for m, label in LABELS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| Set5 | {label}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        paper = PAPER_RESULTS["Set5"][label]
        assert cells[2:5] == [f"{b['methods'][m]['psnr']:.2f}", f"{b['methods'][m]['ssim']:.4f}",
                              f"{b['methods'][m]['niqe']:.2f}"]
        assert cells[6:8] == [f"{paper[0]:.2f}", f"{paper[1]:.4f}"]
        if m != "bicubic":
            assert cells[5] == f"{b['gain_over_bicubic_db'][m]:+.2f}"
    hr_row = next(line for line in text.splitlines() if line.startswith("| Set5 | HR (ground truth)"))
    assert f"| {b['methods']['bicubic']['hr_niqe']:.2f} |" in hr_row
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert all(not Path(link).is_absolute() and (md.parent / link).is_file() for link in links)
    linked = {(md.parent / link).resolve() for link in links}
    expected = [out / "curves.png", out / "interpolation.png"] + [out / r["grid"] for r in b["images"]]
    assert {p.resolve() for p in expected} <= linked
    config = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(config) == json.loads((workdir / "config.json").read_text())
    assert "`python -m srgan_tf.train --config=tiny`" in text and "75 s" in text
    assert f"TensorFlow {tf.__version__}" in text and f"{os.cpu_count()} CPUs" in text


@pytest.mark.slow  # needs `run`: a training run and its report
def test_markdown_figures_come_from_the_report_dict(run):
    _, _, out, md, results = run
    changed = json.loads(json.dumps(results))
    changed["benchmark"]["Set5"]["methods"]["srresnet"]["psnr"] = 12.3456
    changed["interpolation"]["sets"]["Set5"][1]["ssim"] = 0.98765
    text = report.format_markdown(changed, out, md.parent)
    assert "| Set5 | SRResNet (this run) | 12.35 |" in text and "| 1 | " in text and "0.9877" in text
    assert "12.35" not in md.read_text()


@pytest.mark.slow  # needs `run`: a training run and its report
def test_training_curves_are_the_logged_scalars(run):
    workdir, _, out, _, results = run
    scalars = results["training"]["scalars"]
    for tag, steps in (("srresnet/content_loss", [5, 10]), ("srgan/d_real", [2]), ("srgan/d_fake", [2])):
        logged = {}
        for f in (workdir / "tensorboard").glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(f)):
                for v in event.summary.value:
                    if v.tag == tag:
                        logged[event.step] = float(tf.make_ndarray(v.tensor))
        assert [s for s, _ in scalars[tag]] == steps == sorted(logged)
        assert [v for _, v in scalars[tag]] == pytest.approx([logged[s] for s in steps])
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG" and im.width <= 1200


@pytest.mark.slow  # needs `run`: a training run and its report
def test_wall_time_comes_from_the_flag_then_summary_json(run, tmp_path):
    workdir = run[0]
    phases = json.loads((workdir / "summary.json").read_text())["phases"]
    assert report._wall_time(workdir, None)["per_phase"] == {p["phase"]: p["seconds"] for p in phases}
    assert report._wall_time(workdir, 60.0) == {"seconds": 60.0, "source": "--wall_time"}
    assert report._wall_time(tmp_path, None) == {"seconds": None, "source": "not recorded"}


def _bad_workdir(case: str, workdir: Path, tmp_path: Path) -> Path:
    """`workdir` itself for "good", else a broken copy: missing, without generators, or a corrupt one."""
    target = tmp_path / case
    if case == "good":
        return workdir
    if case == "no_generators":
        target.mkdir()
        shutil.copy(workdir / "config.json", target)
    elif case == "corrupt":
        shutil.copytree(workdir, target, ignore=shutil.ignore_patterns("checkpoints", "eval", "samples"))
        (target / "generator_srgan.keras").write_bytes(b"not a keras archive")
    return target


@pytest.mark.slow  # needs `run`: a training run and its report
@pytest.mark.parametrize("case,extra,status,message", [
    ("missing", [], 1, "no such folder"),
    ("no_generators", [], 1, "no generator_srresnet.keras"),
    ("good", ["--sets=/nonexistent/Set5"], 1, "/nonexistent/Set5"),
    ("good", ["--alphas=0,1.5"], 2, "--alphas=0,1.5: give one or more numbers in [0, 1]"),
    ("good", ["--alphas=0,x"], 2, "--alphas=0,x: give one or more numbers in [0, 1]"),
    ("good", ["--alphas=nan"], 2, "--alphas=nan: give"),
    ("good", ["--alphas="], 2, "--alphas=: give"),
    ("corrupt", [], 1, "generator_srgan.keras: cannot load"),
])
def test_bad_input_is_a_one_line_error(run, tmp_path, capsys, case, extra, status, message):
    workdir, set5 = run[0], run[1]
    target = _bad_workdir(case, workdir, tmp_path)
    capsys.readouterr()
    got = report.main(["report", f"--workdir={target}", f"--out={tmp_path}/out", f"--sets={set5}", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert got == status
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "out" / "results.json").exists()


def test_default_sets_outside_a_checkout_name_the_flag_to_give(tmp_path, capsys, monkeypatch):
    """The default --sets is where a checkout keeps the benchmark sets; elsewhere one line says what to give."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"model": {"scale": 4}, "data": {"degradation": "matlab"}}))
    for method in ("srresnet", "srgan"):
        (workdir / f"generator_{method}.keras").write_bytes(b"never read: the sets are checked first")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert report.main(["report", f"--workdir={workdir}", f"--out={tmp_path / 'out'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "../shared/data/Set5: no such benchmark folder" in err[0], err
    assert err[0].endswith("give the benchmark folders with --sets=DIR[,DIR...]"), err


@pytest.mark.slow  # needs `run`: a training run and its report
def test_missing_matplotlib_is_a_one_line_error(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    capsys.readouterr()
    assert report.main(["report", f"--workdir={run[0]}", f"--out={tmp_path}", f"--sets={run[1]}"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: the plots need matplotlib: pip install 'srgan-tf[report]'"]


def test_command_line_error_is_one_line(tmp_path, capsys):
    capsys.readouterr()
    assert report.main(["report", f"--workdir={tmp_path}/nope", f"--out={tmp_path}"]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"error: workdir {tmp_path}/nope: no such folder"] and not out.strip()
