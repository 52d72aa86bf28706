"""The raters' web app: `create_app(Study.open(folder))` is a FastAPI application.

Pages and files:
  GET  /                      the rating page (static HTML; static/app.js drives it)
  GET  /static/{app.js,style.css}
  GET  /images/<item id>.png  an item's image, for known ids only
API (JSON; the rater is named by the `X-Rater-Id` header, which is also the rater's credential):
  GET  /api/study             title and counts
  POST /api/raters            a new anonymous rater with a freshly shuffled order -> {"rater_id"}
  GET  /api/session           calibration examples (until done), progress and the next item
  POST /api/calibration       the rater has seen the calibration examples
  POST /api/scores            {"item_id", "score"}: stores one score, answers with the next item

Nothing a rater's browser receives names a method. Refusals are 4xx and store nothing: 401 without a rater
id, 403 for an unknown one, 404 for an item that is not the rater's, 409 for a second score or a score before
calibration, 422 for a malformed body (a score not an integer 1..5).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, StrictInt
from starlette.middleware.trustedhost import TrustedHostMiddleware

from srgan_tf.mos.store import Outcome
from srgan_tf.mos.study import ITEM_ID, RATER_ID, SCORE_LABELS, Study, new_rater_id, rating_order

STATIC = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_REFUSALS = {
    Outcome.UNKNOWN_RATER: 403,
    Outcome.NOT_CALIBRATED: 409,
    Outcome.NOT_ASSIGNED: 404,
    Outcome.DUPLICATE: 409,
    Outcome.OUT_OF_RANGE: 422,
}

RaterHeader = Annotated[str | None, Header(alias="X-Rater-Id")]


class ScoreIn(BaseModel):
    item_id: str = Field(pattern=ITEM_ID.pattern)
    score: StrictInt = Field(ge=1, le=5)  # strict: "5", 5.0 and true are refused, not coerced


def _read_static(name: str) -> bytes:
    path = STATIC / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the package was installed without its static files)")
    return path.read_bytes()


def create_app(study: Study, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The app serving `study`. Safe to serve from several threads (every store call is its own
    connection and transaction). With `allowed_hosts`, requests naming another Host are refused (400), which
    stops a web page from reaching a server on 127.0.0.1 through DNS rebinding."""
    app = FastAPI(title="srgan-tf MOS", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    page = _read_static("index.html")
    static = {name: _read_static(name) for name in _STATIC_TYPES}
    rating_items = study.rating_items()
    shuffler = random.SystemRandom()

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        if request.url.path.startswith("/api/") or request.url.path == "/":
            response.headers["Cache-Control"] = "no-store"
        return response

    def known_rater(rater_id: str | None) -> str:
        if not rater_id:
            raise HTTPException(401, "no rater id (X-Rater-Id header)")
        if not RATER_ID.match(rater_id) or study.store.rater(rater_id) is None:
            raise HTTPException(403, "unknown rater id")
        return rater_id

    def item_view(item_id: str) -> dict:
        return {"item_id": item_id, "image": f"/images/{item_id}.png"}

    def session_view(rater_id: str) -> dict:
        rater = study.store.rater(rater_id)
        progress = study.store.progress(rater_id)
        if rater is None or progress is None:
            raise HTTPException(403, "unknown rater id")
        view = {
            "calibrated": rater.calibrated_at is not None,
            "done": progress.done,
            "total": progress.total,
            "next": item_view(progress.next_item) if progress.next_item else None,
        }
        if rater.calibrated_at is None:
            view["calibration"] = [
                {**item_view(i.item_id), "score": i.reference_score, "label": SCORE_LABELS[i.reference_score]}
                for i in study.calibration_items()]
        return view

    @app.get("/", response_class=HTMLResponse)
    def index() -> Response:
        return HTMLResponse(page)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in static:
            raise HTTPException(404, "not found")
        return Response(static[name], media_type=_STATIC_TYPES[name])

    @app.get("/images/{name}")
    def image(name: str) -> Response:
        stem, dot, ext = name.partition(".")
        path = study.image_path(stem) if dot and ext == "png" else None
        if path is None or not path.is_file():
            raise HTTPException(404, "not found")
        # Bytes only: no Last-Modified or ETag, which could hint at the order the files were made in.
        return Response(path.read_bytes(), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/study")
    def study_info() -> dict:
        return {"study_id": study.study_id, "title": study.title, "items": len(rating_items),
                "calibration": len(study.calibration_items()), "labels": SCORE_LABELS}

    @app.post("/api/raters", status_code=201)
    def new_rater() -> dict:
        rater_id = new_rater_id()
        study.store.create_rater(rater_id, rating_order(rating_items, shuffler))
        return {"rater_id": rater_id, **session_view(rater_id)}

    @app.get("/api/session")
    def session(x_rater_id: RaterHeader = None) -> dict:
        return session_view(known_rater(x_rater_id))

    @app.post("/api/calibration")
    def calibration_done(x_rater_id: RaterHeader = None) -> dict:
        rater_id = known_rater(x_rater_id)
        study.store.mark_calibrated(rater_id)
        return session_view(rater_id)

    @app.post("/api/scores", status_code=201)
    def add_score(body: ScoreIn, x_rater_id: RaterHeader = None) -> JSONResponse:
        rater_id = known_rater(x_rater_id)
        outcome = study.store.add_score(rater_id, body.item_id, body.score)
        if outcome is not Outcome.STORED:
            raise HTTPException(_REFUSALS[outcome], outcome.value)
        return JSONResponse(session_view(rater_id), status_code=201)

    return app
