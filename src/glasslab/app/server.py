"""The workbench's FastAPI app: the JSON API under /api, the front-end at / and /static.

``create_app`` takes an already-loaded Model (tests hand it a tiny one; ``glasslab serve`` loads the
model first, showing progress, then starts the app), so building the app never touches the network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..cluster import ClusterSpec
from ..errors import GlasslabError
from ..model.model import Model
from . import (
    analysis,
    explanations,
    graphs,
    interventions,
    sae_precompute,
    sae_search,
    sae_training,
    saes,
    transcoder_training,
)
from .declared import endpoints
from .experiments import ExperimentStore
from .experiments import router as experiments_router
from .jobs import JobManager, TooManyJobs
from .models import router as models_router
from .ops import Limits, NotFound, Services
from .routes import describe, operation_router
from .sae_training import sae_training_plan
from .security import Guard, without_paths
from .state import Busy, Cancelled, ModelState

STATIC = Path(__file__).parent / "static"
OPERATIONS = endpoints(
    [
        *analysis.OPERATIONS,
        *interventions.OPERATIONS,
        *saes.OPERATIONS,
        *sae_search.OPERATIONS,
        *sae_precompute.OPERATIONS,
        *sae_training.OPERATIONS,
        *graphs.OPERATIONS,
        *transcoder_training.OPERATIONS,
    ]
)
NOT_BUILT = """<!doctype html><html lang="en"><meta charset="utf-8"><title>glasslab</title>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>glasslab is running, but its front-end is not built</h1>
<p>The page <code>src/glasslab/app/static/index.html</code> is missing from this installation.
The JSON API works: see <a href="/api/openapi.json">/api/openapi.json</a>.</p></body></html>"""


def create_app(
    model: Model,
    *,
    source: str = "default",
    token: str | None = None,
    hosts: Sequence[str] = (),
    model_roots: Sequence[str | Path] = (),
    limits: Limits | None = None,
    experiments_db: str | Path | None = None,
    cache_results: bool = True,
    wait_s: float = 300.0,
    sae_training: dict | None = None,
    cluster: ClusterSpec | None = None,
    static_dir: Path = STATIC,
) -> FastAPI:
    """The app serving ``model``.

    ``token``: required on every request when given (needed when binding off loopback). ``hosts``: extra
    Host names accepted besides loopback (the bound address). ``model_roots``: local folders clients may
    load models from. ``experiments_db``: the SQLite file (default: ``experiments.sqlite`` in the store).
    ``cache_results=False`` recomputes every request, forward pass included (tests of isolation).
    ``wait_s``: how long a request waits for a busy model before a 503. ``sae_training``: the sizes the
    workbench proposes when it trains an SAE for a layer (fields of the sae-train request; default:
    ``WORKBENCH_TRAINING``). ``cluster``: the Ray cluster a request may ask its long jobs to run on
    (``on_cluster``); it is connected to only when such a job runs, and no request can name another.
    """
    app = FastAPI(
        title="glasslab",
        summary="Look inside a language model and change it: the workbench's JSON API.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,  # the Swagger page loads its scripts from a CDN; the spec alone stays offline
        redoc_url=None,
    )
    app.state.glasslab = Services(
        state=ModelState(model, source, wait_s=wait_s, cached_runs=2 if cache_results else 0),
        jobs=JobManager(),
        limits=limits or Limits(),
        model_roots=[Path(r).expanduser().resolve() for r in model_roots],
        experiments=ExperimentStore(experiments_db),
        cache_results=cache_results,
        sae_training=sae_training_plan(sae_training or {}),
        cluster=cluster if cluster is not None and cluster.distributed else None,
    )
    app.include_router(models_router)
    app.include_router(explanations.router)
    app.include_router(operation_router(OPERATIONS))
    app.include_router(interventions.router)
    app.include_router(saes.router)
    app.include_router(experiments_router)
    _errors(app)
    _front_end(app, static_dir)
    app.add_middleware(Guard, hosts=hosts, token=token)
    return app


class ErrorResponse(JSONResponse):
    """``{"error": ...}`` as ASCII JSON: a message may quote the client's input, whatever characters it holds."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error(status: int, message: str, headers: dict | None = None, **extra) -> ErrorResponse:
    return ErrorResponse({"error": without_paths(message), **extra}, status_code=status, headers=headers)


def _errors(app: FastAPI) -> None:
    """Every error as ``{"error": one line}``: the app's own, and Starlette's (unknown route 404, wrong method
    405 with its ``Allow``), validation (422), and a bug (500, without its details)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        errors = exc.errors()
        safe = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in errors]
        return error(422, describe(errors), details=safe)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.url.path} (GET /api/openapi.json lists them)"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "another method")
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            message = "the body could not be parsed (not JSON, or nested too deeply): send a JSON object"
        return error(exc.status_code, message, headers=exc.headers)

    @app.exception_handler(GlasslabError)
    async def glasslab_error(_request: Request, exc: GlasslabError):
        if isinstance(exc, Busy):
            return error(503, str(exc), headers={"Retry-After": "2"})
        status = {TooManyJobs: 429, Cancelled: 409, NotFound: 404}.get(type(exc), 400)
        return error(status, str(exc))

    @app.exception_handler(Exception)
    async def bug(_request: Request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def _front_end(app: FastAPI, static_dir: Path) -> None:
    @app.get("/", include_in_schema=False)
    def index():
        page = static_dir / "index.html"
        if not page.is_file():
            return HTMLResponse(NOT_BUILT, status_code=200)
        return FileResponse(page, headers={"Cache-Control": "no-store"})

    if static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=static_dir), name="static")
