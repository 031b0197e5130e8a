"""``agora-callbacks simulate``: realistic, signed recording traffic to a URL."""

from __future__ import annotations

import json
import os
import random
import sys

import click

from agora_callbacks.simulate import lifecycles, sender

KIND_CHOICES = [*lifecycles.KINDS, "mixed"]


def _default_secret() -> str | None:
    raw = os.environ.get("AGORA_NCS_SECRETS", "")
    first = next((part.strip() for part in raw.split(",") if part.strip()), "")
    return first or None


def _default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/agora/ncs"


def _share(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1")
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", default=_default_url, show_default="http://127.0.0.1:$PORT/agora/ncs",
              help="Callback URL to post to.")
@click.option("--secret", default=_default_secret, show_default="first of AGORA_NCS_SECRETS",
              help="NCS secret to sign with.")
@click.option("--recordings", "-n", default=1, show_default=True, type=click.IntRange(1),
              help="Number of recordings.")
@click.option("--kind", type=click.Choice(KIND_CHOICES), default="mixed", show_default=True,
              help="Recording kind; mixed cycles through all three.")
@click.option("--rate", default=50.0, show_default=True, type=click.FloatRange(0),
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
@click.option("--concurrency", "-c", default=4, show_default=True, type=click.IntRange(1),
              help="Concurrent keep-alive connections.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1),
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
    Duplicates, reordering and loss imitate NCS's delivery. Exits 1 when any
    request was not answered 200.

    \b
    Example:
      agora-callbacks simulate --recordings 10 --duplicates 0.1 --reorder-ms 200
    """
    if not secret:
        raise click.UsageError("no secret: pass --secret or set AGORA_NCS_SECRETS")
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
                   f"{recordings} recording(s), seed {seed}) to {url}", err=True)
    show_bar = not quiet and not as_json
    with click.progressbar(length=len(plan.deliveries), label="sending", file=err,
                           hidden=not show_bar) as bar:
        report = sender.send(url, plan.deliveries, rate=rate, concurrency=concurrency,
                             timeout=timeout, on_result=lambda d, s: bar.update(1))
    figures = sender.summary(plan, report)
    figures["kinds"] = kinds
    figures["seed"] = seed
    if as_json:
        click.echo(json.dumps(figures, indent=2))
    else:
        _print_summary(figures)
    if report.failed:
        sys.exit(1)


def _print_summary(f: dict[str, object]) -> None:
    rows = [
        ("recordings", f["recordings"]),
        ("events", f["events"]),
        ("requests sent", f["sent"]),
        ("accepted (200)", f["accepted"]),
        ("rejected (status: count)", f["rejected"] or "none"),
        ("transport errors", f["errors"] or "none"),
        ("duplicates sent", f["duplicates_sent"]),
        ("dropped by loss", f["dropped_by_loss"]),
        ("sent out of order", f["reordered"]),
        ("elapsed", f"{f['elapsed_s']} s"),
        ("achieved rate", f"{f['rate_per_s']} req/s"),
        ("latency p50 / p99", f"{f['latency_ms_p50']} / {f['latency_ms_p99']} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")
    click.echo("recordings sent (see each with `agora-callbacks recording SID`):")
    kinds = f["kinds"]
    sids = f["sids"]
    assert isinstance(kinds, list) and isinstance(sids, list)
    for sid, kind in zip(sids, kinds, strict=True):
        click.echo(f"  {sid}  {kind}")
