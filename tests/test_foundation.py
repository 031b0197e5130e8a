"""The shared core: settings, key names, the inbox hand-off, dead letters."""

from __future__ import annotations

import pytest
import redis

from agora_callbacks import deadletters, inbox, keys
from agora_callbacks.errors import ConfigError
from agora_callbacks.settings import VARIABLES, Settings


def test_defaults_parse() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.ncs_secrets == ()
    assert s.dedupe_ttl_s >= 86400
    assert s.max_body_bytes == 262144
    assert s.body_read_timeout_s == 10.0


def test_secrets_are_split_and_trimmed() -> None:
    s = Settings.from_env({"AGORA_NCS_SECRETS": " new , old,,"})
    assert s.ncs_secrets == ("new", "old")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BODY_BYTES", "lots"),
        ("MAX_BODY_BYTES", "0"),
        ("REDIS_URL", "http://example"),
        ("AGORA_NCS_REQUIRE_V2", "maybe"),
        ("REORDER_HOLD_MS", "-1"),
        ("DEDUPE_KEY", "sid"),
        ("REDIS_TIMEOUT_S", "0"),
        ("BODY_READ_TIMEOUT_S", "0"),
        ("BODY_READ_TIMEOUT_S", "soon"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({name: value})
    assert str(err.value).startswith(f"{name}:")


def test_ingress_requires_a_secret() -> None:
    with pytest.raises(ConfigError, match="AGORA_NCS_SECRETS"):
        Settings.from_env({}).require_secrets()


def test_every_variable_is_documented_in_the_readme(project_root) -> None:  # type: ignore[no-untyped-def]
    readme = (project_root / "README.md").read_text()
    missing = [v.env for v in VARIABLES if f"`{v.env}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def test_recording_keys_share_a_hash_tag() -> None:
    names = [keys.recording_dedupe("abc"), keys.recording_order("abc"),
             keys.recording_buffer("abc"), keys.recording_events("abc"),
             keys.recording_turn("abc"), keys.recording_state("abc")]
    assert all(n.startswith("acb:{abc}:") for n in names)
    assert len(set(names)) == len(names)
    assert keys.hash_tag("a{b}c") == "{a(b)c}"


def test_inbox_round_trip_keeps_bytes(redis_client: redis.Redis) -> None:
    body = b'{"x": "\xc3\xa9"}  \n'
    meta = inbox.ReceiveMeta(received_ms=5, signature="v2", secret_index=1,
                             remote_addr="1.2.3.4", request_id="r1")
    entry_id = inbox.store(redis_client, body, meta)
    [(eid, fields)] = redis_client.xrange(keys.INBOX)
    entry = inbox.InboxEntry.from_stream(eid, fields)
    assert entry.entry_id == entry_id
    assert entry.body == body
    assert entry.meta == meta


def test_dead_letter_round_trip_and_requeue(redis_client: redis.Redis) -> None:
    dl_id = deadletters.add(redis_client, 100, kind=deadletters.BODY, reason="invalid_json",
                            detail="Expecting value", body=b"not json",
                            meta={"request_id": "r9", "secret_index": 0})
    dl_id = dl_id.decode()
    [letter] = deadletters.list_(redis_client)
    assert letter.id == dl_id and letter.reason == "invalid_json" and letter.body == b"not json"
    assert deadletters.get(redis_client, dl_id) == letter
    new_id = deadletters.requeue_body(redis_client, letter)
    assert deadletters.count(redis_client) == 0
    [(eid, fields)] = redis_client.xrange(keys.INBOX)
    entry = inbox.InboxEntry.from_stream(eid, fields)
    assert entry.entry_id == new_id
    assert entry.body == b"not json"
    assert entry.meta.origin == f"dlq:{dl_id}"
