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
