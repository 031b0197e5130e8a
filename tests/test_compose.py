"""compose.yaml is valid (``docker-compose config``) and runs the stack as documented.

No Docker engine is needed: ``docker-compose config`` resolves and validates the
file. The test skips only where that command is missing (CI installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def resolved(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("AGORA_NCS_SECRETS", "PORT", "FLOWER_PORT", "WEB_CONCURRENCY")}
    assert COMPOSE is not None
    return subprocess.run([COMPOSE, "-f", str(root / "compose.yaml"), "config"],
                          env={**base, **env}, capture_output=True, text=True, timeout=60,
                          cwd=root)


@pytest.fixture
def config(project_root: Path) -> dict[str, Any]:
    result = resolved(project_root, AGORA_NCS_SECRETS="s3cret")
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


@needs_compose
def test_compose_config_is_valid(project_root: Path) -> None:
    assert COMPOSE is not None
    result = subprocess.run([COMPOSE, "-f", str(project_root / "compose.yaml"), "config", "-q"],
                            env={**os.environ, "AGORA_NCS_SECRETS": "s3cret"},
                            capture_output=True, text=True, timeout=60, cwd=project_root)
    assert result.returncode == 0, result.stderr


@needs_compose
def test_the_secret_is_required(project_root: Path) -> None:
    result = resolved(project_root)
    assert result.returncode != 0
    assert "AGORA_NCS_SECRETS" in result.stderr


@needs_compose
def test_services_and_redis_durability(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"redis", "web", "worker", "flower"}
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}"
              for v in redis["volumes"]]
    assert any(m.startswith("redis-data:/data") for m in mounts), mounts
    assert "redis-data" in config["volumes"]
    for name, service in services.items():
        assert "healthcheck" in service, name


@needs_compose
def test_app_services_share_image_and_environment(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("web", "worker", "flower"):
        service = services[name]
        assert service["build"]["context"], name
        env = service["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["AGORA_NCS_SECRETS"] == "s3cret"
        assert "redis" in service["depends_on"]
    assert services["web"]["ports"]
    # Nothing published by the worker: `--scale worker=N` cannot clash on a port.
    assert "ports" not in services["worker"]
    assert "container_name" not in services["worker"]
    assert services["web"]["command"][:2] == ["agora-callbacks", "web"]
    assert "agora_callbacks.workers.app:celery_app" in " ".join(services["worker"]["command"])
    assert "flower" in services["flower"]["command"]


@needs_compose
def test_ports_follow_the_environment(project_root: Path) -> None:
    result = resolved(project_root, AGORA_NCS_SECRETS="x", PORT="9090", FLOWER_PORT="6666")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert "9090" in str(services["web"]["ports"])
    assert "6666" in str(services["flower"]["ports"])


def test_dockerfile_installs_the_project(project_root: Path) -> None:
    dockerfile = (project_root / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile and "\nUSER " in dockerfile
    for package in ("agora_callbacks", "ingress", "workers", "schemas"):
        assert f"COPY {package} " in dockerfile


@needs_compose
def test_ingress_metrics_are_behind_a_token(project_root: Path) -> None:
    result = resolved(project_root, AGORA_NCS_SECRETS="x", METRICS_TOKEN="scrape-me")
    assert result.returncode == 0, result.stderr
    web = yaml.safe_load(result.stdout)["services"]["web"]
    assert web["environment"]["METRICS_TOKEN"] == "scrape-me"


HANDLERS_IMAGE = Path("docs") / "handlers-image"


@needs_compose
def test_the_handlers_image_pattern(project_root: Path) -> None:
    """README's FROM pattern: docs/handlers-image builds FROM the project's image and
    its compose override runs web, worker and Flower on it with the handlers named."""
    base = yaml.safe_load(resolved(project_root, AGORA_NCS_SECRETS="x").stdout)
    project_image = base["services"]["worker"]["image"]
    dockerfile = (project_root / HANDLERS_IMAGE / "Dockerfile").read_text()
    froms = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms == [project_image]
    assert "COPY --chown=app example_handlers.py ./" in dockerfile
    assert (project_root / HANDLERS_IMAGE / "example_handlers.py").exists()

    assert COMPOSE is not None
    env = {k: v for k, v in os.environ.items() if k != "CALLBACK_HANDLERS"}
    result = subprocess.run(
        [COMPOSE, "-f", str(project_root / "compose.yaml"),
         "-f", str(project_root / HANDLERS_IMAGE / "compose.handlers.yaml"), "config"],
        env={**env, "AGORA_NCS_SECRETS": "x"}, capture_output=True, text=True, timeout=60,
        cwd=project_root)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("web", "worker", "flower"):
        service = services[name]
        assert Path(service["build"]["context"]) == project_root / HANDLERS_IMAGE, name
        assert service["image"] == "agora-callbacks-handlers:latest"
        assert service["environment"]["CALLBACK_HANDLERS"] == "example_handlers"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"  # kept
    assert services["worker"]["command"] == base["services"]["worker"]["command"]


@needs_compose
def test_each_worker_replica_has_its_own_node_name(config: dict[str, Any]) -> None:
    """celery@<container hostname>: unique per replica as long as nothing fixes the
    hostname, shares the host's network namespace or names the node in the command."""
    worker = config["services"]["worker"]
    assert "hostname" not in worker and "network_mode" not in worker
    assert not [arg for arg in worker["command"] if arg.startswith(("-n", "--hostname"))]
    assert "celery@$$HOSTNAME" in " ".join(worker["healthcheck"]["test"]) \
        or "celery@$HOSTNAME" in " ".join(worker["healthcheck"]["test"])


# -- compose.rabbitmq.yaml: RabbitMQ as the Celery broker (an override) ------------------
def resolved_rabbitmq(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("AGORA_NCS_SECRETS", "RABBITMQ_PASSWORD", "PORT", "FLOWER_PORT")}
    assert COMPOSE is not None
    return subprocess.run([COMPOSE, "-f", str(root / "compose.yaml"), "-f",
                           str(root / "compose.rabbitmq.yaml"), "config"],
                          env={**base, **env}, capture_output=True, text=True, timeout=60,
                          cwd=root)


@needs_compose
def test_the_rabbitmq_override_needs_its_password(project_root: Path) -> None:
    result = resolved_rabbitmq(project_root, AGORA_NCS_SECRETS="s3cret")
    assert result.returncode != 0
    assert "RABBITMQ_PASSWORD" in result.stderr


@needs_compose
def test_the_rabbitmq_override_points_the_workers_at_rabbitmq(project_root: Path) -> None:
    from agora_callbacks.settings import Settings

    result = resolved_rabbitmq(project_root, AGORA_NCS_SECRETS="s3cret", RABBITMQ_PASSWORD="pw")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"redis", "rabbitmq", "web", "worker", "flower"}
    rabbit = services["rabbitmq"]
    assert rabbit["image"].startswith("rabbitmq:3")
    assert "rabbitmq-diagnostics" in rabbit["healthcheck"]["test"]
    assert "ports" not in rabbit  # reached inside the compose network only
    assert rabbit["environment"]["RABBITMQ_DEFAULT_PASS"] == "pw"
    assert any(str(v).startswith("rabbitmq-data:/var/lib/rabbitmq") for v in rabbit["volumes"])
    assert "rabbitmq-data" in config["volumes"] and rabbit["hostname"] == "rabbitmq"
    erl_args = rabbit["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].split()
    server_timeout_ms = int(erl_args[erl_args.index("consumer_timeout") + 1])
    for name in ("worker", "flower"):
        service = services[name]
        env = service["environment"]
        assert env["CELERY_BROKER_URL"] == "amqp://agora:pw@rabbitmq:5672/agora", name
        assert env["REDIS_URL"] == "redis://redis:6379/0"  # the inbox and state stay
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        settings = Settings.from_env(env)
        assert settings.broker == "amqp"
        # The workers are told the server's consumer_timeout.
        assert settings.rabbitmq_consumer_timeout_s * 1000 == server_timeout_ms
    assert "CELERY_BROKER_URL" not in services["web"]["environment"]  # no Celery there
