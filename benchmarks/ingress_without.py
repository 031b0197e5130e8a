"""The real ingress with parts of its per-request work taken out, for
``bench_ingress_costs.py`` only: ``INGRESS_WITHOUT`` (comma-separated) names what to
skip: ``log`` (the route's log lines), ``metrics`` (every ingress counter and the
timing histogram), ``store`` (the XADD: the body is not stored, the answer is still
200). What a part costs is the CPU it saves when taken out. Never serve this.
"""

from __future__ import annotations

import os
from typing import Any

from agora_callbacks import metrics
from agora_callbacks.ingress import inbox_writer, routes

WITHOUT = {part.strip() for part in os.environ.get("INGRESS_WITHOUT", "").split(",")
           if part.strip()}


class _Nothing:
    """Accepts any call (logger methods, metric ``labels``/``inc``/``observe``)."""

    def __getattr__(self, _name: str) -> Any:
        return self

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        return self


if "log" in WITHOUT:
    routes.log = _Nothing()
if "metrics" in WITHOUT:
    for _name in dir(metrics):
        if _name.startswith("INGRESS_"):
            setattr(metrics, _name, _Nothing())
    metrics.tallied = metrics.tallied_histogram = _Nothing()  # type: ignore[assignment]
    routes._RECEIVED = routes._STORED = _Nothing()  # type: ignore[assignment]
    routes._VERIFIED = {name: _Nothing() for name in routes._VERIFIED}  # type: ignore[misc]
if "store" in WITHOUT:
    inbox_writer.InboxWriter.store = lambda self, body, meta: "0-0"  # type: ignore[method-assign]

from agora_callbacks.ingress.wsgi import app  # noqa: E402  (after the parts are taken out)

__all__ = ["app"]
