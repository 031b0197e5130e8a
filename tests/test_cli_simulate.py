"""``agora-callbacks simulate`` against a real ingress and against a failing receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_support
import pytest
import redis
from click.testing import CliRunner
from werkzeug.serving import BaseWSGIServer, make_server

from agora_callbacks import keys
from agora_callbacks.cli import main
from agora_callbacks.embedded_server import free_port
from agora_callbacks.ingress import signature
from agora_callbacks.ingress.app import create_app
from agora_callbacks.settings import Settings

SECRET = "secret"


@pytest.fixture
def ingress_url(settings: Settings, redis_client: redis.Redis) -> Iterator[str]:
    """The real ingress app, served on a free port in a thread."""
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/agora/ncs"
    server.shutdown()
    server.server_close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["simulate", *args], catch_exceptions=False)
    return result.exit_code, result.output


def summary(out: str) -> dict[str, Any]:
    """The JSON summary: the last output starting with a line "{" (the ingress, in a
    thread of this process, may print its own log lines to the same stdout)."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    figures: dict[str, Any] = json.loads("\n".join(lines[start:]))
    return figures


def test_help() -> None:
    code, out = run("--help")
    assert code == 0 and "--duplicates" in out and "--reorder-ms" in out


def test_every_request_is_stored_by_the_ingress(ingress_url: str,
                                                redis_client: redis.Redis) -> None:
    code, out = run("--url", ingress_url, "--secret", SECRET, "--recordings", "3",
                    "--rate", "0", "--duplicates", "0.2", "--reorder-ms", "50", "--seed", "5",
                    "--json")
    assert code == 0, out
    figures = summary(out)
    assert figures["sent"] == figures["accepted"] > figures["events"]
    assert figures["duplicates_sent"] == figures["sent"] - figures["events"]
    assert sorted(figures["kinds"]) == ["composite", "individual", "web"]
    assert redis_client.xlen(keys.INBOX) == figures["sent"]
    stored = [json.loads(f[b"body"]) for _, f in redis_client.xrange(keys.INBOX)]
    assert {e["payload"]["sid"] for e in stored} == set(figures["sids"])
    assert all(f[b"sig"] == b"v2" for _, f in redis_client.xrange(keys.INBOX))


def test_readable_summary_lists_the_sids(ingress_url: str) -> None:
    code, out = run("--url", ingress_url, "--secret", SECRET, "--kind", "web", "--seed", "1",
                    "--rate", "0", "--quiet")
    assert code == 0, out
    assert "accepted (200)" in out and "latency p50 / p99" in out
    assert "agora-callbacks recording SID" in out
    lines = out.strip().splitlines()
    assert lines[-2].split()[1] == "web"
    assert lines[-1].startswith("OK: all ") and lines[-1].endswith(" requests accepted (200)")


def test_wrong_secret_is_rejected_and_exits_non_zero(ingress_url: str,
                                                     redis_client: redis.Redis) -> None:
    code, out = run("--url", ingress_url, "--secret", "not-the-secret", "--kind", "composite",
                    "--rate", "0", "--json")
    assert code == 1
    figures = summary(out)
    assert figures["accepted"] == 0 and figures["rejected"] == {"401": figures["sent"]}
    assert figures["ok"] is False and "check the secret (signed with --secret" in figures["verdict"]
    assert redis_client.xlen(keys.INBOX) == 0


def test_loss_is_not_sent(ingress_url: str, redis_client: redis.Redis) -> None:
    code, out = run("--url", ingress_url, "--secret", SECRET, "--recordings", "4",
                    "--loss", "0.3", "--rate", "0", "--seed", "2", "--json")
    assert code == 0, out
    figures = summary(out)
    assert figures["dropped_by_loss"] > 0
    assert redis_client.xlen(keys.INBOX) == figures["events"] - figures["dropped_by_loss"]


def test_secret_defaults_to_the_first_configured(ingress_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGORA_DEV_DIR", str(tmp_path / "no-dev-stack"))
    monkeypatch.setenv("AGORA_NCS_SECRETS", f" {SECRET} ,other")
    code, out = run("--url", ingress_url, "--kind", "web", "--rate", "0", "--json")
    assert code == 0, out
    monkeypatch.setenv("AGORA_NCS_SECRETS", "")
    code, out = run("--url", ingress_url)
    assert code == 2 and "AGORA_NCS_SECRETS" in out


def test_bad_share_is_a_usage_error() -> None:
    code, out = run("--secret", SECRET, "--loss", "2")
    assert code == 2 and "between 0 and 1" in out


def test_signing_matches_the_reference_vector() -> None:
    # The simulator signs through the ingress's helper, checked here against NCS's vector.
    body = (b'{"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
            b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}')
    headers = signature.sign_headers(body, "secret")
    assert headers[signature.HEADER_V1] == "5a3bb6a6d9fad2ea9ae3fb707a14c9d7f3136df1"
    assert headers[signature.HEADER_V2] == (
        "de96da5acf03b0021ac3b4fa2225e7ae6f3533a30d50bb02c08ea4fa748bda24")


# -- the real command, in a subprocess ---------------------------------------------------------

def test_nothing_listening_fails_before_sending(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/agora/ncs"
    ran = cli_support.run(["simulate", "--url", url, "--secret", SECRET], cwd=tmp_path)
    assert ran.code == 1 and ran.out == ""
    assert ran.err.splitlines() == [
        f"Error: nothing answers at {url} (Connection refused): start the ingress "
        "(`agora-callbacks dev`) or pass --url"]


def _dev_env(tmp_path: Path, secret: str) -> dict[str, str]:
    """No AGORA_NCS_SECRETS; a dev data dir holding the secret `dev` generated."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "dev-ncs-secret").write_text(secret + "\n")
    return cli_support.environ(drop=("AGORA_NCS_SECRETS",), AGORA_DEV_DIR=str(dev))


def test_the_dev_stacks_secret_is_used_and_the_last_line_is_the_verdict(
        ingress_url: str, tmp_path: Path, redis_client: redis.Redis) -> None:
    ran = cli_support.run(["simulate", "--url", ingress_url, "--kind", "web", "--rate", "0",
                           "--seed", "3", "-q"], env=_dev_env(tmp_path, SECRET), cwd=tmp_path)
    assert ran.code == 0, ran
    assert f"signed with the dev stack's {tmp_path / 'dev' / 'dev-ncs-secret'}" in ran.err
    lines = ran.out.strip().splitlines()
    sent = redis_client.xlen(keys.INBOX)
    assert sent > 0 and lines[-1] == f"OK: all {sent} requests accepted (200)"
    assert "rejected (status x count)  none" in ran.out


def test_401s_say_to_check_the_secret_in_red_without_python_reprs(
        ingress_url: str, tmp_path: Path, redis_client: redis.Redis) -> None:
    ran = cli_support.run(["simulate", "--url", ingress_url, "--kind", "composite", "--rate", "0",
                           "--seed", "3", "-q"], env=_dev_env(tmp_path, "stale-secret"),
                          cwd=tmp_path, tty=True)
    assert ran.code == 1, ran
    lines = ran.plain_out.strip().splitlines()
    sent = int(next(line for line in lines if line.startswith("requests sent")).split()[-1])
    assert lines[-1] == (
        f"FAILED: 0 of {sent} requests accepted; {sent} answered 401. 401: the signature was "
        f"refused: check the secret (signed with the dev stack's "
        f"{tmp_path / 'dev' / 'dev-ncs-secret'}; the ingress verifies with its "
        "AGORA_NCS_SECRETS)")
    assert f"rejected (status x count)  401 x{sent}" in lines
    assert "{" not in ran.plain_out and "'" not in ran.plain_out.replace("dev stack's", "")
    assert "\x1b[31m\x1b[1mFAILED: " in ran.out  # red (and bold) on a terminal
    assert redis_client.xlen(keys.INBOX) == 0


def test_real_traffic_and_backup_flags_shape_the_lifecycles(ingress_url: str,
                                                            redis_client: redis.Redis) -> None:
    code, out = run("--url", ingress_url, "--secret", SECRET, "--recordings", "1",
                    "--kind", "individual", "--rate", "0", "--seed", "8", "--real-traffic",
                    "--with-backup", "--json")
    assert code == 0, out
    types = [json.loads(f[b"body"])["eventType"] for _, f in redis_client.xrange(keys.INBOX)]
    assert types.index(11) < types.index(32) and 31 not in types
    assert types.count(4) == 2 * 4  # two users x two tracks, each twice
