"""The WSGI app, built from the environment at import, for a WSGI server:
``gunicorn agora_callbacks.ingress.wsgi:app`` /
``granian --interface wsgi agora_callbacks.ingress.wsgi:app``.

``agora-callbacks web`` serves ``agora_callbacks.ingress.asgi:app`` instead: the same
app behind a deadline on request bodies (``BODY_READ_TIMEOUT_S``). Served from here,
that deadline is the server's job (or a buffering proxy's in front of it): a client
that sends a well-formed signature header and then stalls its body holds a request
thread for as long as the server lets it (README, "Slow clients").
"""

from __future__ import annotations

from agora_callbacks.ingress.app import create_app

app = create_app()
