"""End to end in headless Chromium: two raters take part through the real page (calibration, then every item;
one of them stops half-way and resumes), and the report must agree with the scores they clicked.

Needs Debian's chromium (`apt-get install chromium`, or set SRGAN_CHROMIUM to another binary), Playwright for
Python and the `mos` extra; skips with the reason otherwise. With SRGAN_MOS_SCREENSHOTS=docs it also writes the
README's pictures, docs/mos_rating.png and docs/mos_report.png.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("SRGAN_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = os.environ.get("SRGAN_MOS_SCREENSHOTS")

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SRGAN_CHROMIUM)",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
for _module in ("fastapi", "uvicorn", "matplotlib"):
    pytest.importorskip(_module, reason=f"the MOS web app and report need the mos extra ({_module})")

from conftest import linked_folder, live_server  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from scipy import stats  # noqa: E402
from test_mos import CALIBRATION_IMAGE, TEST_IMAGES  # noqa: E402

from srgan_tf.images import atomic_write  # noqa: E402
from srgan_tf.mos.prepare import prepare_study  # noqa: E402
from srgan_tf.mos.report import write_report  # noqa: E402
from srgan_tf.mos.study import Study  # noqa: E402

METHODS = ("nearest", "bicubic", "hr")


def chosen_score(rater: int, item) -> int:
    """What scripted rater 0 or 1 clicks for an item: hr above bicubic above nearest, except that rater 1 finds
    the first image's bicubic no better than its nearest, and gives repeats one point less."""
    k = TEST_IMAGES.index(item.image)
    table = [{"nearest": 1, "bicubic": 2 + k % 2, "hr": 5 - (k == 2)},
             {"nearest": 1 + (k == 0), "bicubic": 2 + (k != 0), "hr": 4 + k % 2}][rater]
    score = table[item.method]
    return max(1, score - 1) if item.role == "repeat" and rater == 1 else score


def rate_everything(context, url: str, study: Study, rater: int, screenshot_dir: Path, stop_after: int | None):
    """Drives one rater through the page; returns (rater id, [(item id, score)] in the order shown)."""
    page = context.new_page()
    page.goto(url)
    page.click("#start")
    calibration = study.calibration_items()
    for example in calibration:
        page.wait_for_selector("#calibration-next:enabled")
        assert page.get_attribute("#calibration-image", "src") == f"/images/{example.item_id}.png"
        assert page.inner_text("#calibration-score").startswith(f"{example.reference_score} (")
        page.click("#calibration-next")

    total = len(study.rating_items())
    clicked: list[tuple[str, int]] = []
    while True:
        page.wait_for_selector("#done:not([hidden]), #rating:not([hidden]) button.score:enabled")
        if page.is_visible("#done"):
            break
        item_id = page.get_attribute("#stimulus", "data-item")
        assert page.get_attribute("#stimulus", "src") == f"/images/{item_id}.png"
        assert page.inner_text("#progress") == f"Image {len(clicked) + 1} of {total}"
        text = page.inner_text("body").lower()
        assert not any(m in text for m in METHODS if m != "hr") and " hr " not in f" {text} "
        if rater == 0 and not clicked:
            page.screenshot(path=screenshot_dir / "mos_rating.png", full_page=True)
        score = chosen_score(rater, study.items[item_id])
        if rater == 1 and len(clicked) % 2:
            page.keyboard.press(str(score))
        else:
            page.click(f'button.score[data-score="{score}"]')
        clicked.append((item_id, score))
        page.wait_for_function("prev => !document.getElementById('done').hidden || "
                               "document.getElementById('stimulus').dataset.item !== prev", arg=item_id)
        if stop_after is not None and len(clicked) == stop_after:
            page.close()  # the rater leaves, and comes back later in the same browser
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("#rating:not([hidden]) button.score:enabled")
            assert page.is_hidden("#calibration")
    assert page.inner_text("#done-count") == str(total)
    rater_id = page.evaluate("() => Object.entries(localStorage).find(([k]) => k.startsWith('srgan-mos-rater:'))[1]")
    page.close()
    return rater_id, clicked


@pytest.mark.slow  # a real Chromium session: the browser is on the list of slow tests
def test_two_raters_in_chromium_and_the_report_agrees(shared_data, tmp_path):
    hr = linked_folder(tmp_path / "hr", shared_data / "Set5" / "HR", TEST_IMAGES)
    calibration = linked_folder(tmp_path / "calibration", shared_data / "Set5" / "HR", [CALIBRATION_IMAGE])
    study_dir = tmp_path / "study"
    prepare_study(hr, METHODS, study_dir, calibration_hr=calibration, calibration_images=1, repeats=1, seed=3,
                  title="Image quality study (Set5, 4x)")
    study = Study.open(study_dir)

    sessions = {}
    with live_server(study_dir, tmp_path / "server.log") as (url, _proc), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            for rater, stop_after in ((0, 4), (1, None)):
                context = browser.new_context(viewport={"width": 900, "height": 760})  # own storage: a new person
                sessions[rater] = rate_everything(context, url, study, rater, tmp_path, stop_after)
                context.close()
        finally:
            browser.close()

    rating_ids = sorted(i.item_id for i in study.rating_items())
    orders = [[item_id for item_id, _ in sessions[r][1]] for r in (0, 1)]
    assert sorted(orders[0]) == sorted(orders[1]) == rating_ids  # every item, each once
    assert orders[0] != orders[1]  # a fresh random order per rater
    for rater_id, clicked in sessions.values():
        stored = {s.item_id: s.score for s in study.store.scores() if s.rater_id == rater_id}
        assert stored == dict(clicked)

    report = write_report(study, tmp_path / "report")
    given = {(r, study.items[i].method, study.items[i].image): s
             for r in (0, 1) for i, s in sessions[r][1] if study.items[i].role == "test"}
    for m in report["methods"]:
        scores = [s for (_, method, _), s in given.items() if method == m["method"]]
        assert m["n"] == len(scores) == 2 * len(TEST_IMAGES)
        assert m["mos"] == pytest.approx(np.mean(scores), abs=1e-4)
        assert m["sd"] == pytest.approx(np.std(scores, ddof=1), abs=1e-4)
    for t in report["wilcoxon"]["tests"]:
        x = [given[(r, t["a"], image)] for r in (0, 1) for image in TEST_IMAGES]
        y = [given[(r, t["b"], image)] for r in (0, 1) for image in TEST_IMAGES]
        if x == y:
            assert t["p"] is None and not t["significant"]
        else:
            p = stats.wilcoxon(x, y).pvalue
            assert t["p"] == pytest.approx(p, rel=1e-4) and t["significant"] == (p < 0.05)
    assert {t["significant"] for t in report["wilcoxon"]["tests"]} == {True, False}  # the policy makes both

    repeat = next(i for i in study.items.values() if i.role == "repeat")
    retest = [(dict(sessions[r][1])[repeat.repeat_of], dict(sessions[r][1])[repeat.item_id]) for r in (0, 1)]
    assert report["test_retest"]["pairs"] == 2
    assert report["test_retest"]["exact_agreement"] == pytest.approx(np.mean([a == b for a, b in retest]))

    if SCREENSHOTS:
        for source, name in ((tmp_path / "mos_rating.png", "mos_rating.png"),
                             (tmp_path / "report" / "mos_distribution.png", "mos_report.png")):
            atomic_write(Path(SCREENSHOTS) / name, lambda tmp, source=source: shutil.copyfile(source, tmp))
