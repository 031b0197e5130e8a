"""The kinds of answer one ``query`` call gets (``client.Answer.kind``; ``client``
says which HTTP outcome is which): what to do next (``policy``), and the label
values of ``acb_reconcile_queries`` (``metrics.RECONCILE_ANSWERS``).

A module of its own, importing nothing: ``metrics`` takes the kinds from here, and
``client`` imports ``metrics``.
"""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["ok", "not_found", "retry", "error", "throttled"]

#: Every kind, in the order above.
KINDS: tuple[Kind, ...] = get_args(Kind)
