"""The ASGI app of the production server, built from the environment at import:
``granian --interface asgi agora_callbacks.ingress.asgi:app``, what
``agora-callbacks web`` runs (``asgi_app.create_asgi_app``: the Flask app behind a
deadline on request bodies). ``agora_callbacks.ingress.wsgi:app`` is the same Flask
app for a WSGI server, without that deadline.
"""

from __future__ import annotations

from agora_callbacks.ingress.asgi_app import create_asgi_app

app = create_asgi_app()
