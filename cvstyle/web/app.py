"""The browser app and its HTTP API: ``create_app()`` builds the FastAPI application.

Clients only ever name a model from the server's list (``GET /api/models``); the file
behind each name is decided here. Decoding, inference and encoding run on a bounded
pool of worker threads, with a bounded number of jobs allowed to wait: past that the
server answers 503 with Retry-After rather than queueing without limit. Uploads are
held in memory (and in Starlette's self-deleting spool files); the app writes no file.
"""

# No "from __future__ import annotations": FastAPI must evaluate the form fields'
# annotations, which refer to create_app's arguments.
import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__, presets, store
from ..catalogue import load_catalogue
from ..engines import ENGINES
from ..errors import CvstyleError, ImageError, ModelError
from ..imageio import Picture, decode_image, encode_image
from ..modelinfo import model_family
from ..stylizer import Stylizer

log = logging.getLogger("cvstyle.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREVIEW_SAMPLE = STATIC_DIR / "preview-sample.jpg"  # crop of samples/astronaut.png (public domain)
MIN_SIZE = 64
JPEG_QUALITY = 92
# Multipart boundaries and the small form fields around the image.
FORM_OVERHEAD_BYTES = 64 * 1024
# A model name as the catalogue spells it (family/name) or a bare built-in name. Parts
# start with a letter or digit, so "..", "/etc" and "~" can never match.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
_CSP = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"

T = TypeVar("T")


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class WebModel:
    """One style the server offers: the name clients send, and what it stands for here."""

    name: str
    title: str
    family: str
    source: str  # catalogue name or server-side file path, given to Stylizer; never shown
    input_format: str | None = None  # for a file: its pre-processing preset (None: vgg)


def default_models(manifest: str | os.PathLike | None = None) -> list[WebModel]:
    """The built-in sketch, then every catalogue model (downloaded or not)."""
    models = [WebModel("sketch", "Pencil sketch (built-in)", "builtin", "sketch")]
    models += [
        WebModel(entry.name, entry.title or entry.short_name, entry.family, entry.name)
        for entry in load_catalogue(manifest)
    ]
    return models


def file_model(
    path: str | os.PathLike, name: str | None = None, title: str | None = None,
    input_format: str | None = None,
) -> WebModel:
    """Offer a server-side `.t7` or `.onnx` file, by default as ``local/<stem>``;
    ``input_format`` is the preset it takes (see :mod:`cvstyle.presets`; default vgg)."""
    path = Path(path).resolve()
    name = name or f"local/{path.stem}"
    if not _NAME.fullmatch(name):
        raise CvstyleError(f"{name!r} is not a usable model name (letters, digits, _ . - and one /)")
    if input_format is not None:
        presets.preset(input_format)  # refused now, not on the first request
    return WebModel(
        name, title or path.stem.replace("_", " "), model_family(path), str(path), input_format
    )


class ModelRegistry:
    """The offered models by name; each Stylizer is built once, on first use, and kept."""

    def __init__(
        self, models: Iterable[WebModel], device: str, manifest: str | os.PathLike | None,
        engine: str = "auto",
    ):
        self.models = {model.name: model for model in models}
        self.device = device
        self.engine = engine
        self.manifest = manifest
        self._stylizers: dict[str, Stylizer] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str) -> WebModel:
        """The model a client named; HTTP errors for paths and unknown names."""
        if not _NAME.fullmatch(name):
            raise HTTPException(
                422, f"model must be a style name from GET /api/models, not {_shown(name)}"
            )
        if name not in self.models:
            raise HTTPException(404, f"unknown model {_shown(name)} (GET /api/models lists the styles)")
        return self.models[name]

    def available(self, model: WebModel) -> bool:
        try:
            store.resolve_model(model.source, self.manifest)
        except ModelError:
            return False
        return True

    def stylizer(self, model: WebModel) -> Stylizer:
        # Runs on a worker thread; the lock makes concurrent first requests load once.
        with self._lock:
            if model.name not in self._stylizers:
                stylizer = Stylizer(
                    model.source, self.device, self.manifest, self.engine, model.input_format
                )
                log.info("model %s loaded: %s on %s", model.name, stylizer.engine, stylizer.device)
                self._stylizers[model.name] = stylizer
            return self._stylizers[model.name]


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ---------------------------------------------------------------- worker pool


class Busy(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"server busy, retry in {retry_after} s")
        self.retry_after = retry_after


class WorkerPool:
    """``workers`` threads, with at most ``queue_size`` admitted jobs waiting for one.

    Admission runs on the event loop's thread only, so a plain counter is safe there;
    it drops when the job itself finishes (not when its caller stops waiting), so a
    client that disconnects cannot make the pool over-admit.
    """

    def __init__(self, workers: int, queue_size: int):
        if workers < 1 or queue_size < 0:
            raise ValueError("need at least one worker and a queue size of zero or more")
        self.workers = workers
        self.capacity = workers + queue_size
        self.pending = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="cvstyle-web")
        self._mean_seconds = 1.0  # running mean of a job's own run time, for Retry-After

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: one job's usual run time."""
        return max(1, math.ceil(self._mean_seconds))

    async def run(self, job: Callable[[], T], admit: bool = True) -> T:
        """Run ``job`` on a worker; with ``admit``, raise :class:`Busy` instead of over-queueing.

        ``admit=False`` is for the bounded set of preview jobs, which must not be refused.
        """
        if admit and self.pending >= self.capacity:
            raise Busy(self.retry_after())
        loop = asyncio.get_running_loop()
        future: Future[T] = self._executor.submit(self._timed, job)
        if admit:
            self.pending += 1
            future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(future)

    def _timed(self, job: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return job()
        finally:  # an unlocked update from several threads: an estimate is all it needs
            self._mean_seconds += 0.2 * (time.perf_counter() - start - self._mean_seconds)

    def _release(self) -> None:
        self.pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- middleware


class UploadLimit:
    """413 for request bodies over ``limit`` bytes, read or declared, before any parsing."""

    def __init__(self, app: ASGIApp, limit: int, message: str):
        self.app = app
        self.limit = limit
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        received = 0

        async def counted() -> Message:
            # For chunked uploads, which declare no length.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self.message)  # FastAPI re-raises it from body parsing
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Close the connection: the unread body must not be taken as the next request.
        response = JSONResponse({"detail": self.message}, 413, headers={"Connection": "close"})
        await response(scope, receive, send)


class RequestLog:
    """One log line per request: client, method, path, status, time, and the handler's note."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # if the app fails before answering

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            client = scope.get("client") or ("-", 0)
            note = scope.get("state", {}).get("log_note", "")
            log.info(
                "%s %s %s %d %.0fms%s", client[0], scope["method"], scope["path"], status,
                (time.perf_counter() - start) * 1000, f" {note}" if note else "",
            )


# ---------------------------------------------------------------- the app


def create_app(
    models: Sequence[WebModel] | None = None,
    workers: int = 2,
    queue_size: int = 8,
    max_upload_bytes: int = 20_000_000,
    max_size: int = 2048,
    max_pixels: int = 50_000_000,
    device: str = "auto",
    manifest: str | os.PathLike | None = None,
    engine: str = "auto",
) -> FastAPI:
    """The web app.

    ``models``: the styles offered (default: :func:`default_models`). ``workers``:
    threads running jobs; ``queue_size``: jobs allowed to wait for one (then 503).
    ``max_upload_bytes``: larger uploads get 413. ``max_size``: the largest processing
    size (longer side, pixels); larger photos are scaled down to it. ``max_pixels``:
    larger images are refused before decoding. ``device`` and ``engine`` (``auto``,
    ``opencv`` or ``onnxruntime``): where networks run.
    """
    if engine not in ENGINES:  # now, not on every request
        raise CvstyleError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    registry = ModelRegistry(
        models if models is not None else default_models(manifest), device, manifest, engine
    )
    pool = WorkerPool(workers, queue_size)
    previews: dict[str, asyncio.Task[bytes]] = {}

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
    too_large = f"upload too large: the limit is {max_upload_bytes / 1e6:.3g} MB"
    app.add_middleware(
        UploadLimit,
        limit=max_upload_bytes + FORM_OVERHEAD_BYTES,
        message=too_large,
    )
    app.add_middleware(RequestLog)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

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

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": _CSP})

    @app.get("/health", summary="Liveness and load")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "workers": pool.workers,
            "capacity": pool.capacity,
            "pending": pool.pending,
        }

    @app.get("/api/settings", summary="Limits the page needs to know")
    async def settings() -> dict[str, int]:
        return {"max_upload_bytes": max_upload_bytes, "max_size": max_size, "min_size": MIN_SIZE}

    @app.get("/api/models", summary="The styles this server offers")
    def list_models() -> list[dict[str, Any]]:
        # A plain def: FastAPI runs it on a thread, as the store may hash files.
        return [
            {
                "name": model.name,
                "title": model.title,
                "family": model.family,
                "available": registry.available(model),
                "preview": f"/api/models/{model.name}/preview.jpg",
            }
            for model in registry.models.values()
        ]

    @app.get(
        "/api/models/{name:path}/preview.jpg",
        summary="The style applied to a bundled sample photo",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def preview(name: str) -> Response:
        model = registry.lookup(name)
        if name not in previews:  # one task per model, whoever asks while it runs
            previews[name] = asyncio.ensure_future(
                pool.run(lambda: _make_preview(registry, model), admit=False)
            )
        try:
            data = await asyncio.shield(previews[name])
        except Exception as error:
            previews.pop(name, None)  # a model downloaded later gets its preview then
            if isinstance(error, ModelError):
                raise HTTPException(409, str(error)) from None
            raise
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post(
        "/api/stylize",
        summary="Paint a photo in a style",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "The painted photo as JPEG"},
            400: {"description": "Not an image, or a corrupt one"},
            404: {"description": "Unknown model"},
            409: {"description": "Model known but not downloaded on this server"},
            413: {"description": "Upload too large"},
            422: {"description": "Invalid field (a path as model name, size, strength)"},
            503: {"description": "Queue full; see Retry-After"},
        },
    )
    async def stylize(
        request: Request,
        image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, BMP or TIFF")],
        model: Annotated[str, Form(description="A style name from GET /api/models")],
        size: Annotated[
            int | None,
            Form(
                ge=MIN_SIZE, le=max_size,
                description="Longer side of the result in pixels (scaling up or down); "
                "default: the photo's own, up to the server's maximum",
            ),
        ] = None,
        preserve_colors: Annotated[bool, Form(description="Keep the photo's colours")] = False,
        strength: Annotated[float, Form(ge=0, le=1, description="0 = the photo, 1 = the full style")] = 1.0,
    ) -> Response:
        chosen = registry.lookup(model)
        data = await image.read()
        if len(data) > max_upload_bytes:  # the middleware's limit includes the form around it
            raise HTTPException(413, too_large)
        filename = image.filename or "photo"
        request.state.log_note = f"model={chosen.name} size={size or '-'} bytes={len(data)}"

        def job() -> bytes:
            picture = decode_image(data, _display_name(filename), max_pixels)
            bgr = _flatten(picture)
            longer = min(size or max(bgr.shape[:2]), max_size)
            painted = registry.stylizer(chosen).stylize(
                bgr, size=longer, preserve_colors=preserve_colors, strength=strength
            )
            return encode_image(Picture(painted), ".jpg", JPEG_QUALITY)

        try:
            result = await pool.run(job)
        except ImageError as error:
            raise HTTPException(400, str(error)) from None
        except ModelError as error:
            raise HTTPException(409, str(error)) from None
        except CvstyleError as error:
            raise HTTPException(422, str(error)) from None
        download = download_name(filename, chosen.name)
        return Response(
            result,
            media_type="image/jpeg",
            headers={
                "Content-Disposition": f"inline; filename=\"{_ascii(download)}\"; "
                f"filename*=UTF-8''{quote(download)}"
            },
        )

    return app


def _make_preview(registry: ModelRegistry, model: WebModel) -> bytes:
    picture = decode_image(PREVIEW_SAMPLE.read_bytes(), PREVIEW_SAMPLE.name)
    return encode_image(Picture(registry.stylizer(model).stylize(picture.bgr)), ".jpg", 85)


def _flatten(picture: Picture) -> np.ndarray:
    """Colour over white where the photo is transparent: the result is a JPEG, and the
    colour stored under transparent pixels is arbitrary."""
    if picture.alpha is None:
        return picture.bgr
    alpha = picture.alpha[..., None].astype(np.float32) / 255
    return np.rint(picture.bgr * alpha + 255 * (1 - alpha)).astype(np.uint8)


def _display_name(filename: str) -> str:
    # Only the last part of what the client calls its file, for messages and downloads.
    return re.split(r"[\\/]", filename)[-1] or "photo"


def download_name(filename: str, model_name: str) -> str:
    """``<photo stem>_<style>.jpg``, as ``cvstyle apply`` names its outputs."""
    stem = Path(_display_name(filename)).stem[:100]  # a header, not a novel
    stem = "".join(c for c in stem if unicodedata.category(c)[0] != "C" and c not in '"') or "photo"
    return f"{stem}_{model_name.rpartition('/')[2]}.jpg"


def _ascii(name: str) -> str:
    return name.encode("ascii", "replace").decode().replace("?", "_")


# ---------------------------------------------------------------- running it


@contextlib.contextmanager
def running_server(app: ASGIApp, host: str = "127.0.0.1", timeout: float = 10) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a background thread; yield its URL.

    For tests, notebooks and benchmarks. The server stops when the block ends.
    """
    import uvicorn

    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        listener.close()
