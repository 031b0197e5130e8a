"""One typed settings object, read once from the environment.

Every variable is declared once in ``VARIABLES`` (name, parser, default, meaning);
``Settings.from_env`` parses them all and raises ``ConfigError`` naming the first
bad variable, then checks them against each other (``Settings.problems``: each rule
between two variables, a one-line message naming both and why). The README's
configuration table lists the same variables and rules, and a test keeps the
variables in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agora_callbacks.errors import ConfigError


def _secrets(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError(f"must be zero or a positive integer, got {raw!r}")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"must be a positive number, got {raw!r}")
    return value


def shown_url(url: str) -> str:
    """``url`` for a message or a note (the settings' errors, the commands' "Redis
    ..." lines): what precedes its last ``@`` (a user and password) masked as
    ``***``, always both, even when the URL is malformed (``redis//:pw@host``, a
    ``/`` in the password, a port that is not a number), where parsing it would not
    find them; the rest as it is (an ``[IPv6]`` host keeps its brackets). A URL
    without ``@`` is shown unchanged."""
    head, at, rest = url.rpartition("@")
    if not at:
        return url
    scheme, slashes, _ = head.partition("//")
    return f"{scheme}{slashes}***@{rest}" if slashes else f"***@{rest}"


def _redis_url(raw: str) -> str:
    url = raw.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port out of range or not a number: ValueError)
    except ValueError as exc:
        raise ValueError(f"not a usable URL ({exc}): {shown_url(raw)!r}") from None
    if parts.scheme not in ("redis", "rediss", "unix", "valkey", "valkeys"):
        raise ValueError(f"expected a redis://, rediss:// or unix:// URL, "
                         f"got {shown_url(raw)!r}")
    # redis-py takes a database that is not a number as database 0, silently.
    db = parse_qs(parts.query).get("db", [None])[0]
    if db is None and parts.scheme != "unix":
        db = parts.path.removeprefix("/") or None
    if db is not None and not db.isdigit():
        raise ValueError(f"the database must be a number, got {db!r} in {shown_url(raw)!r}")
    return url


#: Celery broker URL schemes and the broker each selects (``Settings.broker``).
BROKER_SCHEMES = {"redis": "redis", "rediss": "redis", "unix": "redis", "valkey": "redis",
                  "valkeys": "redis", "amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp"}


def _broker_url(raw: str) -> str:
    url = raw.strip()
    if url and urlsplit(url).scheme not in BROKER_SCHEMES:
        shown = urlsplit(url).scheme or shown_url(url)
        raise ValueError(f"unsupported broker scheme {shown!r}: expected "
                         f"redis://, rediss://, unix:// (Redis) or amqp://, amqps:// "
                         f"(RabbitMQ)")
    return url


#: Redis URL schemes that redis-py (and so ``Settings``) accepts but kombu has no
#: transport for, and kombu's name for each.
KOMBU_SCHEMES = {"valkey": "redis", "valkeys": "rediss", "unix": "redis+socket"}


def kombu_broker_url(url: str) -> str:
    """``url`` as kombu reads a broker URL: ``valkey://`` and ``valkeys://`` as
    ``redis://`` and ``rediss://``, and redis-py's ``unix://[:pw@]/path?db=N`` as
    kombu's ``redis+socket://[:pw@]/path?virtual_host=N``. Other URLs as given."""
    scheme, sep, rest = url.partition("://")
    kombu_scheme = KOMBU_SCHEMES.get(scheme)
    if not sep or kombu_scheme is None:
        return url
    if scheme == "unix":
        base, qmark, query = rest.partition("?")
        params = ["virtual_host=" + p[3:] if p.startswith("db=") else p
                  for p in query.split("&") if p]
        rest = base + (qmark + "&".join(params) if params else "")
    return f"{kombu_scheme}://{rest}"


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _http_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {raw!r}")
    return url


#: Variables read under a former name when the current one is unset.
FORMER_NAMES = {"RECORD_TTL_S": "RECORDING_STATE_TTL_S"}


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, how to parse it, its default, its meaning."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: str
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "AGORA_NCS_SECRETS", "ncs_secrets", _secrets, "",
        "Comma-separated NCS secrets. A request verified by any of them is accepted, "
        "so a secret can be rotated by listing old and new for a while. Required by "
        "the ingress.",
    ),
    Variable(
        "AGORA_NCS_REQUIRE_V2", "require_v2", _bool, "false",
        "Accept only `Agora-Signature-V2` (HMAC-SHA256); refuse requests signed with "
        "V1 (HMAC-SHA1) alone.",
    ),
    Variable(
        "REDIS_URL", "redis_url", _redis_url, "redis://127.0.0.1:6379/0",
        "Redis holding raw bodies, pipeline state and the Celery broker (unless "
        "`CELERY_BROKER_URL` names another). "
        "`agora-callbacks dev` starts an embedded server when this is not set.",
    ),
    Variable(
        "CELERY_BROKER_URL", "celery_broker_url", _broker_url, "",
        "The Celery broker that carries handler tasks: Redis (`redis://`, `rediss://`, "
        "`unix://`) or RabbitMQ (`amqp://`, `amqps://`). Empty: `REDIS_URL`. Redis "
        "keeps the inbox, the ordering state and the dead letters either way. See "
        "\"Choosing a broker\".",
    ),
    Variable(
        "RABBITMQ_CONSUMER_TIMEOUT_S", "rabbitmq_consumer_timeout_s", _positive_int, "1800",
        "RabbitMQ broker only: the server's `consumer_timeout` (rabbitmq.conf, in ms "
        "there; RabbitMQ's default is 30 min), in seconds. RabbitMQ closes the channel "
        "of a delivery unacknowledged for that long and delivers its messages again, so "
        "every handler's time limits are set below min(this, `HANDLER_DEADLINE_S` / 2), "
        "as `HANDLER_VISIBILITY_TIMEOUT_S` is on Redis. Raise both (the server's first) "
        "for handlers that run for hours.",
    ),
    Variable(
        "REDIS_TIMEOUT_S", "redis_timeout_s", _positive_float, "1.0",
        "Connect and read timeout for Redis calls, in seconds. Short, so that a Redis "
        "outage turns into a quick 503 well inside NCS's 10 s budget. Must be below "
        "`REDIS_RETRY_S`, and with it below `INTAKE_HUNG_S`.",
    ),
    Variable(
        "REDIS_RETRY_S", "redis_retry_s", _positive_int, "30",
        "Workers: how long a Redis call that records a handler's outcome (its part of "
        "the turn ended, its dead letter) is retried, with backoff, before the worker "
        "gives up (the recording then waits for `HANDLER_DEADLINE_S`); the same for a "
        "lifecycle hook's claim (then Celery retries the hook task) and outcome. Must exceed "
        "`REDIS_TIMEOUT_S` (room for a retry), be below `HANDLER_DEADLINE_S`, and with "
        "`REDIS_TIMEOUT_S` below `INTAKE_HUNG_S`; the "
        "handlers' time limits leave room for it (see `HANDLER_VISIBILITY_TIMEOUT_S`).",
    ),
    Variable(
        "MAX_BODY_BYTES", "max_body_bytes", _positive_int, "262144",
        "Largest accepted request body (413 above it). Real bodies are 0.5-5 KiB; the "
        "largest documented one (event 31 listing the files of 17 users) stays under "
        "16 KiB. 256 KiB leaves wide headroom, because refusing a real event loses it "
        "for good, while still bounding memory per request.",
    ),
    Variable(
        "BODY_READ_TIMEOUT_S", "body_read_timeout_s", _positive_float, "10",
        "How long the ingress waits for a request's body to arrive complete, in seconds "
        "from its headers, before answering 408. The wait holds no request thread (the "
        "body is read on the event loop, the app runs once it is in), so a client that "
        "stalls or trickles its body costs a connection for this long, nothing more. "
        "NCS sends its 0.5-16 KiB bodies at once and gives up on an attempt after 10 s.",
    ),
    Variable(
        "RETRY_AFTER_S", "retry_after_s", _positive_int, "5",
        "`Retry-After` value sent with a 503 when storage is down.",
    ),
    Variable(
        "TRUSTED_PROXY_HOPS", "trusted_proxy_hops", _non_negative_int, "0",
        "Number of reverse proxies in front of the ingress whose `X-Forwarded-For` is "
        "trusted for the recorded remote address (0: use the socket peer).",
    ),
    Variable(
        "PORT", "port", _positive_int, "8080",
        "Port the ingress listens on (Procfile `web`, `agora-callbacks dev`).",
    ),
    Variable(
        "WEB_CONCURRENCY", "web_concurrency", _positive_int, "2",
        "Number of ingress worker processes.",
    ),
    Variable(
        "WEB_THREADS", "web_threads", _positive_int, "4",
        "Request threads per ingress worker process (the threads that run the Flask "
        "app: a2wsgi's under `WEB_INTERFACE=asgi`, granian's blocking threads under "
        "`wsgi`): while one waits on Redis, another verifies the next request.",
    ),
    Variable(
        "WEB_INTERFACE", "web_interface", _choice("asgi", "wsgi"), "asgi",
        "How `agora-callbacks web` serves the ingress on granian. `asgi`: each body is "
        "read on the event loop within `BODY_READ_TIMEOUT_S`, so a client that stalls "
        "its body holds no request thread (about a third of `wsgi`'s requests per "
        "second: README, \"The body deadline\"). `wsgi`: granian's WSGI interface, the "
        "fastest, with no deadline on bodies (a stalled body holds a request thread "
        "until its client leaves): only behind a proxy that reads whole bodies before "
        "forwarding them (nginx's default request buffering, with `client_body_timeout`).",
    ),
    Variable(
        "ADMIN_TOKEN", "admin_token", _optional_str, "",
        "Bearer token for the admin endpoints (`GET /recordings/<sid>`, "
        "`POST /recordings/<sid>/resource`) and the dashboard's sign-in (`/ui/`, which "
        "can requeue dead letters). When unset those answer 404: closed by default.",
    ),
    Variable(
        "METRICS_TOKEN", "metrics_token", _optional_str, "",
        "Bearer token for the ingress's `GET /metrics` (Prometheus' `authorization` "
        "scrape option), so a scraper's credential cannot read recordings; "
        "`ADMIN_TOKEN` is accepted there too. With neither set `/metrics` answers 404.",
    ),
    Variable(
        "CALLBACK_HANDLERS", "callback_handlers", _names, "",
        "Comma-separated import paths of modules that register handlers with "
        "`@on_event` (besides the `agora_callbacks.handlers` entry-point group).",
    ),
    Variable(
        "BUILTIN_HANDLERS", "builtin_handlers", _bool, "true",
        "Keep each recording's record (every event folded in, in order, by the worker "
        "that takes the event's turn: no task of its own) and fire the lifecycle "
        "hooks (`@on_recording`). `false` for workers that should run only your "
        "handlers.",
    ),
    Variable(
        "DEDUPE_KEY", "dedupe_key", _choice("event", "notice"), "event",
        "`event`: an event is unique by (`sid`, `eventType`, `sequence`), with "
        "`noticeId` for events that have no `sid`/`sequence`; `notice`: by `noticeId` only.",
    ),
    Variable(
        "DEDUPE_TTL_S", "dedupe_ttl_s", _positive_int, "86400",
        "Deduplication window in seconds. A copy arriving within it is dropped; a body "
        "whose `notifyMs` is older than it is dead-lettered as a stale replay. A "
        "recording's keys (its buffered events, its turn) also expire this long after "
        "its last event, so it must exceed `REORDER_HOLD_MS` and `HANDLER_DEADLINE_S`: "
        "else acknowledged events vanish without a dead letter.",
    ),
    Variable(
        "REORDER_HOLD_MS", "reorder_hold_ms", _non_negative_int, "15000",
        "How long a missing `sequence` is waited for before it is skipped. NCS resends "
        "a notification right after a failed attempt, and an attempt may take up to its "
        "10 s timeout, so a resend can trail its successor by a little over 10 s. Must "
        "be below `DEDUPE_TTL_S` and, unless 0 (never wait), above 1.5 x `CLAIM_IDLE_MS`.",
    ),
    Variable(
        "CLAIM_IDLE_MS", "claim_idle_ms", _positive_int, "5000",
        "A stored body taken by a worker that then died is taken over by another "
        "worker after this long without an acknowledgement. A live worker settles a "
        "batch in milliseconds. Takeover rounds are at most half of it apart, so a dead "
        "worker's bodies are taken over within 1.5 x `CLAIM_IDLE_MS`; that must be below "
        "`REORDER_HOLD_MS` (unless that is 0), so that they are recovered before their "
        "successors skip them as a gap.",
    ),
    Variable(
        "HANDLER_VISIBILITY_TIMEOUT_S", "handler_visibility_timeout_s", _positive_int,
        "600",
        "Redis broker only: a handler task whose worker died is redelivered after this "
        "many seconds. It "
        "must exceed the longest handler run, or a slow handler is started twice, so "
        "every handler has a hard time limit below it: this minus a margin "
        "(max(1 s, 5%)) and `REDIS_RETRY_S` (540 s by default), and a soft limit "
        "(`SoftTimeLimitExceeded` in the handler) the margin and `REDIS_RETRY_S` before "
        "that (480 s); so it must exceed twice (`REDIS_RETRY_S` + the margin), and be "
        "below half `HANDLER_DEADLINE_S`. A handler's own `time_limit`, "
        "`soft_time_limit` or retry delay at or above it is refused when the handler is "
        "registered. Time limits are enforced by the prefork pool (the default), not by "
        "`-P solo` or `-P threads`.",
    ),
    Variable(
        "DISPATCH_LEASE_MS", "dispatch_lease_ms", _positive_int, "5000",
        "A worker that took a recording's next event and died before publishing its "
        "handler tasks is replaced after this long (publishing takes milliseconds). "
        "Must be below `HANDLER_DEADLINE_S`.",
    ),
    Variable(
        "HANDLER_DEADLINE_S", "handler_deadline_s", _positive_int, "3600",
        "Safety net: a recording whose current handlers have not all reported this "
        "long after they were published (or after their last retry) has them "
        "dead-lettered as `lost` and moves on. It must exceed the longest wait in the "
        "queue plus one attempt's run, its retry countdown and "
        "`HANDLER_VISIBILITY_TIMEOUT_S`: enforced, on the Redis broker, as more than "
        "twice `HANDLER_VISIBILITY_TIMEOUT_S` (a run and a retry countdown are each below "
        "it, a redelivery comes after it; on RabbitMQ the handlers' time limits are kept "
        "below half of it instead); and more than `REDIS_RETRY_S` and "
        "`DISPATCH_LEASE_MS`, below `DEDUPE_TTL_S`.",
    ),
    Variable(
        "INTAKE_BATCH", "intake_batch", _positive_int, "100",
        "Stored bodies a worker takes in per read (one pipeline of Redis calls each).",
    ),
    Variable(
        "INTAKE_HUNG_S", "intake_hung_s", _positive_float, "60",
        "Workers: an intake process whose loop has not gone round for this many seconds "
        "(stopped, deadlocked, stuck in a call) is hung: the worker's `/healthz` answers "
        "503 and the worker kills it, then restarts it as a dead one. A round takes "
        "about 0.1 s, a few seconds while Redis is unreachable. Must exceed "
        "`REDIS_RETRY_S` plus `REDIS_TIMEOUT_S` (a round may try a Redis call again that "
        "long).",
    ),
    Variable(
        "DEADLETTER_MAXLEN", "deadletter_maxlen", _positive_int, "100000",
        "Dead letters kept (oldest trimmed beyond it).",
    ),
    Variable(
        "RECORD_TTL_S", "record_ttl_s", _positive_int, "604800",
        "How long a recording's folded record is kept after its last change, in seconds "
        "(`RECORDING_STATE_TTL_S`, its former name, is still read when this is unset).",
    ),
    Variable(
        "STALL_AFTER_S", "stall_after_s", _positive_int, "300",
        "A recording that has not ended (no exit (11), neither `finished` nor `failed`) "
        "and sent no event for this long is `stalled` "
        "(and `failed` with reason `stalled` after as long again). A live recording "
        "sends upload progress (33) every minute, and NCS gives up on a notification "
        "after three retries within a few minutes: 5 minutes of silence is four lost "
        "progress notifications in a row. Must be above `SETTLE_S`.",
    ),
    Variable(
        "SETTLE_S", "settle_s", _positive_int, "30",
        "How long the lifecycle waits for the events real traffic sends after an exit "
        "(11) or an upload report (31/32) before `finished`/`files_ready`/`failed` "
        "fire without them (e.g. `uploaded` after `session_exit`, a failover after a "
        "fatal error). Must be below `STALL_AFTER_S`.",
    ),
    Variable(
        "WORKER_METRICS_PORT", "worker_metrics_port", _non_negative_int, "9808",
        "First port of a worker's Prometheus scrape endpoint (`/metrics` on all "
        "interfaces): each worker on a host takes the first free one of this port and "
        "the 15 after it; 0 turns it off. The ingress serves its own on `GET /metrics`.",
    ),
    Variable(
        "LOG_LEVEL", "log_level", _choice("debug", "info", "warning", "error"), "info",
        "Log level.",
    ),
    Variable(
        "LOG_FORMAT", "log_format", _choice("auto", "json", "console"), "auto",
        "`json` lines, readable `console` output, or `auto`: console on a terminal, "
        "JSON otherwise.",
    ),
    Variable(
        "LOG_BUFFER_MS", "log_buffer_ms", _non_negative_int, "100",
        "Ingress only, JSON output only: info lines are written in batches at most this "
        "many milliseconds apart instead of one `write` per line (a warning or error is "
        "written at once, after the lines before it). Lines still buffered when the "
        "process is killed with SIGKILL are lost; 0 writes every line at once.",
    ),
    # Reconciliation with Agora's `query` REST call (agora_callbacks.reconcile).
    Variable(
        "AGORA_APP_ID", "agora_app_id", _optional_str, "",
        "App ID of the Agora project whose recordings are reconciled with Agora's "
        "`query` REST call. Reconciliation is on when this, `AGORA_CUSTOMER_ID` and "
        "`AGORA_CUSTOMER_SECRET` are all set (all three or none).",
    ),
    Variable(
        "AGORA_CUSTOMER_ID", "agora_customer_id", _optional_str, "",
        "Customer ID of Agora's RESTful API (console > RESTful API), the user of the "
        "Basic authentication of `query`.",
    ),
    Variable(
        "AGORA_CUSTOMER_SECRET", "agora_customer_secret", _optional_str, "",
        "Customer secret of Agora's RESTful API, the password of that Basic "
        "authentication. Never logged.",
    ),
    Variable(
        "AGORA_REST_URL", "agora_rest_url", _http_url, "https://api.sd-rtn.com",
        "Base URL of Agora's RESTful API (`https://api.agora.io` is Agora's other "
        "host); tests and proxies point it elsewhere.",
    ),
    Variable(
        "AGORA_RESOURCE_TTL_S", "agora_resource_ttl_s", _positive_int, "259200",
        "How long a recording's registered `resourceId` and mode are kept, in seconds "
        "after the registration: 72 h, the default `resourceExpiredHour` of Agora's "
        "`acquire` (after which `query` no longer answers for it); raise it with "
        "`resourceExpiredHour`.",
    ),
)


#: The variables that turn reconciliation with Agora's ``query`` on (all or none).
RECONCILE_VARIABLES = ("AGORA_APP_ID", "AGORA_CUSTOMER_ID", "AGORA_CUSTOMER_SECRET")


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, typed. Build it with ``Settings.from_env()``."""

    ncs_secrets: tuple[str, ...]
    require_v2: bool
    redis_url: str
    celery_broker_url: str
    rabbitmq_consumer_timeout_s: int
    redis_timeout_s: float
    redis_retry_s: int
    max_body_bytes: int
    body_read_timeout_s: float
    retry_after_s: int
    trusted_proxy_hops: int
    port: int
    web_concurrency: int
    web_threads: int
    web_interface: str
    admin_token: str | None
    metrics_token: str | None
    callback_handlers: tuple[str, ...]
    builtin_handlers: bool
    dedupe_key: str
    dedupe_ttl_s: int
    reorder_hold_ms: int
    claim_idle_ms: int
    handler_visibility_timeout_s: int
    dispatch_lease_ms: int
    handler_deadline_s: int
    intake_batch: int
    intake_hung_s: float
    deadletter_maxlen: int
    record_ttl_s: int
    stall_after_s: int
    settle_s: int
    worker_metrics_port: int
    log_level: str
    log_format: str
    log_buffer_ms: int
    # Reconciliation with Agora's `query` (agora_callbacks.reconcile).
    agora_app_id: str | None
    agora_customer_id: str | None
    agora_customer_secret: str | None
    agora_rest_url: str
    agora_resource_ttl_s: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, check: bool = True,
                 **overrides: Any) -> Settings:
        """Parse every variable; raise ``ConfigError`` naming the first bad one, then
        the first broken rule between two of them (``problems``).

        ``overrides`` (attribute names) replace parsed values, for tests and tools.
        ``check=False`` skips the rules between variables: only for a test that
        shrinks one timeout on purpose.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.env, env.get(FORMER_NAMES.get(var.env, ""), var.default))
            try:
                values[var.attr] = var.parse(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{var.env}: {exc}") from None
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update(overrides)
        settings = cls(**values)
        if check:
            settings.check()
        return settings

    def check(self) -> None:
        """Raise ``ConfigError`` with the first broken rule between two settings."""
        problem = next(self.problems(), None)
        if problem is not None:
            raise ConfigError(problem)

    def problems(self) -> Iterator[str]:
        """Every broken rule between settings, one line each, starting with the
        variable to change and naming the other one."""
        if self.settle_s >= self.stall_after_s:
            yield (f"SETTLE_S ({self.settle_s} s) must be below STALL_AFTER_S "
                   f"({self.stall_after_s} s): a recording waiting out its settle window "
                   f"after an exit would be called stalled")
        if self.dedupe_ttl_s * 1000 <= self.reorder_hold_ms:
            yield (f"DEDUPE_TTL_S ({self.dedupe_ttl_s} s) must exceed REORDER_HOLD_MS "
                   f"({self.reorder_hold_ms} ms): a recording's keys, its buffered events "
                   f"included, expire DEDUPE_TTL_S after its last event, so events held "
                   f"back for a missing sequence would vanish, acknowledged, without a "
                   f"dead letter")
        if self.dedupe_ttl_s <= self.handler_deadline_s:
            yield (f"DEDUPE_TTL_S ({self.dedupe_ttl_s} s) must exceed HANDLER_DEADLINE_S "
                   f"({self.handler_deadline_s} s): a recording's keys expire DEDUPE_TTL_S "
                   f"after its last event, so a recording still waiting for its handlers "
                   f"would lose its turn and the events buffered behind it, acknowledged, "
                   f"without a dead letter")
        if self.reorder_hold_ms and self.claim_idle_ms * 3 >= self.reorder_hold_ms * 2:
            yield (f"CLAIM_IDLE_MS ({self.claim_idle_ms} ms) must be below two thirds of "
                   f"REORDER_HOLD_MS ({self.reorder_hold_ms} ms): the bodies of a worker "
                   f"that died are taken over within 1.5 x CLAIM_IDLE_MS, and their "
                   f"successors would skip them as a gap first")
        if self.redis_retry_s >= self.handler_deadline_s:
            yield (f"REDIS_RETRY_S ({self.redis_retry_s} s) must be below "
                   f"HANDLER_DEADLINE_S ({self.handler_deadline_s} s): a worker still "
                   f"retrying to record a handler's outcome would see the handler "
                   f"dead-lettered as lost meanwhile")
        if self.dispatch_lease_ms >= self.handler_deadline_s * 1000:
            yield (f"DISPATCH_LEASE_MS ({self.dispatch_lease_ms} ms) must be below "
                   f"HANDLER_DEADLINE_S ({self.handler_deadline_s} s): a worker that died "
                   f"before publishing an event's handler tasks is replaced only after "
                   f"DISPATCH_LEASE_MS, so the handlers would be dead-lettered as lost "
                   f"before they were even published")
        if self.broker == "redis" and \
                self.handler_deadline_s <= 2 * self.handler_visibility_timeout_s:
            yield (f"HANDLER_DEADLINE_S ({self.handler_deadline_s} s) must exceed twice "
                   f"HANDLER_VISIBILITY_TIMEOUT_S ({self.handler_visibility_timeout_s} s): "
                   f"a handler's run and its retry countdown are each kept below "
                   f"HANDLER_VISIBILITY_TIMEOUT_S and a worker's lost task is redelivered "
                   f"only after it, so a live handler would be dead-lettered as lost")
        if self.handler_soft_time_limit_s < 1 and self.broker == "amqp":
            yield (f"RABBITMQ_CONSUMER_TIMEOUT_S ({self.rabbitmq_consumer_timeout_s} s) and "
                   f"half HANDLER_DEADLINE_S ({self.handler_deadline_s} s) must each exceed "
                   f"twice REDIS_RETRY_S ({self.redis_retry_s} s) plus twice the time-limit "
                   f"margin ({self._time_limit_margin_s} s): a handler's hard time limit is "
                   f"the lower of the two less the margin and REDIS_RETRY_S, its soft limit "
                   f"as much again before that, and no time would be left for the handler")
        elif self.handler_soft_time_limit_s < 1:
            yield (f"HANDLER_VISIBILITY_TIMEOUT_S ({self.handler_visibility_timeout_s} s) "
                   f"must exceed twice REDIS_RETRY_S ({self.redis_retry_s} s) plus twice "
                   f"the time-limit margin ({self._time_limit_margin_s} s): a handler's "
                   f"hard time limit is HANDLER_VISIBILITY_TIMEOUT_S less the margin and "
                   f"REDIS_RETRY_S, its soft limit as much again before that, and no time "
                   f"would be left for the handler itself")
        missing = self.reconcile_missing
        if missing:
            given = [name for name in RECONCILE_VARIABLES if name not in missing]
            yield (f"{' and '.join(missing)}: not set, while {' and '.join(given)} "
                   f"{'is' if len(given) == 1 else 'are'}: reconciliation with Agora's "
                   f"query needs all three of {', '.join(RECONCILE_VARIABLES)} (or none)")
        if self.redis_retry_s <= self.redis_timeout_s:
            yield (f"REDIS_RETRY_S ({self.redis_retry_s} s) must exceed REDIS_TIMEOUT_S "
                   f"({self.redis_timeout_s:g} s): one Redis call may wait REDIS_TIMEOUT_S "
                   f"for its answer, so not even one retry would fit")
        if self.intake_hung_s <= self.redis_retry_s + self.redis_timeout_s:
            yield (f"INTAKE_HUNG_S ({self.intake_hung_s:g} s) must exceed REDIS_RETRY_S "
                   f"({self.redis_retry_s} s) plus REDIS_TIMEOUT_S "
                   f"({self.redis_timeout_s:g} s): one round of an intake may try a Redis "
                   f"call again for that long, and a working intake would be killed as hung")

    @property
    def broker_url(self) -> str:
        """The Celery broker: ``CELERY_BROKER_URL``, else ``REDIS_URL``."""
        return self.celery_broker_url or self.redis_url

    @property
    def kombu_broker_url(self) -> str:
        """``broker_url`` as kombu reads it (``kombu_broker_url``): what to give
        Celery's ``broker_url`` or ``connection_for_write``."""
        return kombu_broker_url(self.broker_url)

    @property
    def broker(self) -> str:
        """``"redis"`` or ``"amqp"`` (RabbitMQ): which broker ``broker_url`` names."""
        return BROKER_SCHEMES[urlsplit(self.broker_url).scheme]

    @property
    def handler_redelivery_s(self) -> int:
        """How long a handler task's message may stay unacknowledged before the broker
        could deliver it again while it still runs, or the recording would give it
        up: every handler's time limits and retry delays stay below it. Redis: the
        transport's visibility timeout (``HANDLER_VISIBILITY_TIMEOUT_S``). RabbitMQ:
        its ``consumer_timeout`` (``RABBITMQ_CONSUMER_TIMEOUT_S``), and half
        ``HANDLER_DEADLINE_S`` (a run and a retry countdown both fit in the
        deadline); a dead worker's messages come back at once there, when its
        connection closes, not after a timeout."""
        if self.broker == "amqp":
            return min(self.rabbitmq_consumer_timeout_s, self.handler_deadline_s // 2)
        return self.handler_visibility_timeout_s

    @property
    def handler_redelivery_setting(self) -> str:
        """The variable(s) ``handler_redelivery_s`` comes from, for messages."""
        if self.broker == "amqp":
            return (f"RABBITMQ_CONSUMER_TIMEOUT_S={self.rabbitmq_consumer_timeout_s} "
                    f"(or half HANDLER_DEADLINE_S={self.handler_deadline_s})")
        return f"HANDLER_VISIBILITY_TIMEOUT_S={self.handler_visibility_timeout_s}"

    @property
    def reconcile_missing(self) -> list[str]:
        """The reconciliation variables not set while another one is ([] when all or
        none are set)."""
        values = (self.agora_app_id, self.agora_customer_id, self.agora_customer_secret)
        missing = [name for name, value in zip(RECONCILE_VARIABLES, values, strict=True)
                   if not value]
        return missing if len(missing) < len(RECONCILE_VARIABLES) else []

    @property
    def reconcile_enabled(self) -> bool:
        """Reconciliation with Agora's ``query`` is on: its three credentials are set."""
        return bool(self.agora_app_id and self.agora_customer_id
                    and self.agora_customer_secret)

    @property
    def _time_limit_margin_s(self) -> int:
        """Slack below the redelivery horizon: a message's wait in the worker before
        its run starts, and the acknowledgement after a kill."""
        return max(1, self.handler_redelivery_s // 20)

    @property
    def handler_time_limit_s(self) -> int:
        """Hard time limit of every handler task (the pool process is killed): below
        ``handler_redelivery_s`` by the margin and ``REDIS_RETRY_S``, so the
        task is killed, its outcome recorded and its message acknowledged before the
        broker would deliver it again."""
        return self.handler_redelivery_s - self._time_limit_margin_s - self.redis_retry_s

    @property
    def handler_soft_time_limit_s(self) -> int:
        """Soft time limit of every handler task (``SoftTimeLimitExceeded`` raised in
        the handler): the margin and ``REDIS_RETRY_S`` before the hard limit, so the
        failure is recorded (with its Redis retries) before the hard kill."""
        return self.handler_time_limit_s - self._time_limit_margin_s - self.redis_retry_s

    def require_secrets(self) -> None:
        """Refuse to run an ingress that could verify nothing."""
        if not self.ncs_secrets:
            raise ConfigError(
                "AGORA_NCS_SECRETS: not set. The ingress needs at least one NCS secret "
                "(Agora console > Notifications > your Cloud Recording product) to "
                "verify callbacks; several may be given, comma-separated."
            )
