"""The console script's entry: the command line is imported inside it, so a
Ctrl-C in the half second that takes ends as one a moment later does
("loadkit: interrupted", exit 3), not with a traceback."""

from __future__ import annotations

import sys

from loadkit.errors import ExitCode


def entry() -> None:
    try:
        from loadkit.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("loadkit: interrupted\n")
        sys.exit(ExitCode.UNTRUSTED)
    sys.exit(main())
