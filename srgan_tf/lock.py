"""One training run per workdir: a lock file naming its owner, taken over when that owner is gone."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class WorkdirBusyError(RuntimeError):
    """Another live run holds the workdir; the message names its pid and host."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # unreadable or half-written by a run that died while writing it: stale


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[Path]:
    """Holds `workdir/.lock` for the duration of the block.

    Raises WorkdirBusyError when a live process (on this host, or any process on another host) holds it; a lock
    left by a dead process on this host is taken over.
    """
    path = Path(workdir) / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = _owner(path)
            pid, host = owner.get("pid"), owner.get("host")
            if isinstance(pid, int) and (host != me["host"] or _alive(pid)):
                raise WorkdirBusyError(f"workdir {workdir} is in use by pid {pid} on {host} (if that run is gone, "
                                  f"remove {path})") from None
            path.unlink(missing_ok=True)  # stale: its owner died
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    try:
        yield path
    finally:
        if _owner(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
