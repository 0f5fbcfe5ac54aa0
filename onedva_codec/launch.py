"""The `odva` process: its signals are handled before anything heavy is imported.

Ctrl-C, SIGTERM and SIGHUP, at any moment (while torch loads, while a file is being written),
end the process with one line on stderr, the signal's exit code (128 + its number) and no
partial output: the signal is raised in the main thread as `Interrupted`, so that every
`atomic_output` on the way out removes its temporary file. Further signals are ignored while
that happens. Every run, interrupted or not, ends without the interpreter's teardown, which could
abort while a background thread is still inside torch, and during which a late Ctrl-C would end
a finished command with another exit code.
"""

from __future__ import annotations

import os
import signal
import sys

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A termination signal, raised where the main thread happens to be."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _on_signal(signum: int, frame: object) -> None:
    for other in _SIGNALS:  # the clean-up must not be interrupted in its turn
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


def main() -> None:
    for number in _SIGNALS:
        signal.signal(number, _on_signal)
    try:
        from .cli import run
        code = run()
    except Interrupted as exc:  # before a command started: while importing, say
        sys.stderr.write(f"odva: interrupted ({exc}); nothing was written\n")
        code = exc.exit_code
    # The command is over, or was interrupted: a late signal must not end the process during the
    # interpreter's teardown with another exit code, and no teardown is needed (the output is in
    # place or removed, a background thread may still be inside torch, and helper processes end
    # with this one).
    for number in _SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
