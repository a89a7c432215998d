"""
The server's handle on its indexing process
(L{twisted_mail.stores.spool.indexer}): started at the first kick, told
which users' INBOXes to catch up and, after deliveries through the
journal, where those deliveries are (docs/search.rst).  With C{--workers}
the supervisor runs the one process for every worker, and each worker's
handle (L{IndexerRelay}) writes its kicks on a pipe the supervisor reads
and passes on (L{IndexerProcess.send}).
"""

import json
import os
import sys

from twisted.internet import process, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()

#: How many bytes of hand-overs may wait in the server's memory for the
#: pipe to the process to drain (the process is busy with the last ones):
#: some 80,000 deliveries.  Past it, a kick names the user only, once, and
#: the process reads that mailbox under its locks, which the server's next
#: deliveries may then wait for.
HELD_LIMIT = 8 << 20

#: Seconds after the indexing process ended by itself (or could not start)
#: before a kick starts it again; meanwhile kicks say it will not index
#: (a single server then indexes in its threads; a supervisor drops them,
#: and the next search indexes).
RESTART_DELAY = 10.0


def _userOf(line):
    """
    The user a kick line names (L{None} if it is unreadable): a plain line
    is the user id, a JSON one a list of the user id and the deliveries.
    """
    if not line.startswith(b"["):
        return line.decode("utf-8", "replace")
    try:
        userid = json.loads(line)[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    return userid if type(userid) is str else None


@implementer(IPushProducer)
class _KickLines:
    """
    Kick lines written to the indexing process, or to whatever passes them
    on (L{_open} gives the transport), paused while the pipe is full: what
    is written meanwhile waits in the transport's buffer, up to
    L{HELD_LIMIT} bytes; past it a kick names the user only, once, and the
    process reads the mailbox.
    """

    def __init__(self):
        self.alive = False
        self._full = False
        self._held = 0
        self._named = set()

    def _open(self):
        """
        Make the transport at the first kick.

        @return: whether kicks can be written.
        """
        raise NotImplementedError()

    # The pipe's producer: paused while the process lags behind.

    def pauseProducing(self):
        self._full = True

    def resumeProducing(self):
        self._full = False
        self._held = 0
        self._named.clear()

    def stopProducing(self):
        pass

    def kick(self, userid, handed=None):
        """
        Have the process catch up C{userid}'s INBOX index: with the
        deliveries C{handed} over (L{MailboxIndex.delivered}), or (none)
        by reading the mailbox under its locks.

        @return: whether it will (L{False}: index here).
        """
        if self._full and self.alive and userid in self._named:
            return True
        line = userid.encode("utf-8")
        if handed:
            # A user id never starts with "[" (L{twisted_mail.wire}).
            line = json.dumps([userid, handed], separators=(",", ":")).encode("utf-8")
        return self.send(line, userid)

    def send(self, line, userid=None):
        """
        Write a kick line as L{kick} makes it (a worker's, passed on by the
        supervisor): C{userid} is the user it names, or L{None} to read it
        from the line (only needed while the pipe is full).

        @return: whether the process will have it.
        """
        if not self._open():
            return False
        if self._full:
            # The process is busy: what it is handed waits in the server's
            # memory, up to HELD_LIMIT; past it, the process will read the
            # mailbox instead, named once.
            if userid is None:
                userid = _userOf(line)
                if userid is None:
                    return True  # unreadable: the process would skip it
            if userid in self._named:
                return True
            handed = line.startswith(b"[")
            if handed and self._held + len(line) > HELD_LIMIT:
                handed, line = False, userid.encode("utf-8")
            if not handed:
                self._named.add(userid)
            self._held += len(line) + 1
        self.transport.write(line + b"\n")
        return True


class IndexerProcess(_KickLines, protocol.ProcessProtocol):
    """
    The server's handle on its indexing process
    (L{twisted_mail.stores.spool.indexer}), started at the first L{kick}.

    @param spoolPath: the spool directory.
    @param fallback: what happens instead should the process not start or
        end early, for the log.
    """

    def __init__(self, spoolPath, reactor, fallback="indexing in the server"):
        _KickLines.__init__(self)
        self._fallback = fallback
        self._spoolPath = spoolPath
        self._reactor = reactor
        # When (reactor seconds) a kick may start the process: at once;
        # RESTART_DELAY after it ended by itself or could not start; never
        # (None) once stopped.
        self._startAfter = 0.0

    def _open(self):
        if (not self.alive and self._startAfter is not None
                and self._reactor.seconds() >= self._startAfter):
            if self._startAfter:
                log.info("search indexer: starting it again")
            self._start()
        return self.alive

    def _startLater(self):
        self._startAfter = self._reactor.seconds() + RESTART_DELAY

    def _start(self):
        self.resumeProducing()
        env = dict(os.environ)
        # The process imports this package from where the server did.
        top = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
        env["PYTHONPATH"] = os.pathsep.join(
            [top] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self._reactor.spawnProcess(
                self, sys.executable,
                [sys.executable, "-m", "twisted_mail.stores.spool.indexer", self._spoolPath],
                env=env, childFDs={0: "w", 1: 1, 2: "r"})
        except Exception:
            log.failure("search index: the indexing process could not start; {fallback}",
                        fallback=self._fallback)
            self._startLater()
            return
        self.alive = True
        self.transport.registerProducer(self, True)

    def errReceived(self, data):
        for line in data.decode("utf-8", "replace").splitlines():
            log.warn("search indexer: {line}", line=line)

    def processEnded(self, reason):
        if self.alive:
            log.warn("search indexer ended ({why}); {fallback} until a kick starts it "
                     "again, from {delay:g} s on", why=reason.getErrorMessage(),
                     fallback=self._fallback, delay=RESTART_DELAY)
            self._startLater()
        self.alive = False

    def stop(self):
        """
        End the process (at the end of its input: it finishes its sync),
        for good.
        """
        self._startAfter = None
        if self.alive:
            self.alive = False
            self.transport.closeStdin()


class IndexerRelay(_KickLines):
    """
    A C{--workers} worker's handle on the indexing process its supervisor
    runs for every worker: the kick lines are written on C{fd}, a pipe the
    supervisor reads (L{twisted_mail.service.workers}), which passes them
    on.  One process indexes every worker's deliveries, as one indexes a
    single server's: two would each take turns at the same indexes and
    read each other's writes again (measured: two workers with one each
    delivered 18 % less than one process).

    @param fd: the pipe's write end.
    """

    def __init__(self, fd, reactor):
        _KickLines.__init__(self)
        self._fd = fd
        self._reactor = reactor
        self._opened = False

    def _open(self):
        if not self._opened:
            self._opened = True
            try:
                self.transport = process.ProcessWriter(self._reactor, self, "indexer", self._fd)
            except OSError:
                log.failure("search index: no pipe to the supervisor's indexing process; "
                            "indexing in the worker")
                return False
            self.alive = True
            self.transport.registerProducer(self, True)
        return self.alive

    def childConnectionLost(self, name, reason):
        # L{process.ProcessWriter}'s report: the supervisor is gone, or the
        # worker stopped and the pipe drained.
        self.alive = False
        try:
            os.close(self._fd)
        except OSError:
            pass

    def stop(self):
        if self.alive:
            self.alive = False
            self.transport.loseConnection()
