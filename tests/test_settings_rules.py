"""Settings are checked against each other when they are built (``Settings.from_env``).

Each rule between two variables is a one-line ``ConfigError`` naming both and
saying why; the defaults, and the short timeouts the worker tests run with, pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner
from workers_procs import FAST_ENV

from agora_callbacks.cli import main
from agora_callbacks.embedded_server import free_port
from agora_callbacks.errors import ConfigError
from agora_callbacks.settings import Settings


def test_redis_retry_s_defaults_to_30_and_is_parsed() -> None:
    assert Settings.from_env({}).redis_retry_s == 30
    assert Settings.from_env({"REDIS_RETRY_S": "5"}).redis_retry_s == 5
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"REDIS_RETRY_S": "0"})
    assert str(err.value).startswith("REDIS_RETRY_S:")


def test_the_defaults_and_the_worker_tests_timeouts_pass() -> None:
    Settings.from_env({})
    Settings.from_env(FAST_ENV)


# (environment, the two variables the message must name). Each environment breaks
# exactly one rule; every other setting keeps its default.
BAD = [
    pytest.param({"DEDUPE_TTL_S": "10"}, ("DEDUPE_TTL_S", "REORDER_HOLD_MS"),
                 id="dedupe-ttl-not-above-hold"),
    pytest.param({"DEDUPE_TTL_S": "15", "REORDER_HOLD_MS": "15000", "CLAIM_IDLE_MS": "5000",
                  "HANDLER_DEADLINE_S": "12", "HANDLER_VISIBILITY_TIMEOUT_S": "5",
                  "REDIS_RETRY_S": "1"},
                 ("DEDUPE_TTL_S", "REORDER_HOLD_MS"), id="dedupe-ttl-equal-to-hold"),
    pytest.param({"DEDUPE_TTL_S": "3600"}, ("DEDUPE_TTL_S", "HANDLER_DEADLINE_S"),
                 id="dedupe-ttl-not-above-deadline"),
    pytest.param({"CLAIM_IDLE_MS": "10000"}, ("CLAIM_IDLE_MS", "REORDER_HOLD_MS"),
                 id="claim-not-below-hold"),
    pytest.param({"CLAIM_IDLE_MS": "20000"}, ("CLAIM_IDLE_MS", "REORDER_HOLD_MS"),
                 id="claim-above-hold"),
    pytest.param({"HANDLER_DEADLINE_S": "600"},
                 ("HANDLER_DEADLINE_S", "HANDLER_VISIBILITY_TIMEOUT_S"),
                 id="deadline-not-above-visibility"),
    pytest.param({"HANDLER_DEADLINE_S": "1200"},
                 ("HANDLER_DEADLINE_S", "HANDLER_VISIBILITY_TIMEOUT_S"),
                 id="deadline-not-above-twice-visibility"),
    pytest.param({"DISPATCH_LEASE_MS": "3600000"}, ("DISPATCH_LEASE_MS", "HANDLER_DEADLINE_S"),
                 id="lease-not-below-deadline"),
    pytest.param({"REDIS_RETRY_S": "3600"}, ("REDIS_RETRY_S", "HANDLER_DEADLINE_S"),
                 id="redis-retry-not-below-deadline"),
    pytest.param({"REDIS_RETRY_S": "285"},
                 ("HANDLER_VISIBILITY_TIMEOUT_S", "REDIS_RETRY_S"),
                 id="no-room-for-the-time-limits"),
    pytest.param({"REDIS_RETRY_S": "2", "REDIS_TIMEOUT_S": "2.5"},
                 ("REDIS_RETRY_S", "REDIS_TIMEOUT_S"), id="redis-retry-not-above-timeout"),
    pytest.param({"INTAKE_HUNG_S": "40", "REDIS_RETRY_S": "39"},
                 ("INTAKE_HUNG_S", "REDIS_RETRY_S"), id="intake-hung-within-a-retry"),
]


@pytest.mark.parametrize(("env", "names"), BAD)
def test_a_bad_combination_is_one_line_naming_both_variables(
        env: dict[str, str], names: tuple[str, str]) -> None:
    for name, value in env.items():  # each value is fine on its own
        assert Settings.from_env({name: value}, check=False)
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(names[0]), message
    for name in names:
        assert name in message, message
    # ...and says why, not only which.
    assert ": " in message and len(message.split(": ", 1)[1]) > 20, message


def test_every_rule_holds_at_its_boundary() -> None:
    # Just inside each rule: accepted.
    Settings.from_env({"DEDUPE_TTL_S": "3601"})
    Settings.from_env({"CLAIM_IDLE_MS": "9999"})
    Settings.from_env({"HANDLER_DEADLINE_S": "1201"})
    Settings.from_env({"DISPATCH_LEASE_MS": "3599999"})
    Settings.from_env({"REDIS_RETRY_S": "2", "REDIS_TIMEOUT_S": "1.5"})
    Settings.from_env({"INTAKE_HUNG_S": "40.01", "REDIS_RETRY_S": "39"})
    # HANDLER_VISIBILITY_TIMEOUT_S 600 (margin 30 s): the soft limit is
    # 600 - 2 * (30 + REDIS_RETRY_S), positive up to REDIS_RETRY_S 269.
    s = Settings.from_env({"REDIS_RETRY_S": "269", "INTAKE_HUNG_S": "300"})
    assert (s.handler_soft_time_limit_s, s.handler_time_limit_s) == (2, 301)
    with pytest.raises(ConfigError, match=r"^HANDLER_VISIBILITY_TIMEOUT_S.*REDIS_RETRY_S"):
        Settings.from_env({"REDIS_RETRY_S": "270", "INTAKE_HUNG_S": "300"})


def test_reorder_hold_zero_turns_the_claim_rule_off() -> None:
    # 0 means "never wait for a gap": nothing is there for the claim to beat.
    assert Settings.from_env({"REORDER_HOLD_MS": "0"}).reorder_hold_ms == 0


def test_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"DEDUPE_TTL_S.*REORDER_HOLD_MS"):
        Settings.from_env({}, dedupe_ttl_s=1)


def test_check_false_builds_an_unchecked_combination_for_tests() -> None:
    s = Settings.from_env({"DEDUPE_TTL_S": "1"}, check=False)
    assert s.dedupe_ttl_s == 1
    with pytest.raises(ConfigError, match="DEDUPE_TTL_S"):
        s.check()


def test_handler_time_limits_sit_below_the_visibility_timeout() -> None:
    s = Settings.from_env({})
    # margin max(1, 600 // 20) = 30 s; REDIS_RETRY_S 30 s.
    assert (s.handler_soft_time_limit_s, s.handler_time_limit_s) == (480, 540)
    fast = Settings.from_env(FAST_ENV)
    assert 0 < fast.handler_soft_time_limit_s < fast.handler_time_limit_s \
        < fast.handler_visibility_timeout_s


def test_the_cli_reports_a_bad_combination_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEDUPE_TTL_S", "10")
    result = CliRunner().invoke(main, ["dlq", "list"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "DEDUPE_TTL_S" in line]
    assert len(errors) == 1 and "REORDER_HOLD_MS" in errors[0], result.output
    assert result.output.splitlines() == errors and errors[0].startswith("Error: DEDUPE_TTL_S")
    assert "Traceback" not in result.output


def test_the_web_command_reports_a_bad_combination_in_one_line() -> None:
    env = {**os.environ, "DEDUPE_TTL_S": "10", "AGORA_NCS_SECRETS": "s"}
    # Its own session, so that if the check were missing, the server it would start
    # (granian and its workers) is stopped as a whole.
    proc = subprocess.Popen([sys.executable, "-c", "from agora_callbacks.cli import main; main()",
                             "web", "--host", "127.0.0.1", "--port", str(free_port())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("agora-callbacks web started despite the bad combination")
    assert proc.returncode == 1
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert "DEDUPE_TTL_S" in stderr and "REORDER_HOLD_MS" in stderr

