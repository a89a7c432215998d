"""
Indexing deliveries in a process of its own, at a lower priority: the
process (L{main}; the server's side is
L{twisted_mail.stores.spool.indexerprocess.IndexerProcess}).

Indexing a message (reading it back, parsing it, writing its text) costs
more CPU than delivering it.  Done in the server it competes with the
deliveries for the GIL; done here it runs on another core, or when the
server leaves the CPU idle (C{nice} 10), and never delays an
acknowledgement.  The server writes a user id per line on the process's
standard input, at most once per L{KICK_DELAY} per mailbox after a
delivery batch; the process catches that user's INBOX index up with the
mail that arrived (L{MailboxIndex.catchUp}: its cost follows the new mail,
not the mailbox), through a spool store of its own, under the same locks
as any process sharing the spool, coalescing the lines waiting.  After
deliveries through the journal the line also says where they are, with
their ids, keys and UIDs (L{MailboxIndex.delivered}), and the process
reads them without the mailbox's locks, which would otherwise hold up the
server's next deliveries (L{MailboxIndex.indexHanded}); once no
kick has come for L{SETTLE} seconds, it syncs those users in full (the
same L{MailboxIndex.sync} a search would run first).  It ends at the end of its input: when the server
closes it or dies.

Nothing depends on it: a search still catches up what it has not yet done
(L{MailboxIndex.freshen}), and should it fail to start or end early, the
server indexes in its own threads as before, until a kick starts it again
(L{twisted_mail.stores.spool.indexerprocess.RESTART_DELAY}).

    python -m twisted_mail.stores.spool.indexer SPOOL
"""

import json
import os
import select
import signal
import sys

from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_mail.stores.base import AtOnce

#: How much lower the process's priority is than the server's.
NICENESS = 10

#: Seconds without a kick after which the users caught up since are
#: synced in full (their deletes, flag changes and rewrites indexed, and
#: the index's stamp brought up to date, so a search need not).
SETTLE = 2.0

#: How many processes parse a large catch-up (a mailbox the server has
#: not indexed yet): L{twisted_mail.stores.spool.indexing.PARALLEL_FROM}.
PARSERS = 2


class SynchronousReactor(AtOnce, Clock):
    """
    A reactor whose thread pool runs work at once, on this thread: a
    command-line tool (or a benchmark, or this process) has nothing else to
    do meanwhile.
    """


def resultOf(d):
    """
    The result of a L{Deferred} that has fired (raising its failure).
    """
    box = []
    d.addBoth(box.append)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


#: The most input taken at once (L{_waitingLines}): what the process holds
#: of the kicks waiting, however far behind it is.
READ_AT_ONCE = 1 << 22


def _waitingLines(fd):
    """
    Block for input on C{fd}, then take what is waiting, up to about
    L{READ_AT_ONCE} bytes.

    @return: the bytes read, empty at the end of input.
    """
    data = os.read(fd, 65536)
    while data and len(data) < READ_AT_ONCE and select.select([fd], [], [], 0)[0]:
        more = os.read(fd, 65536)
        if not more:
            break
        data += more
    return data


def _readKicks(lines, err):
    """
    The kicks of input lines: the users to catch up by reading their
    mailboxes (a line naming one), and those whose deliveries the server
    handed over (a JSON line: the user and the deliveries, as
    L{IndexerProcess.kick} writes it).

    @return: C{(plain, handed)}: a L{dict} of users (in order), and one
        from user to the deliveries handed over, in order.
    """
    plain, handed = {}, {}
    for line in lines:
        if line.startswith(b"["):
            try:
                userid, deliveries = json.loads(line)
                if type(userid) is not str or type(deliveries) is not list or not all(
                        type(d) is list and len(d) == 6 for d in deliveries):
                    raise ValueError("not a user and deliveries")
            except (ValueError, TypeError) as e:
                err.write("unreadable kick ({}): {!r}\n".format(e, line[:80]))
                err.flush()
                continue
            handed.setdefault(userid, []).extend(deliveries)
        elif line:
            plain[line.decode("utf-8", "replace")] = None
    return plain, handed


def serve(spoolPath, fd, err=sys.stderr):
    """
    Catch up the indexes of the users named on C{fd}, until its end.
    """
    from twisted_mail.stores.spool.store import SpoolStore

    store = SpoolStore(spoolPath, reactor=SynchronousReactor())
    rest = b""
    # Users caught up since their last full sync: synced in full once no
    # kick has come for SETTLE seconds.
    settling = {}

    def each(userids, how):
        for userid in userids:
            try:
                index = store._mailbox(userid).index
                index.parsers = PARSERS
                resultOf(how(index))
            except Exception as e:
                err.write("{}: {}\n".format(userid, e))
                err.flush()

    try:
        while True:
            if settling and not select.select([fd], [], [], SETTLE)[0]:
                users = list(settling)
                settling.clear()
                each(users, lambda index: index.sync())
                continue
            data = _waitingLines(fd)
            *lines, rest = (rest + data).split(b"\n")
            plain, handed = _readKicks(lines, err)
            for userid, deliveries in handed.items():
                if userid not in plain:
                    each([userid], lambda index, d=deliveries: index.indexHanded(d))
            each(plain, lambda index: index.catchUp())
            settling.update(dict.fromkeys(handed))
            settling.update(plain)
            if not data:
                return
    finally:
        store.close()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    # Signals from the terminal (Ctrl-C on "twistd -n") are for the server,
    # which then closes this process's input: it ends there, having finished
    # what it was doing, rather than with a KeyboardInterrupt traceback in
    # the server's log.  (A --workers worker does the same.)
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(argv[0], sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
