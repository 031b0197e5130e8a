"""``agora-callbacks web``: the ingress on its production server, granian's ASGI
interface (``agora_callbacks.ingress.asgi:app``: the Flask app on threads, behind a
deadline on request bodies).

Reads the settings from the environment first, so a bad or missing variable stops
here with a message naming it, before any server process starts. Then prepares
prometheus_client's multi-process directory (granian's workers are separate
processes) and replaces itself with granian (``exec``): SIGTERM / SIGINT reach the
server directly, which stops accepting, finishes the requests in flight and exits.

Why granian, why ASGI and how many threads: README, "Ingress: server choice and
figures".
"""

from __future__ import annotations

import os
import shutil
import sys

import click

from agora_callbacks import logs
from agora_callbacks.errors import ConfigError
from agora_callbacks.metrics_dir import ensure_multiproc_dir
from agora_callbacks.settings import Settings

APP = "agora_callbacks.ingress.asgi:app"
#: The Flask app itself, for ``WEB_INTERFACE=wsgi`` (no body deadline).
WSGI_APP = "agora_callbacks.ingress.wsgi:app"


def server_argv(settings: Settings, host: str, port: int | None = None,
                workers: int | None = None, threads: int | None = None) -> list[str]:
    """The granian command line serving the ingress with ``settings``.

    ``WEB_INTERFACE=asgi`` (the default): the request threads are the app's own
    (``WEB_THREADS``, read by each worker process: see ``server_environ``), and the
    event loop is granian's choice (``--loop auto``): uvloop, a dependency.
    ``wsgi``: the Flask app on granian's WSGI interface, whose blocking threads run
    it (``--blocking-threads``), with no deadline on request bodies."""
    binary = shutil.which("granian") or os.path.join(os.path.dirname(sys.executable), "granian")
    if settings.web_interface == "wsgi":
        interface = ["--interface", "wsgi",
                     "--blocking-threads", str(threads or settings.web_threads)]
        app = WSGI_APP
    else:
        interface, app = ["--interface", "asgi"], APP
    return [
        binary,
        *interface,
        "--host", host,
        "--port", str(port or settings.port),
        "--workers", str(workers or settings.web_concurrency),
        "--no-ws",
        "--respawn-failed-workers",
        "--workers-kill-timeout", "30",
        "--log-level", "warning" if settings.log_level in ("warning", "error") else "info",
        # granian's own lines (start, workers, stop) rendered like ours (logs.stdlib_formatter).
        "--log-config", logs.GRANIAN_LOG_CONFIG,
        app,
    ]


def server_environ(threads: int | None = None) -> dict[str, str]:
    """The server's environment: this one, with ``WEB_THREADS`` set to ``threads``
    when given (``--threads``), which the app reads in each worker process."""
    environ = dict(os.environ)
    if threads is not None:
        environ["WEB_THREADS"] = str(threads)
    return environ


@click.command("web")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: $PORT, 8080).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: $WEB_CONCURRENCY, 2).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Request threads per worker (default: $WEB_THREADS, 4).")
def web(host: str, port: int | None, workers: int | None, threads: int | None) -> None:
    """Run the ingress (POST /agora/ncs, /healthz, /readyz) on granian."""
    try:
        settings = Settings.from_env()
        settings.require_secrets()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    ensure_multiproc_dir("web")
    argv = server_argv(settings, host, port, workers, threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, server_environ(threads))
