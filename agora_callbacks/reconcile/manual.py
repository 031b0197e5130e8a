"""``agora-callbacks recording SID --reconcile``: reconcile one recording now.

Runs ``run.run_blocking`` in the command's process (it waits between attempts,
saying so on stderr), then returns the one-line summary the command prints before
the record. Every refusal is a ``click.ClickException`` with one line: reconciliation
off (naming the three variables), no registration, one already in flight.
"""

from __future__ import annotations

from typing import Any

import click
import redis

from agora_callbacks.reconcile import policy
from agora_callbacks.reconcile.run import NotEnabled, NotRegistered, Reconciler, run_blocking
from agora_callbacks.settings import Settings


def _fired(record: dict[str, Any] | None) -> set[str]:
    return set(((record or {}).get("lifecycle") or {}).get("fired") or {})


def summary(facts: dict[str, Any], new_phases: list[str]) -> str:
    """``reconciled with Agora's query: active, status 5 (...), 2 file(s); phases
    fired: finished``."""
    outcome = facts["outcome"]
    bits = [outcome]
    if facts.get("status") is not None:
        bits.append(f"status {facts['status']} ({facts.get('status_meaning') or 'undocumented'})")
    if facts.get("web"):
        bits.append(f"web recorder {facts['web'].get('state') or '-'}")
    if outcome == "ended":
        bits.append(str(facts.get("ended_because")))
    if facts.get("error"):
        err = facts["error"]
        why, status = str(err.get("reason")), err.get("http_status")
        if err.get("code") is not None:
            bits.append(f"error code {err['code']}: {why}")
        elif status is not None and str(status) not in why:
            bits.append(f"HTTP {status}: {why}")
        else:  # a timeout; a reason that names its status ("404 not from Agora ...")
            bits.append(why)
    bits.append(f"{len(facts.get('files') or [])} file(s)")
    fired = ", ".join(new_phases) if new_phases else "none"
    return f"reconciled with Agora's query: {', '.join(bits)}; phases fired: {fired}"


def reconcile_for_cli(settings: Settings, client: redis.Redis, sid: str) -> str:
    """Reconcile ``sid`` now; the summary line."""
    from agora_callbacks.workers.builtin import store

    try:
        reconciler = Reconciler(settings, client)
    except NotEnabled as exc:
        raise click.ClickException(str(exc)) from None

    def waiting(step: policy.Retry) -> None:
        click.echo(f"query: {step.why}; asking again in {step.delay_s:.1f} s", err=True)

    try:
        before = _fired(store.load(client, sid))
        facts, record = run_blocking(reconciler, sid, "manual", on_retry=waiting)
    except (NotRegistered, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        reconciler.close()
    new = sorted(_fired(record) - before)
    return summary(facts, new)
