"""Shared core of the Agora Cloud Recording callback pipeline.

The pipeline itself lives in three top-level packages, in the order a callback
travels: ``ingress`` (verify and store), ``schemas`` (typed events) and
``workers`` (dedupe, order, dispatch). This package holds what they share:
settings, Redis key names, the inbox hand-off, dead letters, logging, the CLI.
"""

__version__ = "0.1.0"
