"""Helper processes of the codec (coding workers, device processes): how each starts."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it ends


def become_worker(end_with_parent: bool = True) -> None:
    """Set up a helper process of the codec's (a coding worker, a device process), before it imports
    anything heavy. `end_with_parent`: the kernel ends it when the thread that started it ends (so,
    only for helpers started by a thread that lives as long as its process)."""
    # Ctrl-C reaches every process of the terminal's group; the parent turns it into one line and
    # exit code 130, and a worker must not print a traceback of its own. A forked worker inherits
    # `odva`'s handlers, which would turn the SIGTERM it gets when its parent ends into a traceback:
    # it ends quietly instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if end_with_parent and sys.platform.startswith("linux"):  # and a worker ends with its parent, however
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
