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
