"""``agora-callbacks dev``: the whole stack on one machine, one command.

Redis (embedded unless ``REDIS_URL`` is set), the ingress, a worker and Flower,
each a child process supervised by ``agora_callbacks.devstack``. Ctrl-C stops
them all, then the embedded Redis; nothing is left running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from agora_callbacks.cli.context import DEFAULT_DEV_DIR, URL_FILE, env_int, finite
from agora_callbacks.devstack import Child, ChildExited, DataDirInUse, DataDirLock, Supervisor
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.settings import shown_url

CELERY_APP = "agora_callbacks.workers.app:celery_app"


def _bin(name: str) -> str:
    """An executable of this environment (next to the running Python), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    return shutil.which(name) or name


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _dev_value(path: Path) -> str:
    """A dev-only random value kept in the data dir, so a restart reuses it."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = secrets.token_hex(16)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def web_argv(port: int, workers: int) -> list[str]:
    """The ingress, as the Procfile's ``web`` line runs it, on the loopback."""
    return [_bin("agora-callbacks"), "web", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]


def worker_argv(concurrency: int) -> list[str]:
    """A worker, as the Procfile's ``worker`` line runs it, with a node name of its own
    (``dev-<pid of dev>@host``): several on one host, on one broker, never collide."""
    return [_bin("celery"), "-A", CELERY_APP, "worker", "--concurrency", str(concurrency),
            "--hostname", f"dev-{os.getpid()}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle"]


#: Flower's environment under ``dev``: its HTTP API (``/api/workers``, ``/api/tasks``)
#: without authentication, which Flower 2 refuses unless told; it listens on the
#: loopback only (``flower_argv``).
FLOWER_ENV = {"FLOWER_UNAUTHENTICATED_API": "true"}


def flower_argv(port: int) -> list[str]:
    return [_bin("celery"), "-A", CELERY_APP, "flower", f"--port={port}",
            "--address=127.0.0.1"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", default=lambda: env_int("PORT", 8080),
              show_default="$PORT or 8080", type=click.IntRange(1, 65535),
              help="Port of the ingress.")
@click.option("--flower-port", default=5555, show_default=True, type=click.IntRange(1, 65535),
              help="Port of Flower.")
@click.option("--data-dir", default=lambda: os.environ.get("AGORA_DEV_DIR", DEFAULT_DEV_DIR),
              show_default=DEFAULT_DEV_DIR, type=click.Path(file_okay=False, path_type=Path),
              help="Where the embedded Redis keeps its data (AOF) and dev secrets live.")
@click.option("--worker-metrics-port",
              default=lambda: env_int("WORKER_METRICS_PORT", 9808),
              show_default="$WORKER_METRICS_PORT or 9808", type=click.IntRange(0, 65535),
              help="Port of the worker's Prometheus endpoint (0: off).")
@click.option("--redis-port", default=0, type=click.IntRange(0, 65535),
              help="Port of the embedded Redis (default: a free one).")
@click.option("--concurrency", "-c", default=2, show_default=True, type=click.IntRange(1),
              help="Worker processes.")
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option("--ready-timeout", default=60.0, show_default=True,
              type=click.FloatRange(0, min_open=True), callback=finite,
              help="Seconds to wait for every process to be ready.")
def dev(port: int, flower_port: int, worker_metrics_port: int, data_dir: Path,
        redis_port: int, concurrency: int, no_flower: bool, ready_timeout: float) -> None:
    """Run the whole stack here: Redis, ingress, worker and Flower.

    Without REDIS_URL an embedded Redis-compatible server is started with its data
    (AOF on) in --data-dir, so a restart keeps what was stored. Without
    AGORA_NCS_SECRETS (or ADMIN_TOKEN) a dev-only value is generated, kept in
    --data-dir and printed. Prints the callback URL, the Flower URL and the
    command that sends a test recording. Ctrl-C stops everything it started.

    \b
    Example:
      agora-callbacks dev --port 8080
    """
    # Absolute: the server changes into its data dir before opening its log file.
    data_dir = data_dir.resolve()
    # One dev per data dir: a second one would open the same AOF and, stopping, delete
    # the first one's redis.url. Checked first when the directory exists (no dev can
    # hold a directory that does not).
    lock = DataDirLock(data_dir)
    if data_dir.is_dir():
        _lock(lock)
    wanted = {"--port": port, "--redis-port": redis_port,
              "--worker-metrics-port": worker_metrics_port}
    if not no_flower:
        wanted["--flower-port"] = flower_port
    for option, number in wanted.items():
        if number and _port_in_use(number):
            raise click.UsageError(f"port {number} is already in use: choose another with "
                                   f"{option}")
    data_dir.mkdir(parents=True, exist_ok=True)
    if not lock.held:
        _lock(lock)
    env: dict[str, str] = {}
    notes: list[tuple[str, str]] = []
    server: ServerProcess | None = None
    url_file = data_dir / URL_FILE

    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        server = ServerProcess(data_dir / "redis", port=redis_port or None, appendonly=True)
        click.echo(f"starting the embedded Redis ({server.binary}) on port {server.port}")
        try:
            server.start()
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            raise click.ClickException(f"the embedded Redis did not start: {exc}") from None
        redis_url = server.url
        url_file.write_text(redis_url + "\n")
        notes.append(("Redis", f"{redis_url}  (embedded; data and AOF in {data_dir / 'redis'})"))
    else:
        notes.append(("Redis", f"{shown_url(redis_url)}  (REDIS_URL)"))
    env["REDIS_URL"] = redis_url

    secret = next((s.strip() for s in os.environ.get("AGORA_NCS_SECRETS", "").split(",")
                   if s.strip()), "")
    if not secret:
        secret = _dev_value(data_dir / "dev-ncs-secret")
        env["AGORA_NCS_SECRETS"] = secret
        notes.append(("NCS secret", f"{secret}  (GENERATED FOR DEV ONLY; set AGORA_NCS_SECRETS "
                                    "to your console's secret to receive real callbacks)"))
    token = os.environ.get("ADMIN_TOKEN", "").strip()
    if not token:
        token = _dev_value(data_dir / "dev-admin-token")
        env["ADMIN_TOKEN"] = token
        notes.append(("admin token", f"{token}  (GENERATED FOR DEV ONLY)"))
    env.setdefault("LOG_FORMAT", os.environ.get("LOG_FORMAT", "console"))
    env["WORKER_METRICS_PORT"] = str(worker_metrics_port)
    if worker_metrics_port:
        notes.append(("worker metrics", f"http://127.0.0.1:{worker_metrics_port}/metrics"))

    base = f"http://127.0.0.1:{port}"
    # The ingress once the worker is ready: a worker that cannot start (a handler
    # module that does not import, one line) stops the stack before anything else ran.
    children = [
        Child("web", web_argv(port, 2), env={"PORT": str(port)}, start_after="worker",
              ready=lambda: _http_ok(f"{base}/readyz")),
        Child("worker", worker_argv(concurrency), ready_line=r"\S+@\S+ ready\."),
    ]
    if not no_flower:
        # After the worker is ready: Flower's first inspection of the workers, at its
        # start, then gets answers instead of "Inspect method ... failed" warnings.
        children.append(Child("flower", flower_argv(flower_port), env=FLOWER_ENV,
                              start_after="worker",
                              ready=lambda: _http_ok(f"http://127.0.0.1:{flower_port}/healthcheck")))
    # Each process tree (web, worker) keeps its own metrics files: never share one
    # PROMETHEUS_MULTIPROC_DIR between them.
    base_env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    supervisor = Supervisor(children, lambda line: click.echo(line), base_env={**base_env, **env})
    if server is not None and server.process is not None:
        supervisor.watch("redis", server.process)
    supervisor.install_signal_handlers()
    code = 0
    try:
        supervisor.start()
        supervisor.wait_ready(ready_timeout)
        if not supervisor.stop_requested.is_set():
            _banner(base, None if no_flower else flower_port, secret, token, notes)
            supervisor.run_until_stopped()
    except ChildExited as exc:
        click.echo(f"dev: {exc.name} stopped (exit code {exc.code}); stopping everything",
                   err=True)
        code = 1
    except TimeoutError as exc:
        click.echo(f"dev: {exc}; stopping everything", err=True)
        code = 1
    finally:
        click.echo("dev: stopping " + ", ".join(c.name for c in reversed(children)))
        killed = supervisor.stop()
        if killed:
            click.echo(f"dev: killed after the grace period: {', '.join(killed)}", err=True)
        if server is not None:
            server.stop()
            url_file.unlink(missing_ok=True)
            click.echo("dev: embedded Redis stopped")
        click.echo("dev: everything stopped")
    sys.exit(code)


def _lock(lock: DataDirLock) -> None:
    try:
        lock.acquire()
    except DataDirInUse as exc:
        raise click.ClickException(str(exc)) from None


def _banner(base: str, flower_port: int | None, secret: str, token: str,
            notes: list[tuple[str, str]]) -> None:
    rows = [("callback URL", f"{base}/agora/ncs"),
            ("dashboard", f"{base}/ui/  (sign in with the admin token)")]
    if flower_port is not None:
        rows.append(("Flower", f"http://127.0.0.1:{flower_port}  (API: /api/workers, /api/tasks)"))
    rows.append(("web metrics", f"{base}/metrics  (Authorization: Bearer <admin token>)"))
    rows += notes
    width = max(len(name) for name, _ in rows)
    lines = ["", "agora-callbacks dev stack is up"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines += [
        "",
        "Send a test recording (another terminal, same directory):",
        f"  agora-callbacks simulate --url {base}/agora/ncs --secret {secret} --recordings 1",
        "Then look at it:",
        "  agora-callbacks recording SID      (SID: printed by simulate)",
        f"  curl -H 'Authorization: Bearer {token}' {base}/recordings/SID",
        "  agora-callbacks dlq list",
        "Ctrl-C stops everything.",
        "",
    ]
    click.echo("\n".join(lines))
