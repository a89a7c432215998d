"""
Files beside a mailbox kept open between its jobs: its append intent
(C{.<user>.append}) and its UID record (C{.<user>.uids}).

Every append writes both, and a job that finds the mailbox changed by
another process (another C{--workers} worker, another mail program) reads
both: opened and closed each time, they were two of every three C{open}
calls per delivery batch, and with two workers most of the opens per
message.  A L{SideFile} opens its file once and, before each use, checks
with C{fstat} that the descriptor still names a linked file: a UID record
is rewritten by a rename (a migration, a folder rename) and a folder's
files are unlinked when it is deleted, and then the file at the path is
opened afresh.  The check runs under the mailbox's locks, as the open did.

A process keeps at most L{MAX_KEPT} side files open (a spool of many
mailboxes must not run out of descriptors for its connections): past that,
a side file is opened and closed per use, as before.
"""

import os
import threading

from twisted_mail.stores.spool.locks import _O_FLAGS

#: At most this many side files are kept open by one process.
MAX_KEPT = 256

_keptLock = threading.Lock()
_kept = 0


def keptCount():
    """
    How many side files this process keeps open now.
    """
    return _kept


class SideFile:
    """
    One file beside a mailbox, opened read-write when first used and kept
    open.  Used by the mailbox's jobs, one at a time.
    """

    __slots__ = ("_fd",)

    def __init__(self):
        self._fd = None

    def acquire(self, dirfd, name):
        """
        A descriptor of the file C{name} in C{dirfd}, open read-write; give
        it back with L{release}.

        @raise FileNotFoundError: there is no such file.
        """
        global _kept
        fd = self._fd
        if fd is not None:
            if os.fstat(fd).st_nlink:
                return fd
            self.close()  # renamed over or removed: open what is there now
        fd = os.open(name, os.O_RDWR | _O_FLAGS, dir_fd=dirfd)
        with _keptLock:
            if _kept < MAX_KEPT:
                _kept += 1
                self._fd = fd
        return fd

    def release(self, fd):
        """
        Give back a descriptor L{acquire} returned: closed unless kept.
        """
        if fd != self._fd:
            os.close(fd)

    def close(self):
        """
        Close the kept descriptor, if any.
        """
        global _kept
        fd, self._fd = self._fd, None
        if fd is not None:
            with _keptLock:
                _kept -= 1
            os.close(fd)

    def __del__(self):
        try:
            self.close()
        except (OSError, TypeError):  # pragma: no cover - interpreter exit
            pass
