"""What both command-line tools share: one error style, `PROG: what is wrong` on
one line of stderr with the exit status of ipc.py, for click's own usage errors
too (scripts and journald read one line more easily than a usage block)."""
from __future__ import annotations

import sys

import click

from ..core.names import redact_text

# click >= 8.2 raises this for a bare command; its message is the whole help text.
_HELP_ERRORS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class Fail(click.ClickException):
    """A failure reported as one line, `PROG: <message>`, with its exit status."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class OneLineGroup(click.Group):
    """A click group whose every failure is one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        prog = prog_name or self.name
        try:
            code = super().main(args, prog, complete_var, False, **extra)
        except _HELP_ERRORS as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            die(prog, exc.format_message(), exc.exit_code)
        except click.Abort:
            die(prog, "aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)


def die(prog: str, message: str, code: int):
    click.echo(f"{prog}: " + " ".join(redact_text(str(message)).split()), err=True)
    sys.exit(code)
