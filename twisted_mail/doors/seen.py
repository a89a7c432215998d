"""
Reading marks C{\\Seen} (MAILBOX.md), in batches: the messages a
connection reads (C{READM}, POP3 C{RETR}) are handed to the store's
C{markSeen} together, one call per folder view, L{SeenMarks.DELAY} seconds
after the first of them, or at once when the connection is about to look
at flags, leave a folder or end.

Why not one call per read: a store's C{markSeen} is a job on the mailbox's
thread (the spool's writes the C{Status:} line in place, under the
mailbox's locks), and the next C{READM} waits behind it.  Measured on the
spool with C{benchmarks/scale.py} (docs/protocol.rst): one call per
C{READM} made it cost 3.1 ms instead of 0.36; batched, as before.
"""

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


class SeenMarks:
    """
    The messages one connection has read and not yet handed to C{markSeen}.

    @cvar DELAY: seconds from the first read to the C{markSeen} call.
    """

    DELAY = 0.5

    def __init__(self, reactor):
        self._reactor = reactor
        self._pending = []
        self._call = None

    def __bool__(self):
        return bool(self._pending)

    def add(self, view, msgid):
        """
        Message C{msgid} of folder view C{view} was read.
        """
        for known, ids in self._pending:
            if known is view:
                ids.append(msgid)
                break
        else:
            self._pending.append((view, [msgid]))
        if self._call is None:
            self._call = self._reactor.callLater(self.DELAY, self.flush)

    def flush(self):
        """
        Hand every pending read to its view's C{markSeen} now.

        @return: a L{Deferred} firing with L{None} once the store has taken
            them (every door sees them then); it does not fail.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        pending, self._pending = self._pending, []
        marks = [defer.maybeDeferred(view.markSeen, ids).addErrback(_failed)
                 for view, ids in pending]
        return defer.gatherResults(marks).addCallback(lambda _: None)


def _failed(failure):
    log.failure("marking messages read", failure)
