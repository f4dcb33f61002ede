"""Waking up when a file in a folder changes, without polling (Linux inotify, via ctypes).

Used by the embedded broker (a message renamed into the queue folder) and by the long polls'
change watcher (a commit written to SQLite's write-ahead log). ``folder_watch`` gives None
where inotify is not available; callers then poll.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import sys

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000


class FolderWatch:
    """Becomes readable when a file in ``folder`` changes in one of the ways in ``mask``."""

    def __init__(self, folder: str, mask: int) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, f"inotify_add_watch failed on {folder}")
        self.fd = fd

    def wait(self, timeout: float) -> bool:
        """Until something changed (changes since the last wait count) or ``timeout``; True
        if something changed."""
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if not readable:
            return False
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        os.close(self.fd)


def folder_watch(folder: str, mask: int) -> FolderWatch | None:
    """A watch on ``folder``, or None off Linux or when inotify refuses (e.g. no watches left)."""
    if not sys.platform.startswith("linux") or not os.path.isdir(folder):
        return None
    try:
        return FolderWatch(folder, mask)
    except (OSError, AttributeError):
        return None
