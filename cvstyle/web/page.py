"""The browser page: ``/`` with its Content-Security-Policy, its icon, and the files under
``/static``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
FAVICON = STATIC_DIR / "favicon.ico"
PREVIEW_SAMPLE = STATIC_DIR / "preview-sample.jpg"  # crop of samples/astronaut.png (public domain)
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": CSP})


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(FAVICON, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})
