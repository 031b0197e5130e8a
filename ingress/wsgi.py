"""The WSGI app of the production server, built from the environment at import:
``gunicorn ingress.wsgi:app`` / ``granian --interface wsgi ingress.wsgi:app``."""

from __future__ import annotations

from agora_callbacks.ingress.app import create_app

app = create_app()
