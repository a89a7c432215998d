"""
C{simplemail-reindex [--spool DIR] [--check | --rebuild] [USERID...]}: build,
check or rebuild the search index of spool mailboxes by hand
(docs/search.rst), with progress on a terminal.

The server keeps the index in step by itself and rebuilds a damaged one;
this is for a spool restored from a backup, an index to be made before a
server starts, or a look at whether an index matches its mailbox.  It may
run beside a server: it takes the mailboxes' locks as the server does, and
SQLite's own locking keeps the two from writing the index at once.

Exit status: 0, or 1 if C{--check} found an index out of step (it is not
changed), or 2 for a usage error.
"""

import os
import sys
import time

from twisted.python import usage

from twisted_mail import errors
from twisted_mail.stores.spool.indexer import SynchronousReactor, resultOf  # noqa: F401
from twisted_mail.wire import normalizeUserId


class Options(usage.Options):
    synopsis = ("Usage: simplemail-reindex [--spool DIR] [--check | --rebuild] "
                "[--parsers N] [USERID...]")
    longdesc = (
        "Bring the search index of each named user (every user of the spool "
        "if none is named) in step with its mailbox, showing progress. "
        "--check only reports whether each index matches its mailbox (exit "
        "status 1 if one does not); --rebuild throws each index away and "
        "builds it again from the mailbox."
    )
    optParameters = [
        ["spool", "s", "MAILSERVER", "The spool directory (as the server's --spool)."],
        ["parsers", "p", 2, "How many processes parse the messages of a mailbox of "
         "2,000 new messages or more (1: this one).", int],
    ]
    optFlags = [
        ["check", "c", "Report whether each index matches its mailbox; change nothing."],
        ["rebuild", "r", "Throw each index away and build it again."],
    ]

    def parseArgs(self, *userids):
        try:
            self["users"] = [normalizeUserId(u) for u in userids]
        except errors.InvalidUserId as e:
            raise usage.UsageError(str(e))

    def postOptions(self):
        if self["check"] and self["rebuild"]:
            raise usage.UsageError("--check and --rebuild do not go together")
        if self["parsers"] < 1:
            raise usage.UsageError("--parsers must be at least 1")
        if not os.path.isdir(self["spool"]):
            raise usage.UsageError("no spool directory {}".format(self["spool"]))


class Progress:
    """
    One line of progress per user, redrawn in place on a terminal.
    """

    def __init__(self, out, userid):
        self.out = out
        self.userid = userid
        self.started = time.monotonic()
        self.tty = out.isatty()
        self.last = 0.0

    def __call__(self, done, total):
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        line = "{}: {}/{} messages indexed ({:.0f}/s)".format(self.userid, done, total, rate)
        if self.tty:
            self.out.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total:
            self.out.write(line + "\n")
        self.out.flush()


def checkIndex(store, userid):
    """
    Whether the index of C{userid} holds exactly the messages of the
    mailbox (ids and contents).

    @return: C{(missing, extra)}: how many messages it lacks and holds
        beyond the mailbox.
    """
    from twisted_mail.mail.model import INBOX
    from twisted_mail.stores.spool.indexing import _Everything

    mailbox = store._mailbox(userid)
    total, page = resultOf(mailbox.run(mailbox.mbox.listing, 0, None, False, _Everything()))
    live = {(msgid, key) for msgid, key, _ in page}
    indexed = set(mailbox.index.writer.pairs(INBOX))
    return len(live - indexed), len(indexed - live)


def main(argv=None, out=sys.stdout, err=sys.stderr):
    from twisted_mail.stores.spool.index import IndexDamaged
    from twisted_mail.stores.spool.store import SpoolStore

    options = Options()
    try:
        options.parseOptions(argv if argv is not None else sys.argv[1:])
    except usage.UsageError as e:
        err.write("simplemail-reindex: {}\n{}\n".format(e, options.synopsis))
        return 2
    store = SpoolStore(options["spool"], reactor=SynchronousReactor())
    status = 0
    try:
        users = options["users"] or resultOf(store.listUsers())
        for userid in users:
            try:
                resultOf(store.hasUser(userid))
                mailbox = store._mailbox(userid)
                if options["check"]:
                    try:
                        missing, extra = checkIndex(store, userid)
                    except IndexDamaged as e:
                        out.write("{}: index unusable ({})\n".format(userid, e))
                        status = 1
                        continue
                    if missing or extra:
                        status = 1
                        out.write("{}: index out of step: {} missing, {} extra\n".format(
                            userid, missing, extra))
                    else:
                        out.write("{}: index in step\n".format(userid))
                    continue
                if options["rebuild"]:
                    mailbox.index.writer.discard()
                mailbox.index.progress = Progress(out, userid)
                mailbox.index.parsers = options["parsers"]
                started = time.monotonic()
                resultOf(mailbox.index.sync())
                out.write("{}: index in step ({:.1f} s)\n".format(
                    userid, time.monotonic() - started))
            except errors.MailError as e:
                err.write("simplemail-reindex: {}: {}\n".format(userid, e))
                status = status or 1
    finally:
        store.close()
    return status


def run():
    sys.exit(main())


if __name__ == "__main__":
    run()
