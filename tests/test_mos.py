"""The MOS kit: building a study, the storage rules, the web app's refusals, concurrent raters against a live
server, a killed server, and the statistics of the report.

Tests of the web app need the `mos` extra (fastapi, uvicorn, httpx) and the plot needs matplotlib; they skip
without them. Building a study, the store and the statistics need only the base package.
"""

import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import linked_folder, live_server
from scipy import stats

from srgan_tf.images import load_image, nearest_upscale
from srgan_tf.imresize import imresize
from srgan_tf.loader import load_upscaler
from srgan_tf.models import build_generator
from srgan_tf.mos.__main__ import main
from srgan_tf.mos.prepare import Method, parse_method, prepare_study
from srgan_tf.mos.report import compute_report, format_markdown, holm, paired_scores, write_report
from srgan_tf.mos.store import Outcome, SQLiteStore
from srgan_tf.mos.study import DB_FILE, IMAGES_DIR, ITEM_ID, STUDY_FILE, Study, StudyError, new_rater_id, rating_order

TEST_IMAGES = ("img_003.png", "img_004.png", "img_005.png")  # the three smallest of Set5
CALIBRATION_IMAGE = "img_002.png"
METHODS = ("nearest", "bicubic", "hr")


@pytest.fixture(scope="session")
def study_inputs(shared_data, tmp_path_factory):
    """(HR folder of three Set5 images, calibration folder of a fourth, a tiny random .keras generator)."""
    root = tmp_path_factory.mktemp("mos_inputs")
    hr = linked_folder(root / "hr", shared_data / "Set5" / "HR", TEST_IMAGES)
    calibration = linked_folder(root / "calibration", shared_data / "Set5" / "HR", [CALIBRATION_IMAGE])
    build_generator(num_blocks=1, filters=8).save(root / "tiny.keras")
    return hr, calibration, root / "tiny.keras"


@pytest.fixture(scope="session")
def template(study_inputs, tmp_path_factory):
    """A prepared study (3 images x nearest/bicubic/hr/tiny generator, 2 repeats, 1 calibration image);
    tests get copies of it."""
    hr, calibration, tiny = study_inputs
    out = tmp_path_factory.mktemp("mos_template") / "study"
    prepare_study(hr, [*METHODS, f"tiny={tiny}"], out, calibration_hr=calibration, calibration_images=1,
                  repeats=2, seed=1, title="Test study")
    return out


@pytest.fixture()
def study_dir(template, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(template, out)
    return out


@pytest.fixture()
def study(study_dir):
    return Study.open(study_dir)


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


# --- prepare ---


def test_prepare_makes_one_item_per_method_and_image_with_the_right_pixels(study, study_inputs):
    hr_dir, calibration_dir, tiny = study_inputs
    items = list(study.items.values())
    tests = [i for i in items if i.role == "test"]
    assert sorted((i.image, i.method) for i in tests) == sorted(
        itertools.product(TEST_IMAGES, [*METHODS, "tiny"]))

    bicubic, generator = load_upscaler("bicubic"), load_upscaler(str(tiny))
    for name in TEST_IMAGES:
        hr = load_image(hr_dir / name)
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        lr = imresize(hr, 0.25).numpy()
        expected = {"nearest": nearest_upscale(lr, 4), "bicubic": bicubic(lr), "hr": hr, "tiny": generator(lr)}
        for item in (i for i in tests if i.image == name):
            shown = load_image(study.image_path(item.item_id))
            np.testing.assert_array_equal(shown, expected[item.method], err_msg=f"{name} {item.method}")
        # Nearest-neighbour of the MATLAB-bicubic LR: every 4th pixel gives the LR back.
        nearest = next(i for i in tests if i.image == name and i.method == "nearest")
        np.testing.assert_array_equal(load_image(study.image_path(nearest.item_id))[::4, ::4], lr)

    calibration = study.calibration_items()
    assert [(i.image, i.method, i.reference_score) for i in calibration] == [
        (CALIBRATION_IMAGE, "hr", 5), (CALIBRATION_IMAGE, "nearest", 1)]
    np.testing.assert_array_equal(load_image(study.image_path(calibration[0].item_id)),
                                  load_image(calibration_dir / CALIBRATION_IMAGE))


def test_prepare_repeats_are_copies_under_new_ids(study):
    repeats = [i for i in study.items.values() if i.role == "repeat"]
    assert len(repeats) == 2 and len({r.repeat_of for r in repeats}) == 2
    for r in repeats:
        original = study.items[r.repeat_of]
        assert (original.role, original.method, original.image) == ("test", r.method, r.image)
        assert r.item_id != original.item_id
        assert study.image_path(r.item_id).read_bytes() == study.image_path(original.item_id).read_bytes()


def test_prepare_names_files_by_opaque_ids_only(study, study_dir):
    files = sorted(p.name for p in (study_dir / IMAGES_DIR).iterdir())
    assert files == sorted(f"{item_id}.png" for item_id in study.items)
    assert all(ITEM_ID.match(Path(f).stem) for f in files)
    manifest = (study_dir / STUDY_FILE).read_text()
    assert not any(item_id in manifest for item_id in study.items)  # the mapping lives in the database only
    mtimes = {(study_dir / IMAGES_DIR / f).stat().st_mtime for f in files}
    assert len(mtimes) == 1  # file times do not tell the order of making
    assert SQLiteStore(study_dir / DB_FILE).journal_mode() == "wal"


def test_prepare_default_repeats_and_default_calibration(study_inputs, tmp_path):
    hr, _calibration, _tiny = study_inputs
    log = []
    prepare_study(hr, ["nearest", "hr"], tmp_path / "s", log=log.append)
    study = Study.open(tmp_path / "s")
    n_tests = len(TEST_IMAGES) * 2
    assert sum(i.role == "repeat" for i in study.items.values()) == max(1, round(0.1 * n_tests))
    # Calibration falls back to the test images, capped at what there is, and says so.
    assert len(study.calibration_items()) == 2 * len(TEST_IMAGES)
    assert any("calibration images are also test images" in line for line in log)


@pytest.mark.parametrize(("text", "expected"), [
    ("bicubic", Method("bicubic", "bicubic")),
    ("srgan=runs/g.keras", Method("srgan", "runs/g.keras")),
    ("nn = nearest", Method("nn", "nearest")),
])
def test_parse_method(text, expected):
    assert parse_method(text) == expected


@pytest.mark.parametrize("text", ["runs/g.keras", "=bicubic", "9x=bicubic", "a/b=hr", "x="])
def test_parse_method_refuses(text):
    with pytest.raises(StudyError):
        parse_method(text)


def run_cli(capsys, *args):
    code = main(["srgan_tf.mos", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("extra", "message"), [
    (["--method", "nearest", "--method", "nearest"], "must differ"),
    (["--method", "g=missing.keras"], "no such file"),
    (["--method", "nearest", "--hr=/nonexistent"], "no such folder"),
    (["--method", "srgan"], "write NAME=MODEL"),
])
def test_prepare_cli_refuses_bad_input_and_leaves_nothing(study_inputs, tmp_path, capsys, extra, message):
    hr, _c, _t = study_inputs
    code, _out, err = run_cli(capsys, "prepare", f"--hr={hr}", f"--out={tmp_path / 's'}", *extra)
    assert code == 1
    assert message in one_error_line(err)
    assert list(tmp_path.iterdir()) == []  # no study, no half-made folder


def test_prepare_cli_never_overwrites_a_study(template, tmp_path, capsys, study_inputs):
    hr, _c, _t = study_inputs
    target = tmp_path / "s"
    shutil.copytree(template, target)
    before = sorted(p.name for p in (target / IMAGES_DIR).iterdir())
    code, _out, err = run_cli(capsys, "prepare", f"--hr={hr}", "--method", "nearest", f"--out={target}")
    assert code == 1 and "already exists" in one_error_line(err)
    assert sorted(p.name for p in (target / IMAGES_DIR).iterdir()) == before


def test_prepare_failing_midway_leaves_nothing(study_inputs, tmp_path, monkeypatch):
    hr, _c, _t = study_inputs
    import srgan_tf.mos.prepare as prepare_module

    calls, real_save = [], prepare_module.save_image

    def failing_save(path, image):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(path, image)

    monkeypatch.setattr(prepare_module, "save_image", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_study(hr, ["nearest", "hr"], tmp_path / "s")
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []


def test_prepare_cli_makes_the_missing_parents_of_out(study_inputs, tmp_path, capsys):
    """The README's `--out=studies/set14` works where studies/ does not exist yet."""
    hr, _c, _t = study_inputs
    code, out, err = run_cli(capsys, "prepare", f"--hr={hr}", "--method", "nearest", "--repeats=0",
                             f"--out={tmp_path / 'studies' / 'set14'}")
    assert code == 0, err
    assert (tmp_path / "studies" / "set14" / IMAGES_DIR).is_dir() and "wrote" in out


def test_prepare_failing_midway_removes_the_parents_it_made(study_inputs, tmp_path, monkeypatch):
    hr, _c, _t = study_inputs
    import srgan_tf.mos.prepare as prepare_module

    def failing_save(path, image):
        raise OSError("disk full")

    monkeypatch.setattr(prepare_module, "save_image", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_study(hr, ["nearest"], tmp_path / "a" / "b" / "s")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudyError, match="not a folder"):
        prepare_study(hr, ["nearest"], tmp_path / "file" / "s")


def test_prepare_cli_flag_errors_exit_2(capsys):
    code, _out, err = run_cli(capsys, "prepare", "--hr=x")
    assert code == 2 and one_error_line(err)
    code, _out, err = run_cli(capsys, "frobnicate")
    assert code == 2 and "unknown command" in one_error_line(err)


# --- orders and the store ---


def test_rating_orders_are_permutations_that_differ_and_keep_repeats_apart(study):
    items = study.rating_items()
    pairs = [(i.item_id, i.repeat_of) for i in items if i.repeat_of]
    rng = random.Random(0)
    orders = [rating_order(items, rng) for _ in range(20)]
    for order in orders:
        assert sorted(order) == sorted(i.item_id for i in items)
        where = {item_id: k for k, item_id in enumerate(order)}
        assert all(abs(where[a] - where[b]) > 1 for a, b in pairs)
    assert len({tuple(o) for o in orders}) == len(orders)


def test_schema_refuses_bad_scores_even_without_the_app(study, study_dir):
    rater = new_rater_id()
    order = [i.item_id for i in study.rating_items()]
    study.store.create_rater(rater, order)
    conn = sqlite3.connect(study_dir / DB_FILE)
    conn.execute("PRAGMA foreign_keys = ON")
    insert = "INSERT INTO scores (rater_id, item_id, score, created_at) VALUES (?, ?, ?, 'now')"
    calibration_item = study.calibration_items()[0].item_id
    for args in [(rater, order[0], 6), (rater, order[0], 0), (rater, calibration_item, 3),
                 (new_rater_id(), order[0], 3)]:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(insert, args)
    conn.execute(insert, (rater, order[0], 3))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(insert, (rater, order[0], 4))
    conn.rollback()
    conn.close()


def test_store_add_score_outcomes(study):
    rater = new_rater_id()
    order = [i.item_id for i in study.rating_items()]
    study.store.create_rater(rater, order)
    assert study.store.add_score(rater, order[0], 3) is Outcome.NOT_CALIBRATED
    assert study.store.mark_calibrated(rater)
    assert study.store.add_score(new_rater_id(), order[0], 3) is Outcome.UNKNOWN_RATER
    assert study.store.add_score(rater, study.calibration_items()[0].item_id, 3) is Outcome.NOT_ASSIGNED
    for bad in (0, 6, True, 3.0):
        assert study.store.add_score(rater, order[0], bad) is Outcome.OUT_OF_RANGE
    assert study.store.add_score(rater, order[0], 3) is Outcome.STORED
    assert study.store.add_score(rater, order[0], 4) is Outcome.DUPLICATE
    assert [(s.item_id, s.score) for s in study.store.scores()] == [(order[0], 3)]
    progress = study.store.progress(rater)
    assert (progress.done, progress.total, progress.next_item) == (1, len(order), order[1])


# --- the report ---


def fill(study: Study, policy, raters: int = 2) -> list[str]:
    """Creates `raters` raters who score every item with policy(rater index, item); returns their ids."""
    ids = []
    for r in range(raters):
        rater = new_rater_id()
        order = [i.item_id for i in study.rating_items()]
        study.store.create_rater(rater, order)
        study.store.mark_calibrated(rater)
        for item_id in order:
            assert study.store.add_score(rater, item_id, policy(r, study.items[item_id])) is Outcome.STORED
        ids.append(rater)
    return ids


def policy(r: int, item) -> int:
    """hr always 4 points above nearest; bicubic and tiny always equal; rater 1 gives repeats one more."""
    k = TEST_IMAGES.index(item.image)
    base = {"nearest": 1, "bicubic": 2 + (k + r) % 2, "tiny": 2 + (k + r) % 2, "hr": 5}[item.method]
    return min(5, base + 1) if item.role == "repeat" and r == 1 and base < 5 else base


def test_report_statistics_match_the_scores_given(study):
    fill(study, policy)
    report = compute_report(study)
    tests_items = [i for i in study.items.values() if i.role == "test"]
    for m in report["methods"]:
        given = [policy(r, i) for r in range(2) for i in tests_items if i.method == m["method"]]
        assert m["n"] == len(given) == 2 * len(TEST_IMAGES)
        assert m["mos"] == pytest.approx(np.mean(given), abs=1e-4)
        assert m["sd"] == pytest.approx(np.std(given, ddof=1), abs=1e-4)
        assert sum(m["histogram"].values()) == len(given)

    by_pair = {(t["a"], t["b"]): t for t in report["wilcoxon"]["tests"]}
    assert len(by_pair) == 6
    hr_vs_nearest = by_pair[("nearest", "hr")]
    x = [policy(r, i) for r in range(2) for i in sorted(tests_items, key=lambda i: i.image) if i.method == "nearest"]
    y = [policy(r, i) for r in range(2) for i in sorted(tests_items, key=lambda i: i.image) if i.method == "hr"]
    expected = stats.wilcoxon(x, y)
    assert hr_vs_nearest["n_pairs"] == 6 and hr_vs_nearest["p"] == pytest.approx(expected.pvalue, rel=1e-4)
    assert hr_vs_nearest["significant"] == (expected.pvalue < 0.05)
    tied = by_pair[("bicubic", "tiny")]
    assert tied["p"] is None and not tied["significant"] and tied["note"] == "all pairs tied"

    retest = report["test_retest"]
    repeats = [i for i in study.items.values() if i.role == "repeat"]
    diffs = [abs(policy(r, i) - policy(r, study.items[i.repeat_of])) for r in range(2) for i in repeats]
    assert retest["pairs"] == len(diffs) == 4
    assert retest["exact_agreement"] == pytest.approx(np.mean([d == 0 for d in diffs]))
    assert retest["mean_abs_difference"] == pytest.approx(np.mean(diffs))
    assert [p["rater"] for p in retest["per_rater"]] == ["R1", "R2"]

    markdown = format_markdown(report)
    row = next(line for line in markdown.splitlines() if line.startswith("| nearest | hr |"))
    assert row.rstrip().endswith("| * |") == hr_vs_nearest["significant"]
    assert "all pairs tied" in next(line for line in markdown.splitlines() if line.startswith("| bicubic | tiny |"))


def test_report_per_rater_pairing_and_complete_only(study):
    raters = fill(study, policy)
    x, y = paired_scores([], "a", "b", "rater")
    assert x.size == y.size == 0
    report = compute_report(study, pairing="rater")
    t = next(t for t in report["wilcoxon"]["tests"] if (t["a"], t["b"]) == ("nearest", "hr"))
    assert t["n_pairs"] == 2 and not t["significant"]  # two raters cannot reach p < 0.05

    partial = new_rater_id()
    order = [i.item_id for i in study.rating_items()]
    study.store.create_rater(partial, order)
    study.store.mark_calibrated(partial)
    study.store.add_score(partial, order[0], 5)
    everyone = compute_report(study)
    complete = compute_report(study, complete_only=True)
    assert everyone["raters"]["with_scores"] == 3 and complete["raters"]["with_scores"] == 2
    assert everyone["raters"]["complete"] == complete["raters"]["complete"] == len(raters)
    assert everyone["ratings"] == complete["ratings"] + (study.items[order[0]].role == "test")


def test_report_of_an_empty_study(study):
    report = compute_report(study)
    assert all(m["n"] == 0 and m["mos"] is None for m in report["methods"])
    assert all(t["p"] is None and t["note"] == "no pairs" for t in report["wilcoxon"]["tests"])
    assert report["test_retest"]["pairs"] == 0
    format_markdown(report)


def test_holm_adjustment():
    assert holm([0.01, 0.04, None, 0.03]) == [pytest.approx(0.03), pytest.approx(0.06), None, pytest.approx(0.06)]


def test_report_cli_writes_json_markdown_and_plot(study, study_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot needs the mos extra (matplotlib)")
    fill(study, policy)
    out = tmp_path / "report"
    code, stdout, _err = run_cli(capsys, "report", f"--study={study_dir}", f"--out={out}")
    assert code == 0, _err
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(write_report(study, tmp_path / "again")))
    assert (out / "report.md").read_text().startswith("# MOS: Test study")
    assert "| nearest |" in stdout
    plot = load_image(out / "mos_distribution.png")
    assert plot.shape[0] > 300 and plot.shape[1] > 600
    assert (plot[..., 0] > 200).sum() > 0 and ((plot[..., 0] > 200) & (plot[..., 1] < 60)).sum() > 20  # red MOS


def test_report_cli_on_a_missing_study(tmp_path, capsys):
    code, _out, err = run_cli(capsys, "report", f"--study={tmp_path / 'none'}")
    assert code == 1 and "no such study folder" in one_error_line(err)
    (tmp_path / "empty").mkdir()
    code, _out, err = run_cli(capsys, "report", f"--study={tmp_path / 'empty'}")
    assert code == 1 and "not a study folder" in one_error_line(err)


def test_commands_name_the_missing_extra(study_dir, capsys, monkeypatch):
    import srgan_tf.mos.__main__ as cli

    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("matplotlib", "fastapi") else real(name, *a))
    for command, missing in (("report", "matplotlib"), ("serve", "fastapi")):
        code, _out, err = run_cli(capsys, command, f"--study={study_dir}")
        line = one_error_line(err)
        assert code == 1 and line.startswith(f"error: `{command}` needs ") and missing in line
        assert line.endswith("pip install 'srgan-tf[mos]'")


# --- the web app, in process ---


@pytest.fixture()
def client(study):
    pytest.importorskip("fastapi", reason="the web app needs the mos extra (fastapi)")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (mos extra)")
    with warnings.catch_warnings():  # newer Starlette prefers the httpx2 fork but works with httpx
        warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient")
        from fastapi.testclient import TestClient

    from srgan_tf.mos.app import create_app

    with TestClient(create_app(study)) as c:
        yield c


def test_app_takes_a_rater_through_calibration_and_every_item_once(client, study):
    seen_text = []

    def call(method, path, **kw):
        response = client.request(method, path, **kw)
        if not response.headers["content-type"].startswith("image/"):  # random bytes could spell anything
            seen_text.append(response.text)
        return response

    page = call("GET", "/")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    for name in ("app.js", "style.css"):
        assert call("GET", f"/static/{name}").status_code == 200
    created = call("POST", "/api/raters")
    assert created.status_code == 201
    body = created.json()
    rater = body.pop("rater_id")
    headers = {"X-Rater-Id": rater}
    assert body["calibrated"] is False and body["done"] == 0
    assert [c["score"] for c in body["calibration"]] == [5, 1]
    first = body["next"]["item_id"]
    refused = call("POST", "/api/scores", json={"item_id": first, "score": 3}, headers=headers)
    assert refused.status_code == 409  # calibration first
    assert call("POST", "/api/calibration", headers=headers).status_code == 200

    order, state = [], call("GET", "/api/session", headers=headers).json()
    assert "calibration" not in state
    while state["next"]:
        item_id = state["next"]["item_id"]
        image = call("GET", state["next"]["image"])
        assert image.status_code == 200 and image.content == study.image_path(item_id).read_bytes()
        assert "last-modified" not in image.headers and "etag" not in image.headers
        order.append(item_id)
        response = call("POST", "/api/scores", json={"item_id": item_id, "score": 1 + len(order) % 5},
                        headers=headers)
        assert response.status_code == 201
        state = response.json()
        assert state["done"] == len(order)
    assert sorted(order) == sorted(i.item_id for i in study.rating_items())
    stored = {s.item_id: s.score for s in study.store.scores()}
    assert stored == {item_id: 1 + k % 5 for k, item_id in enumerate(order, 1)}

    # Nothing the rater's browser received names a method or a model.
    text = "\n".join(seen_text).replace(rater, "")
    hidden = {*study.methods, *(m["spec"] for m in study.manifest["methods"])}
    hidden |= {Path(spec).name for spec in hidden}
    for word in hidden:
        assert not re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE), word


def test_app_refuses_bad_requests_and_stores_nothing(client, study):
    rater = client.post("/api/raters").json()["rater_id"]
    headers = {"X-Rater-Id": rater}
    client.post("/api/calibration", headers=headers)
    item = client.get("/api/session", headers=headers).json()["next"]["item_id"]
    calibration_item = study.calibration_items()[0].item_id
    unknown_item = "0123456789abcdef" if "0123456789abcdef" not in study.items else "fedcba9876543210"

    cases = [
        ({}, {"item_id": item, "score": 3}, 401),
        ({"X-Rater-Id": new_rater_id()}, {"item_id": item, "score": 3}, 403),  # forged, well formed
        ({"X-Rater-Id": "x' OR '1'='1"}, {"item_id": item, "score": 3}, 403),
        ({"X-Rater-Id": rater[:-1] + ("A" if rater[-1] != "A" else "B")}, {"item_id": item, "score": 3}, 403),
        (headers, {"item_id": item, "score": 0}, 422),
        (headers, {"item_id": item, "score": 6}, 422),
        (headers, {"item_id": item, "score": -1}, 422),
        (headers, {"item_id": item, "score": "5"}, 422),
        (headers, {"item_id": item, "score": 4.5}, 422),
        (headers, {"item_id": item, "score": True}, 422),
        (headers, {"item_id": item, "score": None}, 422),
        (headers, {"item_id": item}, 422),
        (headers, {"item_id": "../mos.sqlite", "score": 3}, 422),
        (headers, {"item_id": unknown_item, "score": 3}, 404),
        (headers, {"item_id": calibration_item, "score": 3}, 404),
    ]
    for h, body, status in cases:
        response = client.post("/api/scores", json=body, headers=h)
        assert response.status_code == status, (h, body, response.text)
    assert client.post("/api/scores", content=b"score=5", headers={**headers, "Content-Type": "text/plain"}
                       ).status_code == 422
    assert study.store.scores() == []

    assert client.post("/api/scores", json={"item_id": item, "score": 2}, headers=headers).status_code == 201
    again = client.post("/api/scores", json={"item_id": item, "score": 5}, headers=headers)
    assert again.status_code == 409
    assert [(s.item_id, s.score) for s in study.store.scores()] == [(item, 2)]
    assert client.get("/api/session", headers={"X-Rater-Id": new_rater_id()}).status_code == 403
    assert client.post("/api/calibration", headers={"X-Rater-Id": new_rater_id()}).status_code == 403
    assert len(study.store.raters()) == 1


TRAVERSALS = [
    "/images/../mos.sqlite", "/images/..%2fmos.sqlite", "/images/..%2F..%2Fstudy.json",
    "/images/%2e%2e%2fstudy.json", "/images/%2e%2e/study.json", "/static/../app.py", "/static/..%2fapp.py",
    "/static/..%2f__init__.py", "/static/index.html/../../study.py", "/mos.sqlite", "/study.json",
    "/images/mos.sqlite", "/images/", "/static/%2e%2e%2f%2e%2e%2fstudy.json",
    "/images/....//mos.sqlite", "/images/%252e%252e%252fmos.sqlite", "/images/0123456789abcdef.png",
]


def test_app_refuses_files_outside_the_study(client, study):
    item_id = study.rating_items()[0].item_id
    for path in [*TRAVERSALS, f"/images/{item_id}", f"/images/{item_id}.png.bak", f"/images/{item_id}.PNG",
                 f"/images/{item_id}.png%00.sqlite", f"/images/{item_id.upper()}.png"]:
        response = client.get(path)
        assert 400 <= response.status_code < 500, path
        assert b"SQLite format" not in response.content and b"srgan-tf-mos" not in response.content


# --- the web app, live: a real uvicorn server in a subprocess ---


def request(url: str, method: str = "GET", body: dict | None = None, rater: str | None = None):
    """(status, JSON body or None) of one HTTP request; never raises for an HTTP error status."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if rater:
        headers["X-Rater-Id"] = rater
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_concurrent_raters_each_score_lands_exactly_once(study_dir, tmp_path):
    n_raters = 6
    with live_server(study_dir, tmp_path / "server.log") as (url, _proc):
        with ThreadPoolExecutor(n_raters) as pool:
            created = list(pool.map(lambda _: request(url + "/api/raters", "POST"), range(n_raters)))
        assert all(status == 201 for status, _ in created)
        raters = [body["rater_id"] for _, body in created]
        for rater in raters:
            assert request(url + "/api/calibration", "POST", rater=rater)[0] == 200
        items = [i.item_id for i in Study.open(study_dir).rating_items()]
        rng = random.Random(7)
        given = {(r, i): rng.randint(1, 5) for r in raters for i in items}
        # Every score is sent twice in a row, so two workers race with the same score, among all raters' requests.
        keys = list(given)
        rng.shuffle(keys)
        tasks = [key for key in keys for _ in range(2)]

        def send(key):
            rater, item = key
            return key, request(url + "/api/scores", "POST", {"item_id": item, "score": given[key]}, rater)[0]

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(send, tasks))
    statuses: dict = {}
    for key, status in results:
        statuses.setdefault(key, []).append(status)
    assert all(sorted(s) == [201, 409] for s in statuses.values()), statuses
    stored = Study.open(study_dir).store.scores()
    assert len(stored) == len(given)
    assert {(s.rater_id, s.item_id): s.score for s in stored} == given


def test_killed_server_loses_no_score_and_the_rater_resumes(study_dir, tmp_path):
    given = {}
    with live_server(study_dir, tmp_path / "server.log") as (url, proc):
        status, body = request(url + "/api/raters", "POST")
        rater = body["rater_id"]
        request(url + "/api/calibration", "POST", rater=rater)
        for k in range(5):
            status, state = request(url + "/api/session", rater=rater)
            item = state["next"]["item_id"]
            status, _ = request(url + "/api/scores", "POST", {"item_id": item, "score": 1 + k % 5}, rater)
            assert status == 201
            given[item] = 1 + k % 5
        os.kill(proc.pid, signal.SIGKILL)  # right after the last answer: no shutdown, no checkpoint
        proc.wait(timeout=30)
    assert {s.item_id: s.score for s in SQLiteStore(study_dir / DB_FILE).scores()} == given
    with live_server(study_dir, tmp_path / "server2.log") as (url, _proc):
        status, state = request(url + "/api/session", rater=rater)
        assert status == 200 and state["calibrated"] and state["done"] == len(given)
        assert state["next"]["item_id"] not in given


def raw_get(url: str, path: str, host_header: str | None = None) -> int:
    """Status of a GET for `path` sent exactly as written (no client-side normalisation of '..')."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=host_header is not None, skip_accept_encoding=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        assert b"SQLite format" not in body and b"srgan-tf-mos" not in body, path
        return response.status
    finally:
        conn.close()


def test_live_server_refuses_traversal_paths_and_foreign_hosts(study_dir, tmp_path):
    with live_server(study_dir, tmp_path / "server.log") as (url, _proc):
        for path in [*TRAVERSALS, "/images/..", "/static/..", "/images/./../study.json"]:
            assert 400 <= raw_get(url, path) < 500, path
        assert raw_get(url, "/static/app.js") == 200
        assert raw_get(url, "/static/app.js", host_header=f"localhost:{url.rsplit(':', 1)[1]}") == 200
        assert raw_get(url, "/api/study", host_header="rebound.example") == 400  # DNS rebinding

def test_serve_cli_errors(study_dir, tmp_path, capsys):
    pytest.importorskip("fastapi", reason="the web app needs the mos extra (fastapi, uvicorn)")
    pytest.importorskip("uvicorn", reason="the web app needs the mos extra (fastapi, uvicorn)")
    code, _out, err = run_cli(capsys, "serve", f"--study={tmp_path / 'none'}")
    assert code == 1 and "no such study folder" in one_error_line(err)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _out, err = run_cli(capsys, "serve", f"--study={study_dir}", f"--port={port}")
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in one_error_line(err)
    code, _out, err = run_cli(capsys, "serve", f"--study={study_dir}", "--port=70000")
    assert code == 2 and one_error_line(err)
