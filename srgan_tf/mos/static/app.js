// The rating page: registration, calibration, then one image at a time until every item is scored.
// The server holds all state; this page only remembers the rater id (localStorage), so reloading resumes.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SCREENS = ["loading", "welcome", "calibration", "rating", "done"];
  let study = null;
  let raterId = null;
  let session = null;
  let calibrationIndex = 0;
  let current = null;
  let busy = true;

  const show = (name) => { for (const s of SCREENS) $(s).hidden = s !== name; };
  const storageKey = () => "srgan-mos-rater:" + study.study_id;

  function message(text) {
    $("message").textContent = text || "";
    $("message").hidden = !text;
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (raterId) headers["X-Rater-Id"] = raterId;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, status: 0, data: { detail: "cannot reach the server" } };
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data };
  }

  const detail = (r) => (r.data && typeof r.data.detail === "string" ? r.data.detail : "error " + r.status);

  function loadImage(img, src, onReady) {
    img.classList.add("pending");
    img.onload = () => { img.classList.remove("pending"); onReady(); };
    img.onerror = () => message("The image did not load. Please reload the page.");
    img.src = src;
  }

  function render(s) {
    session = s;
    message("");
    $("progress").hidden = false;
    if (!s.calibrated) {
      $("progress").textContent = "Examples";
      calibrationIndex = 0;
      showCalibration();
    } else if (s.next) {
      $("progress").textContent = `Image ${s.done + 1} of ${s.total}`;
      showItem(s.next);
    } else {
      $("progress").textContent = `${s.done} of ${s.total} rated`;
      $("done-count").textContent = String(s.total);
      show("done");
    }
  }

  function showCalibration() {
    const examples = session.calibration || [];
    if (calibrationIndex >= examples.length) { finishCalibration(); return; }
    const example = examples[calibrationIndex];
    $("calibration-count").textContent = `${calibrationIndex + 1} of ${examples.length}`;
    $("calibration-score").textContent = `${example.score} (${example.label})`;
    const next = $("calibration-next");
    next.textContent = calibrationIndex + 1 < examples.length ? "Next example" : "Start rating";
    next.disabled = true;
    loadImage($("calibration-image"), example.image, () => { next.disabled = false; });
    show("calibration");
  }

  async function finishCalibration() {
    $("calibration-next").disabled = true;
    const r = await api("POST", "/api/calibration");
    if (!r.ok) { message("Could not go on: " + detail(r)); $("calibration-next").disabled = false; return; }
    render(r.data);
  }

  function setButtons(enabled) {
    busy = !enabled;
    for (const b of document.querySelectorAll("button.score")) b.disabled = !enabled;
  }

  function showItem(item) {
    current = item;
    setButtons(false);
    const img = $("stimulus");
    img.dataset.item = item.item_id;
    loadImage(img, item.image, () => { if (current === item) setButtons(true); });
    show("rating");
  }

  async function rate(score) {
    if (busy || !current) return;
    setButtons(false);
    const r = await api("POST", "/api/scores", { item_id: current.item_id, score });
    if (r.ok) { render(r.data); return; }
    if (r.status === 409) {  // already scored (another tab?): carry on from the server's state
      const s = await api("GET", "/api/session");
      if (s.ok) { render(s.data); return; }
    }
    message("Your score was not saved (" + detail(r) + "). Please try again.");
    setButtons(true);
  }

  async function register() {
    $("start").disabled = true;
    const r = await api("POST", "/api/raters");
    if (!r.ok) { message("Could not start: " + detail(r)); $("start").disabled = false; return; }
    raterId = r.data.rater_id;
    localStorage.setItem(storageKey(), raterId);
    render(r.data);
  }

  async function start() {
    const info = await api("GET", "/api/study");
    if (!info.ok) { message("Cannot load the study: " + detail(info)); return; }
    study = info.data;
    document.title = study.title;
    $("title").textContent = study.title;
    raterId = localStorage.getItem(storageKey());
    if (raterId) {
      const s = await api("GET", "/api/session");
      if (s.ok) { render(s.data); return; }
      if (s.status !== 401 && s.status !== 403) { message("Cannot resume: " + detail(s)); return; }
      localStorage.removeItem(storageKey());  // the server does not know this id (a new study?)
      raterId = null;
    }
    show("welcome");
  }

  $("start").addEventListener("click", register);
  $("calibration-next").addEventListener("click", () => {
    calibrationIndex += 1;
    showCalibration();
  });
  for (const b of document.querySelectorAll("button.score")) {
    b.addEventListener("click", () => rate(Number(b.dataset.score)));
  }
  document.addEventListener("keydown", (e) => {
    if ($("rating").hidden || e.altKey || e.ctrlKey || e.metaKey) return;
    if (/^[1-5]$/.test(e.key)) rate(Number(e.key));
  });
  start();
})();
