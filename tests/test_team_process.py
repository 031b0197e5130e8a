"""A team's own process that imports its handler modules (its web app, its tests, its
own Celery worker) keeps its own Celery app, logging and worker: registering a handler
or a lifecycle hook only registers it. The service's logging, signal receivers and
worker steps belong to the process that runs ``agora_callbacks.workers.app`` (the
worker, Flower), not to every process that imports ``@on_event``.

Each check runs in a fresh interpreter: the test process has imported the workers'
app long before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

TEAM_PROCESS = r"""
import json, logging, sys

logging.basicConfig(level=logging.WARNING, format="TEAM %(name)s %(message)s")
import structlog

structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
from celery import Celery, current_app, shared_task

team = Celery("teamapp", broker="memory://")
team.set_current()

@team.task(name="teamapp.notify")
def notify():
    return 1

root = logging.getLogger()
before = {"handlers": list(root.handlers), "level": root.level,
          "structlog": structlog.get_config()["processors"]}

from agora_callbacks import on_event, on_recording

@on_event("uploaded")
def uploaded(event):
    pass

@on_recording("finished")
def finished(recording):
    pass

@shared_task(name="teamapp.housekeeping")
def housekeeping():
    return 1

print(json.dumps({
    "current_app": current_app.main,
    "housekeeping_app": housekeeping.app.main,
    "root_handlers_kept": root.handlers == before["handlers"],
    "root_level_kept": root.level == before["level"],
    "structlog_kept": structlog.get_config()["processors"] == before["structlog"],
    "team_tasks": sorted(n for n in team.tasks if not n.startswith("celery.")),
    "uploaded_task_app": uploaded.task.app.main,
    "worker_modules": sorted(m for m in ("agora_callbacks.workers.worker_logging",
                                         "agora_callbacks.workers.metrics_server",
                                         "agora_callbacks.workers.bootstep")
                             if m in sys.modules),
}))
"""


def _run_team_process() -> dict[str, object]:
    env = {**os.environ, "LOG_FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", TEAM_PROCESS], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_registering_handlers_leaves_the_teams_process_alone() -> None:
    result = _run_team_process()
    # The team's app stays the current one: its shared tasks keep their broker.
    assert result["current_app"] == "teamapp"
    assert result["housekeeping_app"] == "teamapp"
    # Its logging is its own: no handler added to the root logger, no level changed,
    # structlog's configuration untouched.
    assert result["root_handlers_kept"] is True
    assert result["root_level_kept"] is True
    assert result["structlog_kept"] is True
    # Handler and hook tasks belong to the service's app only: a team's worker never
    # takes them up (they would run without the service's settings and limits).
    assert result["team_tasks"] == ["teamapp.housekeeping", "teamapp.notify"]
    assert result["uploaded_task_app"] == "agora_callbacks"
    # Nothing of the service's worker (its signal receivers take over any Celery
    # worker's logging, banner and metrics in the process) is loaded.
    assert result["worker_modules"] == []


def test_handler_tasks_keep_off_a_team_app_s_default_queue() -> None:
    """A team's own Celery app on the same broker (the one Redis the README asks for)
    reads Celery's default queue, ``celery``; a worker of that app takes any message
    there and, not knowing a handler's task, discards it ("Received unregistered
    task"): the recording would wait for its handler to be published again, and again.
    So the service's tasks go to a queue of its own by default, and its worker reads
    it without ``-Q``."""
    from celery import Celery

    from agora_callbacks.workers.application import DEFAULT_QUEUE, celery_app

    team = Celery("teamapp", broker="memory://", set_as_current=False)
    team_queue = team.conf.task_default_queue
    assert team_queue != DEFAULT_QUEUE
    assert celery_app.conf.task_default_queue == DEFAULT_QUEUE
    # A handler without queue= is routed nowhere else: it goes to the default queue.
    assert celery_app.amqp.router.route({}, "teamapp.handlers.audit")["queue"].name == \
        DEFAULT_QUEUE
    # The worker reads it when no -Q is given (the Procfile's and compose's command),
    # and not Celery's default one (other tests may have added queues of handlers).
    assert DEFAULT_QUEUE in celery_app.amqp.queues
    assert team_queue not in celery_app.amqp.queues


TYPED_TEAM_MODULE = '''
from typing import Any

from agora_callbacks import Event, on_event, on_recording


def parse_me() -> Event:
    raise NotImplementedError


@on_event("uploaded")
@on_event(32, queue="files")                         # stacked, as in the README
def store_files(event: Event, key: str) -> int:
    return len(key)


@on_recording("finished")
def finished(recording: dict[str, Any], info: dict[str, Any]) -> None:
    pass


n: int = store_files(parse_me(), key="k")          # still the function, typed
store_files.task.delay                               # its task, as the README says
finished.task.apply_async
finished({}, {})
'''


def test_a_team_module_type_checks_strictly_with_the_task_attribute(tmp_path: Any) -> None:
    """``on_event`` returns the function unchanged with its task as ``.task`` (README):
    mypy --strict on a team's module accepts both, the call typed as the function's."""
    from mypy import api

    module = tmp_path / "team_handlers.py"
    module.write_text(TYPED_TEAM_MODULE)
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", os.devnull,
                                "--follow-imports=silent", str(module)])
    assert status == 0, out + err


BAD_SETTING_PROCESS = r"""
from agora_callbacks.errors import ConfigError

try:
    from agora_callbacks import on_event

    @on_event("uploaded")
    def uploaded(event):
        pass
except ConfigError as exc:
    print("caught:", exc)
"""


def test_a_wrong_setting_is_an_exception_the_team_process_can_catch() -> None:
    """A library does not end its host's process: registering a handler under a wrong
    setting raises ``ConfigError`` naming the variable (the worker's own entry,
    ``workers.app``, turns it into one line and exit status 1:
    ``test_cli_operator``)."""
    env = {**os.environ, "MAX_BODY_BYTES": "abc"}
    proc = subprocess.run([sys.executable, "-c", BAD_SETTING_PROCESS], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "caught: MAX_BODY_BYTES: expected an integer, got 'abc'\n"
