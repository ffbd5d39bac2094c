"""cvstyle in the browser: ``cvstyle serve``, or ``create_app()`` for any ASGI server.

Needs the ``web`` extra (``.venv/bin/pip install -e '.[web]'``). Modules: :mod:`.app`
wires the application; :mod:`.models` the offered styles, :mod:`.pool` the worker
pool, :mod:`.middleware` the upload limit and request log, :mod:`.routes` the HTTP
API, :mod:`.page` the browser page.
"""

from .app import create_app
from .models import WebModel, default_models, file_model

__all__ = ["WebModel", "create_app", "default_models", "file_model"]
