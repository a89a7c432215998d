"""
The indexing process's work per delivered message, counted in machine
instructions under valgrind (Debian's ``valgrind``, its cachegrind tool):
the same count on every run, where CPU time on a shared two-vCPU machine
moves 10-20 % between minutes (benchmarks/README.rst, "Tenth stop").

Each --tree (a checkout, "none": this one) is run twice under cachegrind:
2,000 messages are delivered to one mailbox (load.py's 1,024-byte body
through SpoolStore.deliver, or generated mail with --kind mail), then the
first --first, or the first --first + --more, go the way the indexing
process takes deliveries handed over (_readHanded, _parseRecords,
MailboxIndex._index: read back and checked, parsed, written), --batch at a
time.  The difference of the two runs' counts over --more is the figure:
the setup, the start-up and the imports cancel out.

    .venv/bin/python benchmarks/indexinstr.py --tree /tmp/base --tree none

A count is not a time (a cache miss costs more than an addition), but a
change that takes fewer instructions for the same work is cheaper.
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

#: The messages delivered before any is indexed (the same for every count).
DELIVERED = 2000


def child(kind, count, batch):
    """
    Deliver L{DELIVERED} messages, then index the first C{count} as the
    indexing process indexes what it is handed.
    """
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.getcwd())
    from load import makeBody

    from twisted_mail.stores.spool import indexing
    from twisted_mail.stores.spool.index import SearchDatabase
    from twisted_mail.stores.spool.indexer import SynchronousReactor, resultOf
    from twisted_mail.stores.spool.store import SpoolStore, readRecord

    work = tempfile.mkdtemp(prefix="simplemail-indexinstr-")
    sync = os.fsync
    try:
        spool = os.path.join(work, "spool")
        os.makedirs(spool)
        store = SpoolStore(spool, reactor=SynchronousReactor())
        resultOf(store.addUser("u0"))
        # Delivering is not what is counted: no fsync for it.
        os.fsync = lambda fd: None
        if kind == "load":
            body = makeBody(1024, random.Random(1))
            for _ in range(DELIVERED):
                resultOf(store.deliver("alice", "u0", body))
        else:
            from mailgen import MailGenerator

            for _, text in MailGenerator(1).messages(DELIVERED):
                resultOf(store.deliverMessage("x@example.com", "u0", text))
        mailbox = store._mailbox("u0")
        with mailbox.mbox.locked():
            entries = list(mailbox.mbox.entries)
        dirfd = os.open(spool, os.O_RDONLY)
        ino = os.stat("u0", dir_fd=dirfd).st_ino
        handed = [(ino, e.start, e.end, e.msgid, e.key.hex(), e.uid) for e in entries]
        db = SearchDatabase(os.path.join(work, "index.sqlite"))
        db.open()

        class Index:
            # What MailboxIndex._index uses of its mailbox index.
            writer = db
            folderKey = "INBOX"
            _userid = "u0"

        for first in range(0, count, batch):
            records = indexing._readHanded(dirfd, "u0", handed[first:min(count, first + batch)])
            parsed = indexing._parseRecords(readRecord, [(m, r) for m, _, r, _, _ in records])
            indexing.MailboxIndex._index(Index, records, parsed, True)
        db.close()
        os.close(dirfd)
        store.close()
    finally:
        os.fsync = sync
        shutil.rmtree(work)


def instructions(tree, args, count):
    """
    The instructions of one child run under cachegrind.
    """
    cwd = TOP if tree == "none" else tree
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
               "--cachegrind-out-file=/dev/null", sys.executable,
               os.path.join(HERE, "indexinstr.py"), "--child", str(count),
               "--kind", args.kind, "--batch", str(args.batch)]
    # The same hash seed in every run: sets and dicts of str then take the
    # same steps.
    env = dict(os.environ, PYTHONPATH=cwd, PYTHONHASHSEED="0")
    out = subprocess.run(command, cwd=cwd, env=env, check=True, stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, text=True).stderr
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if found is None:
        raise SystemExit("no instruction count in valgrind's output:\n" + out[-2000:])
    return int(found.group(1).replace(",", ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="a checkout to count ('none': this one; default: none)")
    parser.add_argument("--kind", choices=["load", "mail"], default="load",
                        help="load.py's body through SEND (default), or generated mail "
                             "(mailgen.py)")
    parser.add_argument("--first", type=int, default=500,
                        help="messages indexed in the first run (500)")
    parser.add_argument("--more", type=int, default=1000,
                        help="messages more in the second (1000; first + more <= {})"
                        .format(DELIVERED))
    parser.add_argument("--batch", type=int, default=250,
                        help="messages per write (250: load.py's 5,000 msg/s over 10 "
                             "mailboxes, a kick every 0.5 s)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.kind, args.child, args.batch)
    if args.first + args.more > DELIVERED or args.more <= 0 or args.first < 0:
        parser.error("--first + --more must be at most {}, --more above 0".format(DELIVERED))
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    print("command:", " ".join(sys.argv))
    for tree in args.tree or ["none"]:
        a = instructions(tree, args, args.first)
        b = instructions(tree, args, args.first + args.more)
        print("{:<24} {}: {:,} instructions a message".format(
            tree, {"load": "load.py's mail", "mail": "generated mail"}[args.kind],
            (b - a) // args.more), flush=True)


if __name__ == "__main__":
    main()
