"""The wheel installs one top-level package, ``agora_callbacks`` (issue 11)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import agora_callbacks

ROOT = Path(__file__).resolve().parents[1]


#: What the wheel is not built from: what a build, a virtualenv or a tool leaves in
#: the tree (a stale ``build/`` would bring files the tree no longer has).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                     "__pycache__", ".*_cache", ".hypothesis",
                                     ".agora-callbacks")


@pytest.fixture(scope="module")
def source_tree_before() -> set[str]:
    """What the source tree's top level holds before the wheel is built."""
    return {path.name for path in ROOT.iterdir()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory, source_tree_before: set[str]) -> Path:
    """The wheel, built from a copy of the tree: setuptools builds in the directory
    it is given (``build/``, ``*.egg-info``), and the source tree is no place for
    that. The symbolic links (``agora_callbacks/ingress`` ...) are copied as links."""
    source = tmp_path_factory.mktemp("source") / "agora-callbacks"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out), str(source)], check=True)
    (built,) = out.glob("agora_callbacks-*.whl")
    return built


def test_building_the_wheel_leaves_the_source_tree_alone(
        wheel: Path, source_tree_before: set[str]) -> None:
    after = {path.name for path in ROOT.iterdir()}
    assert "build" not in after - source_tree_before
    assert after == source_tree_before, "the wheel's build wrote into the source tree"


def test_wheel_has_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(
        ".dist-info")}
    assert top == {"agora_callbacks"}


def test_wheel_carries_the_pipeline_and_its_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("agora_callbacks/py.typed",
                     "agora_callbacks/ingress/routes.py",
                     "agora_callbacks/schemas/parse.py",
                     "agora_callbacks/workers/app.py",
                     "agora_callbacks/workers/ordering/lua/admit.lua",
                     "agora_callbacks/workers/ordering/PROTOCOL.md",
                     "agora_callbacks/granian_logging.json",
                     "agora_callbacks/ingress/dashboard/templates/dashboard/recording.html",
                     "agora_callbacks/ingress/dashboard/static/dashboard.css"):
        assert required in names, required


def test_public_api_from_the_top_package() -> None:
    from agora_callbacks import Event, InvalidEvent, dedupe_key, on_event, parse_event
    from agora_callbacks.schemas import parse_event as schemas_parse
    from agora_callbacks.workers import on_event as workers_on_event

    assert parse_event is schemas_parse and on_event is workers_on_event
    assert callable(dedupe_key) and issubclass(InvalidEvent, Exception)
    assert Event.__name__ == "Event"


def test_version_is_the_installed_version() -> None:
    from importlib.metadata import version

    assert agora_callbacks.__version__ == version("agora-callbacks")


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        agora_callbacks.nope  # noqa: B018
