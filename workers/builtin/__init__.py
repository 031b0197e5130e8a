"""The recording's record, kept by the workers: its fold (``fold``, ``events``,
``record``, ``meanings``), its store (``store``), its lifecycle phases (``phases``)
and the turn-path code that ties them together (``lifecycle``)."""
