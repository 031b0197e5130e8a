"""The README's Monitoring section stays true: its metric table and alert rules
name metrics the endpoints really expose, and every exposed metric is documented."""

from __future__ import annotations

import re
from pathlib import Path

import redis
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agora_callbacks import keys, metrics

NAME = re.compile(r"\bacb_[a-z_]+\b")


def monitoring_section(root: Path) -> str:
    readme = (root / "README.md").read_text()
    start = readme.index("## Monitoring")
    end = readme.find("\n## ", start + 1)
    return readme[start:] if end < 0 else readme[start:end]


def exposed(client: redis.Redis) -> set[str]:
    """Family and sample names of a scrape, with every labelled metric touched once."""
    client.hset(keys.COUNTERS, mapping=dict.fromkeys(metrics.PIPELINE_COUNTERS, 1))
    metrics.INGRESS_VERIFIED.labels("v2")
    metrics.INGRESS_REJECTED.labels("empty_body")
    metrics.INGRESS_RESPONSES.labels("/agora/ncs", "200")
    metrics.INGRESS_DURATION.labels("/agora/ncs")
    metrics.HANDLER_DURATION.labels("h")
    metrics.HANDLER_FAILURES.labels("h")
    metrics.DEADLETTERED.labels("body", "invalid_json")
    metrics.RECORD_FOLDS.labels("folded")
    metrics.LIFECYCLE_PHASES.labels("started")
    text = generate_latest(metrics.scrape_registry(client)).decode()
    # A worker's endpoint adds its intake's figures to the same registry.
    from prometheus_client import CollectorRegistry

    from agora_callbacks.workers.metrics_server import IntakeCollector

    class Step:
        restarts = 0

        def up(self) -> bool:
            return True

    intake = CollectorRegistry()
    intake.register(IntakeCollector(Step()))  # type: ignore[arg-type]
    text += generate_latest(intake).decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_alert_rules_parse_and_use_exposed_metrics(project_root: Path,
                                                   redis_client: redis.Redis) -> None:
    section = monitoring_section(project_root)
    block = re.search(r"```yaml\n(.+?)```", section, re.S)
    assert block, "the Monitoring section has a yaml rules block"
    rules = yaml.safe_load(block.group(1))["groups"][0]["rules"]
    assert len(rules) >= 8
    names = exposed(redis_client)
    for rule in rules:
        assert rule["alert"].startswith("AgoraCallbacks")
        assert rule["annotations"]["summary"]
        used = set(NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= names, f"{rule['alert']} uses unknown {used - names}"
    alerts = " ".join(r["alert"] for r in rules)
    for topic in ("Backlog", "DeadLetters", "RecordingStuck", "IngressErrors", "NoCallbacks"):
        assert topic in alerts


def test_metric_table_matches_the_endpoints(project_root: Path,
                                            redis_client: redis.Redis) -> None:
    section = monitoring_section(project_root)
    documented = set(re.findall(r"^\| `(acb_[a-z_]+)` \|", section, re.M))
    names = exposed(redis_client)
    assert documented <= names, f"documented but not exposed: {documented - names}"
    families = {n for n in names if n.startswith("acb_")
                and not n.endswith(("_bucket", "_count", "_sum", "_created"))}
    undocumented = {n for n in families
                    if n not in documented and f"{n}_total" not in documented}
    assert not undocumented, f"exposed but not in the README: {sorted(undocumented)}"


def test_metric_table_types_and_labels_are_the_metrics(project_root: Path) -> None:
    from prometheus_client.metrics import MetricWrapperBase

    section = monitoring_section(project_root)
    rows = {m.group(1): (m.group(2), set(re.findall(r"`([a-z_]+)`", m.group(3).split("(")[0])))
            for m in re.finditer(r"^\| `(acb_[a-z_]+)` \| (\w+) \|([^|]*)\|", section, re.M)}
    instruments = {m._name: m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert len(instruments) >= 10
    for name, metric in instruments.items():
        row = rows.get(f"{name}_total", rows.get(name))
        assert row is not None, f"{name} has no row"
        kind, labels = row
        assert kind == metric._type, f"{name}: README says {kind}, it is a {metric._type}"
        assert labels == set(metric._labelnames), f"{name}: README labels {labels}, " \
                                                  f"metric labels {metric._labelnames}"


def _row(section: str, metric: str) -> str:
    match = re.search(rf"^\| `{metric}` \|.*$", section, re.M)
    assert match, metric
    return match.group(0)


def test_route_and_rejection_label_values_are_the_ingresss(project_root: Path) -> None:
    from agora_callbacks.ingress import body, signature
    from agora_callbacks.ingress.metrics_endpoint import EXACT_ROUTES, PREFIX_ROUTES

    section = monitoring_section(project_root)
    routes = set(re.findall(r"`([^`]+)`", _row(section, "acb_ingress_responses_total")
                            .split("by route", 1)[1]))
    assert routes == {*EXACT_ROUTES, *(route for _, route in PREFIX_ROUTES), "other"}
    rejected = _row(section, "acb_ingress_rejected_total").split("Refused before storage:", 1)[1]
    documented = set(re.findall(r"`([a-z0-9_]+)`", rejected)) - {"acb_ingress_rejected_total"}
    reasons = {cls.reason for cls in vars(body).values()
               if isinstance(cls, type) and issubclass(cls, body.BodyError)}
    reasons |= {"empty_body"} | {f"signature_{getattr(signature, name)}" for name in
                                 ("MISSING", "V2_REQUIRED", "MALFORMED", "MISMATCH", "NO_SECRETS")}
    assert documented == reasons
