"""
The login throttle's counts in the spool directory (an
L{twisted_mail.logins.throttle.ISharedCounts}): L{SpoolCounts}, shared by
the worker processes of one server (C{--workers}) and by servers sharing
the spool.

One small file per key, in C{.simplemail-logins/} (a name no user id can
take), named by a hash of the key, holding the row's five numbers; every
update holds an exclusive C{flock} on C{.simplemail-logins/lock} while it
reads and writes its keys' files, so that two processes never both take
the same address's one check a second.  The work runs in a thread.
"""

import fcntl
import hashlib
import os

from twisted.internet.threads import deferToThreadPool


class SpoolCounts:
    """
    Counts kept as files in C{directory} (created, mode 0700).

    @param reactor: the reactor (its thread pool runs the file work).
    @param limit: the most rows kept; past it the rows keeping soonest go.
    @param sweepEvery: forget expired rows every this many updates.
    """

    #: The directory's name in the spool.
    directoryName = ".simplemail-logins"

    def __init__(self, directory, reactor, limit=20000, sweepEvery=500):
        self.directory = directory
        self._reactor = reactor
        self._limit = limit
        self._sweepEvery = sweepEvery
        self._updates = 0
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lockPath = os.path.join(directory, "lock")

    def update(self, keys, now, change):
        self._updates += 1
        sweep = self._updates % self._sweepEvery == 0
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._update, list(keys), now,
            change, sweep)

    def _path(self, key):
        return os.path.join(
            self.directory, hashlib.sha256(key.encode("utf-8")).hexdigest()[:40])

    def _read(self, key):
        try:
            with open(self._path(key), "r", encoding="ascii") as f:
                row = tuple(float(x) for x in f.read().split())
        except (OSError, ValueError):
            return None
        return row if len(row) == 5 else None

    def _write(self, key, row):
        path = self._path(key)
        temporary = path + ".new"
        with open(temporary, "w", encoding="ascii") as f:
            f.write(" ".join(repr(float(x)) for x in row))
        os.replace(temporary, path)

    def _update(self, keys, now, change, sweep):
        fd = os.open(self._lockPath, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            before = {key: self._read(key) for key in keys}
            rows = dict(before)
            result = change(rows)
            for key, row in rows.items():
                if row is not None and tuple(row) != before[key]:
                    self._write(key, row)
            if sweep:
                self._sweep(now)
        finally:
            os.close(fd)  # releases the lock
        return result

    def _sweep(self, now):
        kept = []
        for entry in os.scandir(self.directory):
            if entry.name == "lock":
                continue
            try:
                with open(entry.path, "r", encoding="ascii") as f:
                    keepUntil = float(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                keepUntil = now - 1
            if keepUntil < now:
                self._remove(entry.path)
            else:
                kept.append((keepUntil, entry.path))
        if len(kept) > self._limit:
            kept.sort()
            for _, path in kept[: len(kept) - self._limit]:
                self._remove(path)

    @staticmethod
    def _remove(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
