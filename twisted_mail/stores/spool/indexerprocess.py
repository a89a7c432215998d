"""
The server's handle on its indexing process
(L{twisted_mail.stores.spool.indexer}): started at the first kick, told
which users' INBOXes to catch up and, after deliveries through the
journal, where those deliveries are (docs/search.rst).
"""

import json
import os
import sys

from twisted.internet import protocol
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


@implementer(IPushProducer)
class IndexerProcess(protocol.ProcessProtocol):
    """
    The server's handle on its indexing process
    (L{twisted_mail.stores.spool.indexer}), started at the first L{kick}.

    @param spoolPath: the spool directory.
    """

    def __init__(self, spoolPath, reactor):
        self._spoolPath = spoolPath
        self._reactor = reactor
        self._started = False
        self.alive = False
        # Whether the pipe to the process is full (it is busy): what is
        # written meanwhile waits in the transport's buffer, up to
        # HELD_LIMIT bytes; past it a kick names the user only, once, and
        # the process reads the mailbox.
        self._full = False
        self._held = 0
        self._named = set()

    def _start(self):
        self._started = True
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
            log.failure("search index: the indexing process could not start; "
                        "indexing in the server")
            return
        self.alive = True
        self.transport.registerProducer(self, True)

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
        if not self._started:
            self._start()
        if not self.alive:
            return False
        if self._full and userid in self._named:
            return True
        name = line = userid.encode("utf-8")
        if handed:
            # A user id never starts with "[" (L{twisted_mail.wire}).
            line = json.dumps([userid, handed], separators=(",", ":")).encode("utf-8")
        if self._full:
            # The process is busy: what it is handed waits in the server's
            # memory, up to HELD_LIMIT; past it, the process will read the
            # mailbox instead, named once.
            if handed and self._held + len(line) > HELD_LIMIT:
                handed, line = None, name
            if not handed:
                self._named.add(userid)
            self._held += len(line) + 1
        self.transport.write(line + b"\n")
        return True

    def errReceived(self, data):
        for line in data.decode("utf-8", "replace").splitlines():
            log.warn("search indexer: {line}", line=line)

    def processEnded(self, reason):
        if self.alive:
            log.info("search indexer ended ({why}); indexing in the server",
                     why=reason.getErrorMessage())
        self.alive = False

    def stop(self):
        """
        End the process (at the end of its input: it finishes its sync).
        """
        if self.alive:
            self.alive = False
            self.transport.closeStdin()
