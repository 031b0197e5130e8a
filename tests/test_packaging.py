"""The wheel installs one top-level package, ``agora_callbacks`` (issue 11)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import agora_callbacks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    (built,) = out.glob("agora_callbacks-*.whl")
    return built


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
