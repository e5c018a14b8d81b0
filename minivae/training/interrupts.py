"""Ctrl-C and SIGTERM: a run stops cleanly, and a save in progress is never cut short.

Python turns SIGINT (Ctrl-C) into a KeyboardInterrupt raised in the main
thread.  Two helpers build on that:

* :func:`sigterm_as_interrupt` makes SIGTERM (what ``kill``, a job scheduler or
  a container runtime sends) raise :class:`Terminated`, a KeyboardInterrupt, so
  the code that saves a run on Ctrl-C saves it on SIGTERM too.
* :func:`interrupts_deferred` holds both signals back while a checkpoint is
  written.  A second Ctrl-C pressed during the save is remembered instead of
  raised, so it cannot stop the save half way; when the block ends it is
  delivered again, or dropped when the caller is stopping anyway.

Signal handlers can only be installed from the main thread, and Python only
ever runs them there; in any other thread both helpers do nothing, which is
right, since no KeyboardInterrupt can be raised in that thread.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (see :func:`sigterm_as_interrupt`)."""


def signal_name(exc: BaseException) -> str:
    """"SIGTERM" for a :class:`Terminated`, "SIGINT" for any other KeyboardInterrupt."""
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum, frame):
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class _Pending:
    """The first signal that arrived while held (None: none did)."""

    signum = None


@contextlib.contextmanager
def interrupts_deferred(deliver: bool = True):
    """Hold SIGINT and SIGTERM back while the block runs; yield the record of what came.

    When the block ends the handlers in place before are restored, and with
    ``deliver`` a signal that arrived meanwhile is raised again
    (``signal.raise_signal``), so it takes the effect it would have had: a
    KeyboardInterrupt for Ctrl-C, :class:`Terminated` under
    :func:`sigterm_as_interrupt`.  ``deliver=False`` drops it: for a save made
    because the run is already stopping.
    """
    pending = _Pending()
    if not _in_main_thread():
        yield pending
        return

    def hold(signum, frame):
        if pending.signum is None:
            pending.signum = signum

    previous = {}
    try:
        for s in _HELD:
            handler = signal.getsignal(s)
            if handler is not None:          # None: installed outside Python; leave it alone
                previous[s] = signal.signal(s, hold)
        yield pending
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if deliver and pending.signum is not None:
        signal.raise_signal(pending.signum)
