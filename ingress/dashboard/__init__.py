"""The recordings dashboard at ``/ui/``: server-rendered pages (Flask + Jinja).

Closed (404) while no ``ADMIN_TOKEN`` is set. ``auth`` signs in with that token into
a signed session cookie and checks a CSRF token on every form; ``recordings``,
``deadletter_pages`` and ``health_page`` are the pages. Templates and the one
stylesheet ship in this package; the pages load nothing from another origin and
run no script.
"""

from __future__ import annotations

from flask import Blueprint
from flask.blueprints import BlueprintSetupState
from werkzeug.routing import PathConverter

bp = Blueprint("dashboard", __name__, url_prefix="/ui", template_folder="templates",
               static_folder="static", static_url_path="/static")


class SidConverter(PathConverter):
    """``<sid:...>``: a sid is any non-empty string (the schema's rule), a ``/`` or a
    line break included (``path`` stops at a line break, ``string`` at a ``/``)."""

    regex = "(?s:[^/].*?)"


@bp.record_once
def _converters(state: BlueprintSetupState) -> None:
    # Before the routes below are added (their rules are compiled with the map's converters).
    state.app.url_map.converters["sid"] = SidConverter

# The modules below add their routes to ``bp`` (imported for that effect).
from agora_callbacks.ingress.dashboard import (  # noqa: E402
    auth,
    deadletter_pages,
    formatting,
    health_page,
    recordings,
)

__all__ = ["auth", "bp", "deadletter_pages", "formatting", "health_page", "recordings"]
