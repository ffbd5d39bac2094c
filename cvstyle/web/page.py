"""The browser page: ``/`` with its Content-Security-Policy, and the files under ``/static``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREVIEW_SAMPLE = STATIC_DIR / "preview-sample.jpg"  # crop of samples/astronaut.png (public domain)
CSP = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": CSP})
