"""``CELERY_BROKER_URL`` selects the Celery broker, and every broker-dependent
Celery setting follows it (``workers.app.celery_config``); handler time limits
stay below the redelivery horizon of the broker in use."""

from __future__ import annotations

import pytest

from agora_callbacks.errors import ConfigError
from agora_callbacks.settings import Settings, shown_url
from agora_callbacks.workers.app import celery_config
from agora_callbacks.workers.registry import check_time_options

AMQP = "amqp://guest:guest@rabbit:5672/agora"


def test_the_broker_defaults_to_redis_url() -> None:
    s = Settings.from_env({"REDIS_URL": "redis://r:6379/2"})
    assert (s.broker_url, s.broker) == ("redis://r:6379/2", "redis")
    s = Settings.from_env({"REDIS_URL": "redis://r:6379/2", "CELERY_BROKER_URL": "redis://b/0"})
    assert (s.broker_url, s.broker, s.redis_url) == ("redis://b/0", "redis", "redis://r:6379/2")


@pytest.mark.parametrize("url", [AMQP, "amqps://u:p@rabbit/", "pyamqp://rabbit//"])
def test_an_amqp_url_selects_rabbitmq(url: str) -> None:
    s = Settings.from_env({"CELERY_BROKER_URL": url})
    assert (s.broker_url, s.broker) == (url, "amqp")
    assert s.redis_url == "redis://127.0.0.1:6379/0"  # the inbox and state stay in Redis


@pytest.mark.parametrize("url", ["kafka://k:9092", "sqs://", "http://rabbit:15672"])
def test_an_unknown_scheme_is_one_line_naming_it(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"CELERY_BROKER_URL": url})
    message = str(err.value)
    assert message.startswith("CELERY_BROKER_URL: unsupported broker scheme")
    assert repr(url.split(":")[0]) in message and "\n" not in message



@pytest.mark.parametrize(("env", "url"), [
    ("REDIS_URL", "redis//:hunter2@redis:6379/0"),  # "://" mistyped
    ("REDIS_URL", "http://default:hunter2@redis:6379/0"),
    ("REDIS_URL", "hunter2@redis"),
    ("CELERY_BROKER_URL", "//guest:hunter2@rabbit:5672/"),
    ("CELERY_BROKER_URL", "//guest:hunter2/x@rabbit"),  # a "/" in the password
])
def test_a_bad_url_is_named_without_its_password(env: str, url: str) -> None:
    """The message of a bad URL ends on stderr and in the logs of whatever runs the
    process: it names the variable and shows the URL with its credentials masked."""
    with pytest.raises(ConfigError) as err:
        Settings.from_env({env: url})
    message = str(err.value)
    assert message.startswith(f"{env}: ") and "\n" not in message
    assert "hunter2" not in message and "***@" in message


@pytest.mark.parametrize(("url", "shown"), [
    # No credentials: as it is (the commands' "Redis ..." lines name it exactly).
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("unix:///run/redis.sock?db=3", "unix:///run/redis.sock?db=3"),
    # A password, with or without a user: both hidden, the host, port and db kept.
    ("redis://:hunter2@127.0.0.1:1/0", "redis://***@127.0.0.1:1/0"),
    ("rediss://default:hunter2@example.com:6380/2", "rediss://***@example.com:6380/2"),
    ("redis://admin@example.com/0", "redis://***@example.com/0"),
    ("unix://:hunter2@/run/redis.sock?db=2", "unix://***@/run/redis.sock?db=2"),
    ("redis://:hunter2@[::1]:6379/0", "redis://***@[::1]:6379/0"),
    # What a parser would not take apart, or would refuse.
    ("redis://:hunter2@127.0.0.1:port/0", "redis://***@127.0.0.1:port/0"),
    ("redis://:hunter2@[::1/0", "redis://***@[::1/0"),
    ("redis://:hunt/er2@host/0", "redis://***@host/0"),
    ("redis//:hunter2@host", "redis//***@host"),
    ("hunter2@host", "***@host"),
])
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert shown_url(url) == shown

def test_redis_settings() -> None:
    s = Settings.from_env({})
    conf = celery_config(s)
    assert conf["broker_url"] == s.redis_url
    assert conf["broker_transport"] == "agora_callbacks.workers.broker:Transport"
    options = conf["broker_transport_options"]
    assert options["visibility_timeout"] == s.handler_visibility_timeout_s == 600
    assert "confirm_publish" not in options
    assert conf["task_time_limit"] < 600


def test_rabbitmq_settings() -> None:
    s = Settings.from_env({"CELERY_BROKER_URL": AMQP})
    conf = celery_config(s)
    assert conf["broker_url"] == AMQP
    assert "broker_transport" not in conf  # kombu's own py-amqp transport
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert "task_queues" not in conf  # classic queues: the default queue, DEFAULT_QUEUE
    # Below RabbitMQ's consumer_timeout (default 1800 s) and half HANDLER_DEADLINE_S.
    assert s.handler_redelivery_s == 1800
    assert 0 < conf["task_soft_time_limit"] < conf["task_time_limit"] < 1800
    assert conf["task_time_limit"] > s.handler_visibility_timeout_s  # not Redis's bound


def test_rabbitmq_handlers_may_run_for_hours_when_the_server_allows_it() -> None:
    s = Settings.from_env({"CELERY_BROKER_URL": AMQP, "RABBITMQ_CONSUMER_TIMEOUT_S": "86400",
                           "HANDLER_DEADLINE_S": "28800", "DEDUPE_TTL_S": "172800"})
    assert s.handler_redelivery_s == 14400  # half the deadline
    assert s.handler_time_limit_s > 3 * 3600
    s = Settings.from_env({"CELERY_BROKER_URL": AMQP, "RABBITMQ_CONSUMER_TIMEOUT_S": "7200",
                           "HANDLER_DEADLINE_S": "28800", "DEDUPE_TTL_S": "172800"})
    assert s.handler_redelivery_s == 7200  # the server's consumer_timeout


def test_the_visibility_timeout_rule_is_redis_s_only() -> None:
    env = {"HANDLER_DEADLINE_S": "1000"}  # not above twice HANDLER_VISIBILITY_TIMEOUT_S
    with pytest.raises(ConfigError, match="HANDLER_VISIBILITY_TIMEOUT_S"):
        Settings.from_env(env)
    s = Settings.from_env({**env, "CELERY_BROKER_URL": AMQP})
    assert s.handler_redelivery_s == 500


def test_a_consumer_timeout_too_short_for_any_handler_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"CELERY_BROKER_URL": AMQP, "RABBITMQ_CONSUMER_TIMEOUT_S": "60"})
    message = str(err.value)
    assert message.startswith("RABBITMQ_CONSUMER_TIMEOUT_S (60 s)")
    assert "REDIS_RETRY_S" in message and "\n" not in message


def check(settings: Settings, **options: object) -> None:
    check_time_options("h", dict(options), visibility_timeout_s=settings.handler_redelivery_s,
                       time_limit_s=settings.handler_time_limit_s,
                       limit_name=settings.handler_redelivery_setting)


def test_a_handler_s_limit_is_checked_against_its_broker() -> None:
    redis_settings = Settings.from_env({})
    amqp_settings = Settings.from_env({"CELERY_BROKER_URL": AMQP})
    # 20 minutes: past Redis's visibility timeout, within RabbitMQ's consumer_timeout.
    with pytest.raises(ValueError, match="raise HANDLER_VISIBILITY_TIMEOUT_S=600"):
        check(redis_settings, time_limit=1200)
    check(amqp_settings, time_limit=1200, soft_time_limit=1100, default_retry_delay=900)
    with pytest.raises(ValueError) as err:
        check(amqp_settings, time_limit=1800)
    assert "raise RABBITMQ_CONSUMER_TIMEOUT_S=1800" in str(err.value)
    with pytest.raises(ValueError, match="default_retry_delay=1800"):
        check(amqp_settings, default_retry_delay=1800)


def test_a_worker_given_an_unknown_broker_stops_with_one_line() -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "agora_callbacks.workers.app:celery_app",
         "worker", "-c", "1"],
        env={**os.environ, "CELERY_BROKER_URL": "kafka://k:9092"}, capture_output=True,
        text=True, timeout=60)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines[-1].startswith("Error: CELERY_BROKER_URL: unsupported broker scheme 'kafka'")
    assert "Traceback" not in result.stdout + result.stderr
