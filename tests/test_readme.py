"""The README's two newcomer commands stay true."""

from __future__ import annotations

import re
from pathlib import Path


def _ci_test_command(root: Path) -> str:
    match = re.search(r'^TEST_COMMAND="(.+)"$', (root / ".ci/run").read_text(), re.M)
    assert match, ".ci/run must define TEST_COMMAND"
    return match.group(1)


def test_readme_test_command_is_what_ci_runs(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    assert _ci_test_command(project_root) in readme


def test_readme_run_command_uses_the_dev_stack(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    assert "agora-callbacks dev" in readme


# --- Redis keys: every key name the README shows is built in agora_callbacks/keys.py ---

_PLACEHOLDER = re.compile(r"<[^>]*>")


def _readme_key_names(readme: str) -> set[str]:
    """The ``acb:`` key names in backticks, placeholders normalised to ``<>`` (the
    recording's hash tag ``{sid}`` / ``{<sid>}`` to ``{<>}``), and a last segment
    written ``a|b|c`` expanded."""
    names: set[str] = set()
    for raw in re.findall(r"`(acb:[^`\s]+)`", readme):
        name = _PLACEHOLDER.sub("<>", raw).replace("{sid}", "{<>}")
        head, _, last = name.rpartition(":")
        names.update(f"{head}:{alt}" for alt in last.split("|"))
    return names


def _keys_module_names() -> set[str]:
    """Every key name ``keys`` defines: its string constants, and each function
    called with ``<>`` for every argument."""
    import inspect

    from agora_callbacks import keys

    names: set[str] = set()
    for value in vars(keys).values():
        if isinstance(value, str) and value.startswith(f"{keys.PREFIX}:"):
            names.add(value)
        elif inspect.isfunction(value) and value.__module__ == keys.__name__:
            params = inspect.signature(value).parameters
            result = value(*["<>"] * len(params))
            if isinstance(result, str) and result.startswith(f"{keys.PREFIX}:"):
                names.add(result)
    return names


def test_every_redis_key_the_readme_names_is_built_in_keys_py(project_root: Path) -> None:
    named = _readme_key_names((project_root / "README.md").read_text())
    assert "acb:inbox" in named and "acb:{<>}:slots" in named  # the parser works
    built = _keys_module_names()
    unknown = sorted(named - built)
    assert not unknown, f"README names Redis keys that keys.py does not build: {unknown}"


# --- Configuration: the table lists every setting with its real default and rules ---

def _configuration_rows(readme: str) -> dict[str, tuple[str, str]]:
    """Variable -> (default cell, meaning cell) of the Configuration table."""
    start = readme.index("## Configuration")
    section = readme[start:readme.index("\n## ", start + 1)]
    return {m.group(1): (m.group(2), m.group(3)) for m in
            re.finditer(r"^\| `([A-Z0-9_]+)` \| (.*?) \| (.*) \|$", section, re.M)}


#: Defaults the table states in words instead of the empty string.
_WORDED_DEFAULTS = {"CELERY_BROKER_URL": "(`REDIS_URL`)"}


def test_the_configuration_table_has_every_setting_with_its_default(project_root: Path) -> None:
    from agora_callbacks.settings import VARIABLES

    rows = _configuration_rows((project_root / "README.md").read_text())
    assert set(rows) == {v.env for v in VARIABLES}, (
        f"missing: {sorted({v.env for v in VARIABLES} - set(rows))}, "
        f"unknown: {sorted(set(rows) - {v.env for v in VARIABLES})}")
    for var in VARIABLES:
        expected = _WORDED_DEFAULTS.get(var.env) or (f"`{var.default}`" if var.default
                                                     else "(none)")
        assert rows[var.env][0] == expected, f"{var.env}: README says {rows[var.env][0]}"


def _rule_pairs() -> list[tuple[str, str]]:
    """(variable, other variable) of every rule between two settings, from the
    message each broken rule gives (its first word is the variable to change)."""
    from test_settings_rules import BAD

    from agora_callbacks.settings import VARIABLES, Settings

    names = {v.env for v in VARIABLES}
    envs = [param.values[0] for param in BAD] + [{"SETTLE_S": "300"}]
    pairs = []
    for env in envs:
        message = next(Settings.from_env(env, check=False).problems())
        first = message.split(" ", 1)[0]
        others = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", message)) & names - {first}
        pairs += [(first, other) for other in sorted(others)]
    return pairs


def test_each_rule_between_settings_is_in_both_rows(project_root: Path) -> None:
    rows = _configuration_rows((project_root / "README.md").read_text())
    pairs = _rule_pairs()
    assert ("CLAIM_IDLE_MS", "REORDER_HOLD_MS") in pairs
    missing = [f"{a} row lacks `{b}`" for a, b in pairs if f"`{b}`" not in rows[a][1]]
    missing += [f"{b} row lacks `{a}`" for a, b in pairs if f"`{a}`" not in rows[b][1]]
    assert not missing, missing
