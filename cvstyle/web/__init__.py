"""cvstyle in the browser: ``cvstyle serve``, or ``create_app()`` for any ASGI server.

Needs the ``web`` extra: ``pip install 'cvstyle[web]'``.
"""

from .app import WebModel, create_app, default_models, file_model, running_server

__all__ = ["WebModel", "create_app", "default_models", "file_model", "running_server"]
