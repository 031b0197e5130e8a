"""The README's two newcomer commands stay true."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


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


# --- Command line: every command and option the README shows exists ---

#: What the README shows after ``agora-callbacks`` that is not a command line: the
#: intake's process title in ``ps`` and the dev stack's banner.
_NOT_COMMANDS = ("agora-callbacks intake", "agora-callbacks dev stack is up")


def _readme_command_lines(readme: str) -> list[str]:
    """Every ``agora-callbacks ...`` command line of the README: in a code span, in a
    shell example (``$ ...``, continuation lines joined), or printed by ``dev``; and the
    ``dlq ...`` spans, which name the command without its program."""
    text = re.sub(r"\\\n\s*", " ", readme)
    lines = re.findall(r"`(agora-callbacks [^`]+)`", text)
    lines += re.findall(r"^\s*(?:\$ (?:[^|\n]*\| )?)?(agora-callbacks [^\n#(]+)", text, re.M)
    lines += [f"agora-callbacks {span}" for span in re.findall(r"`(dlq\s[^`]+)`", text)]
    lines = [" ".join(line.split()) for line in lines]
    expanded = []
    for line in lines:
        line = line.strip()
        if line.startswith(_NOT_COMMANDS):
            continue
        alternatives = re.fullmatch(r"(agora-callbacks \w+) (\w+(?: / \w+)+)", line)
        if alternatives:  # "dlq list / show / requeue / export"
            expanded += [f"{alternatives.group(1)} {sub}"
                         for sub in alternatives.group(2).split(" / ")]
        else:
            expanded.append(line)
    return expanded


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The click command the words name (subcommands followed), and its path."""
    import click

    from agora_callbacks.cli import main

    command: click.Command = main
    path: list[str] = []
    for word in words:
        if not isinstance(command, click.Group) or word.startswith("-"):
            break
        sub = command.get_command(click.Context(command), word)
        assert sub is not None, f"README: `agora-callbacks {' '.join([*path, word])}`: " \
                                f"no such command"
        command, path = sub, [*path, word]
    return command, path


def _options(command: Any) -> set[str]:
    import click

    params = command.get_params(click.Context(command))
    return {opt for param in params for opt in (*param.opts, *param.secondary_opts)}


def test_every_command_line_in_the_readme_exists(project_root: Path) -> None:
    lines = _readme_command_lines((project_root / "README.md").read_text())
    assert any(line.startswith("agora-callbacks simulate --url") for line in lines)
    assert "agora-callbacks dlq export" in lines
    for line in lines:
        words = re.sub(r"[\[\]]", "", line).split()[1:]  # "[--json]": an optional option
        command, path = _resolve(words)
        used = {w.split("=", 1)[0] for w in words[len(path):]
                if re.fullmatch(r"--?[a-z][-a-z]*(=.*)?", w)}
        unknown = used - _options(command)
        assert not unknown, f"README: `{line}`: {sorted(unknown)} not options of " \
                            f"`agora-callbacks {' '.join(path)}`"


def _section(readme: str, heading: str) -> str:
    start = readme.index(heading)
    end = readme.find("\n#", start + len(heading))
    return readme[start:] if end < 0 else readme[start:end]


def test_each_commands_section_names_only_its_options(project_root: Path) -> None:
    import click

    readme = (project_root / "README.md").read_text()
    for heading, command_path in (("### On a laptop: `agora-callbacks dev`", ["dev"]),
                                  ("### `simulate`", ["simulate"]), ("### `dlq`", ["dlq"]),
                                  ("### `replay`", ["replay"])):
        command, _ = _resolve(command_path)
        subcommands = [command.get_command(click.Context(command), name)
                       for name in command.list_commands(click.Context(command))] \
            if isinstance(command, click.Group) else []
        known = _options(command).union(*map(_options, subcommands))
        # Lines that show another command (dev prints the simulate line) are that one's.
        own = "\n".join(line for line in _section(readme, heading).splitlines()
                        if not re.search(rf"agora-callbacks (?!{command_path[0]}\b)\w", line))
        named = set(re.findall(r"(?<![\w-])--[a-z][-a-z]*", own))
        assert named, heading
        assert named <= known, f"README, {heading}: {sorted(named - known)} are not options"


def test_the_dev_options_list_is_complete(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    listed = re.search(r"^- Options: (.+?)\(`agora-callbacks dev --help`\)", readme, re.M | re.S)
    assert listed, "the dev section lists its options"
    named = set(re.findall(r"--?[a-z][-a-z]*", listed.group(1).replace("/", " ")))
    command, _ = _resolve(["dev"])
    assert named == _options(command) - {"-h", "--help"}


def test_the_procfile_table_shows_the_procfiles_commands(project_root: Path) -> None:
    procfile = dict(line.split(": ", 1) for line in
                    (project_root / "Procfile").read_text().splitlines() if line.strip())
    section = _section((project_root / "README.md").read_text(), "### Procfile and honcho")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)`", section, re.M))
    assert rows == procfile


# --- Recording lifecycle and record: the README's phases and reasons are the code's ---

def test_the_lifecycle_tables_name_every_phase_and_failure_reason(project_root: Path) -> None:
    from agora_callbacks.workers.builtin import phases

    section = _section((project_root / "README.md").read_text(),
                       "## Recording lifecycle: `@on_recording`")
    tables = re.findall(r"^\| (phase|`failed` reason) \|.*\n\|[-|]+\|\n((?:\|.*\n)+)",
                        section, re.M)
    firsts = {title: {re.match(r"\| `(\w+)`", row).group(1)  # type: ignore[union-attr]
                      for row in rows.splitlines()} for title, rows in tables}
    assert firsts["phase"] == set(phases.ORDER)
    assert firsts["`failed` reason"] == set(phases.REASONS)


def test_the_record_table_lists_every_status_phase(project_root: Path) -> None:
    from agora_callbacks.workers.builtin.meanings import PHASES

    row = re.search(r"^\| `status` \| `phase` \(([^)]*)\)", (project_root / "README.md")
                    .read_text(), re.M)
    assert row, "the record table has a status row listing the phases"
    assert re.findall(r"`(\w+)`", row.group(1)) == list(PHASES)


def test_the_documented_event_types_are_the_schemas(project_root: Path) -> None:
    from agora_callbacks.schemas.details import DETAILS_TYPES

    readme = (project_root / "README.md").read_text()
    listed = re.search(r"\*\*Every documented Cloud Recording event\*\* \(([^)]*)\)", readme)
    assert listed, "the Events section lists the event types"
    types: set[int] = set()
    for part in " ".join(listed.group(1).split()).split(", "):
        first, _, last = part.partition("-")
        types.update(range(int(first), int(last or first) + 1))
    assert types == set(DETAILS_TYPES)
    assert f"Most teams do not want {len(DETAILS_TYPES)} event handlers" in readme


def test_defaults_quoted_in_the_prose_are_the_real_ones(project_root: Path) -> None:
    """``REDIS_RETRY_S` (30 s)``, ``WORKER_METRICS_PORT` (9808)``: wherever the README
    gives a setting's value in brackets, it is the default, in any unit."""
    from agora_callbacks.settings import VARIABLES

    defaults = {v.env: v.default for v in VARIABLES}
    seconds = {"ms": 0.001, "s": 1, "min": 60, "h": 3600}
    readme = (project_root / "README.md").read_text()
    quoted = re.findall(r"`([A-Z][A-Z0-9_]+)` \((\d+)(?: (ms|s|min|h))?\)", readme)
    assert len(quoted) >= 10
    for name, value, unit in quoted:
        default = float(defaults[name])
        if unit:  # in the variable's own unit: _MS or _S
            default *= 0.001 if name.endswith("_MS") else 1
            assert float(value) * seconds[unit] == default, f"`{name}` ({value} {unit})"
        else:
            assert float(value) == default, f"`{name}` ({value})"
