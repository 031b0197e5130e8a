"""The ``agora-callbacks`` command line.

Each subcommand lives in its own module and is imported only when it is run, so
``agora-callbacks --help`` stays fast and one command's dependencies never slow
another. Register a subcommand by adding it to ``COMMANDS``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

#: command name -> "module:attribute" of a click command.
COMMANDS: dict[str, str] = {
    "simulate": "agora_callbacks.cli.simulate:simulate",
    "web": "agora_callbacks.cli.web:web",
    "dev": "agora_callbacks.cli.dev:dev",
    "dlq": "agora_callbacks.cli.dlq:dlq",
    "replay": "agora_callbacks.cli.replay:replay",
    "recording": "agora_callbacks.cli.recording:recording",
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a Redis failure in the middle of it (the server went
        away, a command refused) is one ``Error:`` line and exit 1, not a traceback."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            import redis

            from agora_callbacks.cli.output import CommandFailed

            if isinstance(exc, redis.RedisError):
                raise CommandFailed(f"Redis: {str(exc).rstrip('.')}") from None
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 done; 1 failed, or not found (one 'Error:' line on "
                    "stderr); 2 a wrong command line.")
@click.version_option(package_name="agora-callbacks")
def main() -> None:
    """Receive Agora Cloud Recording callbacks (NCS) and act on them reliably."""
