"""``cvstyle serve``: the browser app (needs the ``web`` extra)."""

from __future__ import annotations

import logging

import click

from ..errors import CvstyleError
from . import cli
from .options import device_option, engine_option, input_format_option, manifest_option, precision_option

WEB_EXTRA_MESSAGE = "the web app needs FastAPI and uvicorn: pip install -e '.[web]'"


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; 0.0.0.0 opens it to the network (there is no login).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Photos processed at once.")
@click.option("--queue-size", type=click.IntRange(min=0), default=8, show_default=True, help="Photos allowed to wait for a worker; more get 503 with Retry-After.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.1), default=20.0, show_default=True, help="Larger uploads get 413.")
@click.option("--max-size", type=click.IntRange(min=64), default=2048, show_default=True, help="Largest processing size (longer side, pixels).")
@click.option("--max-image-mb", type=click.FloatRange(min=1), default=200.0, show_default=True, help="Memory one photo's decoded pixels may take (width x height x bytes per pixel); larger photos get 400.")
@click.option("--max-connections", type=click.IntRange(min=1), default=None, help="Open connections held at once (default 1000); past it, those waiting longest without a request are closed.")
@click.option("--header-timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds a client has to send a request's head (default 10).")
@click.option("--body-timeout", type=click.FloatRange(min=0.1), default=None, help="Seconds an upload may pause (default 30).")
@device_option
@engine_option
@precision_option
@manifest_option
@click.option(
    "--model-file", "model_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
    help="Also offer this .t7 or .onnx file, as local/<file stem>. Repeatable.",
)
@input_format_option
def serve_command(
    host, port, workers, queue_size, max_upload_mb, max_size, max_image_mb, max_connections, header_timeout,
    body_timeout, device, engine, precision, manifest, model_files, input_format,
):
    """Serve the browser app: upload a photo, pick a style, download the painting."""
    try:
        import uvicorn  # noqa: F401  (checked first: the web extra is FastAPI and uvicorn)

        from ..web import create_app, default_models, file_model
        from ..web.connections import ConnectionLimits
        from ..web.server import serve
    except ImportError:
        raise CvstyleError(WEB_EXTRA_MESSAGE) from None
    models = default_models(manifest) + [
        file_model(path, input_format=input_format) for path in model_files
    ]
    app = create_app(
        models=models, workers=workers, queue_size=queue_size,
        max_upload_bytes=int(max_upload_mb * 1e6), max_size=max_size,
        max_image_bytes=int(max_image_mb * 1e6), device=device,
        manifest=manifest, engine=engine, precision=precision,
    )
    given = {
        "max_connections": max_connections, "header_timeout": header_timeout,
        "body_timeout": body_timeout,
    }
    limits = ConnectionLimits(**{name: value for name, value in given.items() if value is not None})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(app, host, port, limits)
