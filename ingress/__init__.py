"""The ingress: the HTTPS endpoint Agora's NCS calls for every Cloud Recording event.

Verify the signature over the raw bytes, store the raw body in Redis in one round
trip, and only then answer ``200 {}``; ``503`` with ``Retry-After`` when Redis cannot
take it. Build the WSGI app with ``agora_callbacks.ingress.app.create_app``; the production server
(granian's ASGI interface) loads ``agora_callbacks.ingress.asgi:app``, the same app behind a
deadline on request bodies (``body_deadline``); ``agora_callbacks.ingress.wsgi:app`` serves it
to a WSGI server.
"""
