"""``agora-callbacks simulate``: realistic, signed recording traffic to a URL."""

from __future__ import annotations

import json
import os
import random
import socket
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

import click

from agora_callbacks.cli import context
from agora_callbacks.cli.output import ERROR, OK, CommandFailed, status
from agora_callbacks.simulate import lifecycles, sender

KIND_CHOICES = [*lifecycles.KINDS, "mixed"]
#: Seconds to wait for the receiver to accept a connection before sending anything.
PROBE_TIMEOUT_S = 3.0
#: Most recordings one run sends (``-n``): every request is built and signed before
#: the first is sent, some 20 to 40 per recording; 10,000 recordings take over an
#: hour at the default rate. A larger load is several runs.
MAX_RECORDINGS = 10_000
#: Most concurrent connections (``-c``): one thread each; far more than an ingress
#: serves at once (``WEB_CONCURRENCY`` x ``WEB_THREADS``).
MAX_CONCURRENCY = 256


def find_secret(option: str | None) -> tuple[str, str]:
    """The secret to sign with and where it came from: ``--secret``, the first of
    ``AGORA_NCS_SECRETS``, else the one ``agora-callbacks dev`` generated in its data
    dir. A usage error when there is none."""
    if option:
        return option, "--secret"
    raw = os.environ.get("AGORA_NCS_SECRETS", "")
    first = next((part.strip() for part in raw.split(",") if part.strip()), "")
    if first:
        return first, "AGORA_NCS_SECRETS"
    generated = context.dev_secret()
    if generated:
        return generated, f"the dev stack's {context.dev_dir() / context.SECRET_FILE}"
    raise click.UsageError(
        "no secret: pass --secret, set AGORA_NCS_SECRETS, or run `agora-callbacks dev` "
        f"from this directory (it keeps its secret in {context.dev_dir() / context.SECRET_FILE})")


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast, before anything is sent, when nothing accepts connections at ``url``."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a port out of range or not a number, a broken [IPv6]
        raise click.BadParameter(f"{exc}: {url}", param_hint="'--url'") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"expected an http:// or https:// URL, got {url}",
                                 param_hint="'--url'")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except UnicodeError:  # the name cannot be looked up: an empty or too long label
        raise click.BadParameter(f"not a valid host name: {parts.hostname}",
                                 param_hint="'--url'") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CommandFailed(
            f"nothing answers at {url} ({why}): start the ingress (`agora-callbacks dev`) "
            "or pass --url") from None


def counts(values: object) -> str:
    """``401 x14, 503 x2`` from ``{"401": 14, "503": 2}``; ``none`` when empty."""
    assert isinstance(values, Mapping)
    return ", ".join(f"{k} x{v}" for k, v in values.items()) or "none"


def verdict(figures: Mapping[str, object], secret_source: str) -> tuple[str, bool]:
    """One line saying whether the receiver took everything, and what to check when
    it did not; and whether it did."""
    sent, accepted = figures["sent"], figures["accepted"]
    assert isinstance(sent, int) and isinstance(accepted, int)
    if sent == accepted:
        return f"OK: all {sent} requests accepted (200)", True
    rejected = figures["rejected"]
    errors = figures["errors"]
    assert isinstance(rejected, dict) and isinstance(errors, dict)
    parts = [f"{n} answered {code}" for code, n in rejected.items()]
    parts += [f"{n} failed ({name})" for name, n in errors.items()]
    line = f"FAILED: {accepted} of {sent} requests accepted; {', '.join(parts)}"
    hints = {
        "401": f"401: the signature was refused: check the secret (signed with "
               f"{secret_source}; the ingress verifies with its AGORA_NCS_SECRETS)",
        "413": "413: the bodies were refused as too large: check the ingress's "
               "MAX_BODY_BYTES (and the limit of a proxy in front of it)",
        "503": "503: the ingress could not store the bodies: is its Redis up?",
    }
    for code, hint in hints.items():
        if code in rejected:
            line += f". {hint}"
    return line, False


def _default_url() -> str:
    return f"http://127.0.0.1:{context.env_int('PORT', 8080)}/agora/ncs"


def _share(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default=_default_url, show_default="http://127.0.0.1:$PORT/agora/ncs",
              help="Callback URL to post to.")
@click.option("--secret", default=None,
              help="NCS secret to sign with [default: the first of AGORA_NCS_SECRETS, "
                   "else the secret of the `agora-callbacks dev` of this directory]")
@click.option("--recordings", "-n", default=1, show_default=True,
              type=click.IntRange(1, MAX_RECORDINGS),
              help="Number of recordings.")
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="mixed", show_default=True,
              help="Recording kind; mixed cycles through all three.")
@click.option("--rate", default=50.0, show_default=True, type=click.FloatRange(0),
              callback=context.finite,
              help="Requests per second (0: as fast as possible).")
@click.option("--duplicates", default=0.0, show_default=True, type=float, callback=_share,
              help="Share of notifications sent twice (redundant delivery or resend).")
@click.option("--reorder-ms", default=0, show_default=True, type=click.IntRange(0),
              help="Delay each request by a random 0..N ms before ordering them.")
@click.option("--loss", default=0.0, show_default=True, type=float, callback=_share,
              help="Share of notifications never sent.")
@click.option("--with-errors", is_flag=True, help="Recordings with warnings and errors.")
@click.option("--with-failover", is_flag=True, help="Recordings with a failover (new uid).")
@click.option("--with-transcoding", is_flag=True,
              help="Individual recordings with postponed transcoding results.")
@click.option("--real-traffic", is_flag=True,
              help="As captured traffic: file infos (4) twice, the exit (11) before the "
                   "upload report (31), a failover's recorder sending again.")
@click.option("--with-backup", is_flag=True,
              help="Uploads that end with 32 backuped (files via Agora Cloud Backup).")
@click.option("--seed", default=None, type=int,
              help="Seed for reproducible traffic (sids included); random by default.")
@click.option("--concurrency", "-c", default=4, show_default=True,
              type=click.IntRange(1, MAX_CONCURRENCY),
              help="Concurrent keep-alive connections.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
              callback=context.finite,
              help="Seconds to wait for each answer (NCS waits 10).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def simulate(url: str, secret: str | None, recordings: int, kind: str, rate: float,
             duplicates: float, reorder_ms: int, loss: float, with_errors: bool,
             with_failover: bool, with_transcoding: bool, real_traffic: bool,
             with_backup: bool, seed: int | None, concurrency: int,
             timeout: float, as_json: bool, quiet: bool) -> None:
    """Send realistic, correctly signed recording lifecycles to URL.

    Each recording is the full event sequence Agora sends for an individual,
    composite or web page recording, signed like NCS signs it (both headers).
    Duplicates, reordering and loss imitate NCS's delivery. Ends with one verdict
    line; exits 1 when any request was not answered 200 (or nothing answers at URL).

    \b
    Example:
      agora-callbacks simulate --recordings 10 --duplicates 0.1 --reorder-ms 200
    """
    secret, secret_source = find_secret(secret)
    probe(url)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    rng = random.Random(f"{seed}:sids")
    kinds: list[lifecycles.Kind] = (
        lifecycles.mixed_kinds(recordings, seed) if kind == "mixed"
        else [kind] * recordings  # type: ignore[list-item]
    )
    envelopes = [
        lifecycles.lifecycle(k, lifecycles.new_sid(rng), seed=seed, with_errors=with_errors,
                             with_failover=with_failover,
                             with_transcoding=with_transcoding and k == "individual",
                             real_traffic=real_traffic, with_backup=with_backup)
        for k in kinds
    ]
    plan = sender.build_plan(envelopes, secret, duplicates=duplicates, reorder_ms=reorder_ms,
                             loss=loss, rate=rate, seed=seed)
    err = sys.stderr
    if not as_json:
        click.echo(f"Sending {len(plan.deliveries)} requests ({plan.events} events of "
                   f"{recordings} recording(s), seed {seed}) to {url}, signed with "
                   f"{secret_source}", err=True)
    show_bar = not quiet and not as_json
    with click.progressbar(length=len(plan.deliveries), label="sending", file=err,
                           hidden=not show_bar) as bar:
        report = sender.send(url, plan.deliveries, rate=rate, concurrency=concurrency,
                             timeout=timeout, on_result=lambda d, s: bar.update(1))
    figures = sender.summary(plan, report)
    figures["kinds"] = kinds
    figures["seed"] = seed
    line, ok = verdict(figures, secret_source)
    if as_json:
        click.echo(json.dumps({**figures, "ok": ok, "verdict": line}, indent=2))
    else:
        _print_summary(figures)
        click.echo(status(line, OK if ok else ERROR))
    if not ok:
        sys.exit(1)


def _print_summary(f: dict[str, object]) -> None:
    rows = [
        ("recordings", f["recordings"]),
        ("events", f["events"]),
        ("requests sent", f["sent"]),
        ("accepted (200)", f["accepted"]),
        ("rejected (status x count)", counts(f["rejected"])),
        ("transport errors", counts(f["errors"])),
        ("duplicates sent", f["duplicates_sent"]),
        ("dropped by loss", f["dropped_by_loss"]),
        ("sent out of order", f["reordered"]),
        ("elapsed", f"{f['elapsed_s']} s"),
        ("achieved rate", f"{f['rate_per_s']} req/s"),
        ("latency p50 / p99", f"{f['latency_ms_p50']} / {f['latency_ms_p99']} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        text = str(value)
        if name in ("rejected (status x count)", "transport errors") and text != "none":
            text = status(text, ERROR)
        click.echo(f"{name:<{width}}  {text}")
    click.echo("recordings sent (see each with `agora-callbacks recording SID`):")
    kinds = f["kinds"]
    sids = f["sids"]
    assert isinstance(kinds, list) and isinstance(sids, list)
    for sid, kind in zip(sids, kinds, strict=True):
        click.echo(f"  {sid}  {kind}")
