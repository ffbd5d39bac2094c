"""``create_app()``: the FastAPI application wired from its parts.

The model registry (:mod:`.models`), the worker pool (:mod:`.pool`), the middleware
(:mod:`.middleware`), the API (:mod:`.routes`) and the page (:mod:`.page`). Uploads
are held in memory (and in Starlette's self-deleting spool files); the app writes no
file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..engines import ENGINES, PRECISIONS
from ..errors import unknown_choice
from . import page, routes
from .middleware import RequestLog, SecurityHeaders, UploadLimit
from .models import ModelRegistry, WebModel, default_models
from .pool import Busy, WorkerPool

log = logging.getLogger("cvstyle.web")

# Multipart boundaries and the small form fields around the image.
FORM_OVERHEAD_BYTES = 64 * 1024


def create_app(
    models: Sequence[WebModel] | None = None,
    workers: int = 2,
    queue_size: int = 8,
    max_upload_bytes: int = 20_000_000,
    max_size: int = 2048,
    max_pixels: int = 50_000_000,
    max_image_bytes: int = 200_000_000,
    device: str = "auto",
    manifest: str | os.PathLike | None = None,
    engine: str = "auto",
    precision: str = "exact",
) -> FastAPI:
    """The web app.

    ``models``: the styles offered (default: :func:`default_models`). ``workers``:
    threads running jobs; ``queue_size``: jobs allowed to wait for one (then 503).
    ``max_upload_bytes``: larger uploads get 413. ``max_size``: the largest processing
    size (longer side, pixels); larger photos are scaled down to it. ``max_pixels``:
    larger images are refused before decoding. ``max_image_bytes``: so are images whose
    decoded pixels would take more memory than this (16-bit and alpha samples count
    in full; the default takes any 8-bit photo under ``max_pixels``). ``device`` and ``engine`` (``auto``,
    ``opencv``, ``onnxruntime`` or ``openvino``): where networks run; ``precision``:
    ``exact`` or ``fast`` (:class:`~cvstyle.Stylizer`).
    """
    if engine not in ENGINES:  # now, not on every request
        raise unknown_choice("engine", engine, ENGINES)
    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, PRECISIONS)
    registry = ModelRegistry(
        models if models is not None else default_models(manifest), device, manifest, engine, precision
    )
    pool = WorkerPool(workers, queue_size)
    limits = routes.Limits(max_upload_bytes, max_size, max_pixels, max_image_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()

    app = FastAPI(
        title="cvstyle",
        version=__version__,
        description="Turn photos into paintings with fast neural style transfer.",
        lifespan=lifespan,
    )
    app.state.services = routes.Services(registry, pool, limits)
    app.add_middleware(
        UploadLimit, limit=max_upload_bytes + FORM_OVERHEAD_BYTES, message=limits.too_large
    )
    app.add_middleware(RequestLog)
    app.add_middleware(SecurityHeaders)  # outermost: on every response, errors included
    add_error_handlers(app)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    app.include_router(routes.router)
    app.add_api_route(
        "/api/stylize", routes.stylize_endpoint(max_size), methods=["POST"],
        summary="Paint a photo in a style", response_class=Response,
        responses=routes.STYLIZE_RESPONSES,
    )
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error a client can get is JSON ``{"detail": "<one line>"}``."""

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        # The page shows "detail" as is: one readable line instead of pydantic's list.
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'] if part != 'body')}: {problem['msg']}"
            for problem in error.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, 422)

    @app.exception_handler(Busy)
    async def busy(_: Request, error: Busy) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{error}: the server is working on as many photos as it can take"},
            503,
            headers={"Retry-After": str(error.retry_after)},
        )

    @app.exception_handler(Exception)
    async def internal_error(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return JSONResponse({"detail": "internal server error (see the server log)"}, 500)
