"""
Web login sessions that every worker process of one server shares
(C{--workers}, docs/workers.rst): one small file per session in a directory
of the spool, instead of L{twisted_mail.doors.web.site.Sessions}' memory.

The same contract as L{Sessions}: C{create(userid)} gives a random token
(the cookie), C{user(token)} the user id while the session lives (each use
keeps it alive for L{SESSION_IDLE} more seconds), C{end(token)} ends it, for
every worker at once.

A session's file is named by an HMAC of its token under the server's secret
(L{twisted_mail.service.tap.ServerParts.secret}, new at each server start): the
directory never holds a token, and sessions of an earlier run of the server
are not found (their files are removed once idle).  The file holds the user
id; its modification time is the last use.
"""

import hashlib
import hmac
import os
import secrets

from twisted.logger import Logger

from twisted_mail.doors.web.policy import MAX_SESSIONS, SESSION_IDLE

log = Logger()


class FileSessions:
    """
    Login sessions kept as files in C{directory} (created, mode 0700).

    @param secret: the server's secret (L{bytes}).
    @param clock: an L{IReactorTime}.
    """

    #: The directory's name in the spool (not a user id: it starts with a dot).
    directoryName = ".simplemail-sessions"

    #: Look for idle sessions to remove every this many new sessions.
    sweepEvery = 100

    def __init__(self, directory, secret, clock, idle=SESSION_IDLE, limit=MAX_SESSIONS):
        self.directory = directory
        self._secret = secret
        self._clock = clock
        self._idle = idle
        self._limit = limit
        self._created = 0
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _path(self, token):
        if not isinstance(token, bytes) or not token:
            return None
        name = hmac.new(self._secret, token, hashlib.sha256).hexdigest()
        return os.path.join(self.directory, name)

    def create(self, userid):
        """
        A new session for C{userid}; its token (L{bytes}).
        """
        self._created += 1
        if (self._created - 1) % self.sweepEvery == 0:
            self._sweepAside()
        token = secrets.token_urlsafe(32).encode("ascii")
        path = self._path(token)
        temporary = path + ".new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, userid.encode("utf-8"))
        finally:
            os.close(fd)
        now = self._clock.seconds()
        os.utime(temporary, (now, now))
        os.rename(temporary, path)
        return token

    def user(self, token):
        """
        The user id of the session C{token}, or L{None}; using it keeps it
        alive.
        """
        path = self._path(token)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                userid = f.read().decode("utf-8")
                modified = os.fstat(f.fileno()).st_mtime
        except (OSError, UnicodeDecodeError):
            return None
        now = self._clock.seconds()
        if modified + self._idle <= now:
            self._remove(path)
            return None
        try:
            os.utime(path, (now, now))
        except OSError:
            return None  # ended meanwhile
        return userid

    def end(self, token):
        path = self._path(token)
        if path is not None:
            self._remove(path)

    def _remove(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _sweepAside(self):
        """
        L{_sweep} in the reactor's thread pool (a directory of 10,000
        sessions takes tens of milliseconds to go through); at once when the
        clock is not a reactor with one (tests).
        """
        now = self._clock.seconds()
        getThreadPool = getattr(self._clock, "getThreadPool", None)
        if getThreadPool is None:
            self._sweep(now)
            return
        from twisted.internet.threads import deferToThreadPool

        d = deferToThreadPool(self._clock, getThreadPool(), self._sweep, now)
        d.addErrback(lambda failure: log.failure(
            "sweeping web sessions in {directory} failed", failure,
            directory=self.directory))

    def _sweep(self, now):
        """
        Remove idle sessions (and, past the limit, the least recently used)
        as of C{now}.
        """
        live = []
        for entry in os.scandir(self.directory):
            try:
                modified = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if modified + self._idle <= now:
                self._remove(entry.path)
            else:
                live.append((modified, entry.path))
        if len(live) >= self._limit:
            live.sort()
            for _, path in live[: len(live) - self._limit + 1]:
                self._remove(path)
