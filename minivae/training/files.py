"""Writing files so that nothing is lost: atomic writes and a checked output directory.

Every file minivae writes (checkpoints, metrics.json, figures) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target's
directory, are flushed to disk, and the temporary file is then renamed over
the target.  A rename is atomic on POSIX and Windows, so a reader (or a run
killed half way) sees either the old file or the new one, never half of one.
The rename replaces the directory entry itself: when the target is a symbolic
link, the link is replaced by the new file and whatever it pointed to is left
untouched, so a figure is never written *through* a symlink.

:func:`prepare_output_dir` runs before a training run does any work: it creates
the directory, proves that a file can be written and renamed there, checks that
nothing in the way of a file the run will write is a directory, and removes the
temporary files that a killed run's atomic writes left behind.
:func:`claimed_output_dir` does that while holding an operating-system lock on
the directory for the whole run, so a second run into a busy directory stops at
once and touches nothing of the first; the lock goes with the process, however
it ends.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None

#: The name of the file :func:`prepare_output_dir` writes and removes to prove
#: that the directory takes files.
PROBE_NAME = ".minivae-write-test"
#: The file whose lock marks a directory as in use by a run (it holds that run's pid).
LOCK_NAME = ".minivae.lock"


class OutputError(ValueError):
    """The output directory cannot be created or written to."""


def _temporary_prefix(name: str) -> str:
    return f".{name}."


def atomic_write(path, write) -> Path:
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``.

    The temporary file (``.<name>.<random>.tmp`` beside ``path``) is removed
    when ``write`` raises, whatever it raises (Ctrl-C included), so a failed
    write leaves the directory as it was.  A file killed mid-write (SIGKILL,
    power loss) can leave one behind; :func:`remove_orphaned_temporaries`
    removes those.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path.name), suffix=".tmp",
                               dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def remove_orphaned_temporaries(directory, names) -> list:
    """Delete the temporary files atomic writes of ``names`` left in ``directory``; return them.

    Only files named ``.<name>.<anything>.tmp`` for a ``name`` in ``names`` are
    touched, so other files in the directory are safe.
    """
    directory = Path(directory)
    removed = []
    for name in names:
        for p in directory.glob(f"{_temporary_prefix(name)}*.tmp"):
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
    return removed


def check_output_path(name: str, out) -> None:
    """Raise ValueError unless ``out`` is None (write nothing) or a non-empty path."""
    if out is None:
        return
    if not isinstance(out, (str, os.PathLike)) or str(out).strip() == "":
        raise ValueError(f"{name} must name a directory (or be None to write no files), "
                         f"got {out!r}")


def _unwritable(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write into the output directory {str(path)!r}: "
                       f"{exc.strerror or exc}")


def _created_dir(out) -> Path | None:
    """``out`` checked and created (None stays None), or OutputError saying why it cannot be."""
    check_output_path("out", out)
    if out is None:
        return None
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write into the output directory {str(path)!r}: it exists "
                          f"and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    return path


def prepare_output_dir(out, names=()) -> Path | None:
    """Create ``out``, prove a file can be written and renamed in it, and clean it up.

    Returns ``out`` as a Path, or None when ``out`` is None (the run writes
    nothing).  Raises :class:`OutputError` (a ValueError) naming the directory
    and the operating system's reason when ``out`` is a file, lies under a
    file, is not writable, or the disk is full.  ``names`` are the files the
    run will write: one that exists and is not a file (a directory of that
    name) is refused now rather than at the end of the run, and temporary files
    that a killed earlier run left for them are removed (see
    :func:`remove_orphaned_temporaries`).
    """
    path = _created_dir(out)
    if path is None:
        return None
    try:
        probe = atomic_write(path / PROBE_NAME, lambda f: f.write(b"minivae write test\n"))
        probe.unlink()
        remove_orphaned_temporaries(path, (*names, PROBE_NAME))
    except OSError as exc:
        raise _unwritable(path, exc) from None
    for name in names:
        target = path / name
        if target.exists() and not target.is_symlink() and not target.is_file():
            raise OutputError(f"cannot write {name} into {str(path)!r}: {str(target)!r} exists "
                              f"and is not a file; move it away or choose another --out")
    return path


@contextlib.contextmanager
def claimed_output_dir(out, names=()):
    """:func:`prepare_output_dir` under a lock held for the ``with`` block: yields the Path.

    The lock is ``flock`` on ``out/.minivae.lock``, taken without waiting: a
    directory that another run holds raises :class:`OutputError` at once, naming
    that run's pid, before anything in the directory is touched (not even its
    temporary files, which may be that run's writes in flight).  The kernel
    releases the lock when the holder's process ends, whatever ends it.
    """
    path = _created_dir(out)
    if path is None:
        yield None
        return
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "a process"
                raise OutputError(f"another run ({holder}) is writing into {str(path)!r}; wait "
                                  f"for it to end or choose another --out") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield prepare_output_dir(path, names)
    finally:
        os.close(fd)                                   # (releases the lock)
