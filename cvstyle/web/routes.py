"""The HTTP API: health, settings, the model list and previews, and ``POST /api/stylize``.

Handlers find the server's models, pool and limits in ``app.state.services``
(:class:`Services`, set by :func:`cvstyle.web.create_app`).
"""

# No "from __future__ import annotations": FastAPI must evaluate the form fields'
# annotations, which refer to stylize_endpoint's argument.
import asyncio
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response

from .. import __version__
from ..errors import CvstyleError, ImageError, ModelError
from ..imageio import Picture, decode_image, encode_image
from .models import Choice, ModelRegistry
from .page import PREVIEW_SAMPLE
from .pool import WorkerPool

MIN_SIZE = 64
JPEG_QUALITY = 92
FLATTEN_ROWS = 256


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_upload_bytes: int
    max_size: int  # longest processing side, pixels
    max_pixels: int  # larger images are refused before decoding
    max_image_bytes: int  # so are images whose decoded pixels would take more memory

    @property
    def too_large(self) -> str:
        return f"upload too large: the limit is {self.max_upload_bytes / 1e6:.3g} MB"


@dataclass
class Services:
    """Everything the handlers share: the offered models, the worker pool, the limits."""

    registry: ModelRegistry
    pool: WorkerPool
    limits: Limits
    previews: dict[str, "asyncio.Task[bytes]"] = field(default_factory=dict)


def services(request: Request) -> Services:
    return request.app.state.services


Shared = Annotated[Services, Depends(services)]
router = APIRouter()


@router.get("/health", summary="Liveness and load")
async def health(shared: Shared) -> dict[str, Any]:
    pool = shared.pool
    return {
        "status": "ok",
        "version": __version__,
        "workers": pool.workers,
        "capacity": pool.capacity,
        "pending": pool.pending,
    }


@router.get("/api/settings", summary="Limits the page needs to know")
async def settings(shared: Shared) -> dict[str, int]:
    limits = shared.limits
    return {"max_upload_bytes": limits.max_upload_bytes, "max_size": limits.max_size, "min_size": MIN_SIZE}


@router.get("/api/models", summary="The styles this server offers")
def list_models(shared: Shared) -> list[dict[str, Any]]:
    # A plain def: FastAPI runs it on a thread, as the store may hash files.
    registry = shared.registry
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


@router.get(
    "/api/models/{name:path}/preview.jpg",
    summary="The style applied to a bundled sample photo",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def preview(name: str, shared: Shared) -> Response:
    choice = Choice(((shared.registry.lookup(name), 1.0),))
    name = choice.name  # a short name shares the full name's preview
    previews = shared.previews
    if name not in previews:  # one task per model, whoever asks while it runs
        previews[name] = asyncio.ensure_future(
            shared.pool.run(lambda: make_preview(shared.registry, choice), admit=False)
        )
    try:
        data = await asyncio.shield(previews[name])
    except Exception as error:
        previews.pop(name, None)  # a model downloaded later gets its preview then
        if isinstance(error, ModelError):
            raise HTTPException(409, shared.registry.public_message(choice, error)) from None
        raise
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


STYLIZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}, "description": "The painted photo as JPEG"},
    400: {"description": "Not an image, or a corrupt one"},
    404: {"description": "Unknown model"},
    409: {"description": "Model known but not downloaded on this server"},
    413: {"description": "Upload too large"},
    422: {"description": "Invalid field (a path as model name, size, strength)"},
    503: {"description": "Queue full; see Retry-After"},
}


def stylize_endpoint(max_size: int) -> Callable[..., Awaitable[Response]]:
    """``POST /api/stylize``, its form fields bounded by the server's ``max_size``."""

    async def stylize(
        request: Request,
        shared: Shared,
        image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP, BMP or TIFF")],
        model: Annotated[
            str,
            Form(description="A style name from GET /api/models (or its short name, as the CLI "
                 "takes it), or a mix such as sketch:0.5+candy:0.5"),
        ],
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
        chosen = shared.registry.resolve(model)
        data = await image.read()
        if len(data) > shared.limits.max_upload_bytes:  # the middleware's limit includes the form
            raise HTTPException(413, shared.limits.too_large)
        filename = image.filename or "photo"
        request.state.log_note = f"model={chosen.name} size={size or '-'} bytes={len(data)}"
        try:
            result = await shared.pool.run(
                lambda: paint_upload(shared, chosen, data, filename, size, preserve_colors, strength)
            )
        except ImageError as error:
            raise HTTPException(400, str(error)) from None
        except ModelError as error:
            raise HTTPException(409, shared.registry.public_message(chosen, error)) from None
        except CvstyleError as error:
            raise HTTPException(422, shared.registry.public_message(chosen, error)) from None
        download = download_name(filename, chosen.short_name)
        return Response(
            result,
            media_type="image/jpeg",
            headers={
                "Content-Disposition": f"inline; filename=\"{_ascii(download)}\"; "
                f"filename*=UTF-8''{quote(download)}"
            },
        )

    return stylize


def paint_upload(
    shared: Services, choice: Choice, data: bytes, filename: str, size: int | None,
    preserve_colors: bool, strength: float,
) -> bytes:
    """The uploaded photo painted and encoded as JPEG; runs on a worker thread."""
    limits = shared.limits
    picture = decode_image(data, display_name(filename), limits.max_pixels, limits.max_image_bytes)
    bgr = flatten(picture)
    longer = min(size or max(bgr.shape[:2]), limits.max_size)
    painted = shared.registry.stylizer(choice).stylize(
        bgr, size=longer, preserve_colors=preserve_colors, strength=strength
    )
    return encode_image(Picture(painted), ".jpg", JPEG_QUALITY)


def make_preview(registry: ModelRegistry, choice: Choice) -> bytes:
    picture = decode_image(PREVIEW_SAMPLE.read_bytes(), PREVIEW_SAMPLE.name)
    return encode_image(Picture(registry.stylizer(choice).stylize(picture.bgr)), ".jpg", 85)


def flatten(picture: Picture) -> np.ndarray:
    """Colour over white where the photo is transparent: the result is a JPEG, and the
    colour stored under transparent pixels is arbitrary."""
    if picture.alpha is None:
        return picture.bgr
    flat = np.empty_like(picture.bgr)
    for top in range(0, flat.shape[0], FLATTEN_ROWS):  # in bands: the float copies stay small
        rows = slice(top, top + FLATTEN_ROWS)
        alpha = picture.alpha[rows, :, None].astype(np.float32) / 255
        flat[rows] = np.rint(picture.bgr[rows] * alpha + 255 * (1 - alpha))
    return flat


def display_name(filename: str) -> str:
    """Only the last part of what the client calls its file, for messages and downloads."""
    return re.split(r"[\\/]", filename)[-1] or "photo"


def download_name(filename: str, style: str) -> str:
    """``<photo stem>_<style>.jpg``, as ``cvstyle apply`` names its outputs."""
    stem = Path(display_name(filename)).stem[:100]  # a header, not a novel
    stem = "".join(c for c in stem if unicodedata.category(c)[0] != "C" and c not in '"') or "photo"
    return f"{stem}_{style}.jpg"


def _ascii(name: str) -> str:
    return name.encode("ascii", "replace").decode().replace("?", "_")
