"""
The cost of the mailbox model's writes in the spool (issue 19, "Done when"):

  FLAG   a durable flag change of one message, alternately adding and
         removing \\Flagged on a random message: with the spool's journal
         (the server's default), an F record and one journal sync, then a
         pwrite of its flag lines; with --no-journal, the pwrite and an
         fdatasync of the mbox file
  SEEN   markSeen of one message (the \\Seen of reading: written in place,
         not synced: at the next checkpoint, or the view's end)
  MOVE   moving one message from INBOX to Archive: with the journal, an M
         record and one journal sync, then the append to Archive and the
         delete mark in INBOX, unsynced; with --no-journal, four syncs (the
         move's intent, the append's intent, the data, the delete mark)

With the journal, the clock is advanced by a second every 50 operations,
outside the timing, so that checkpoints sync the files as in the server
(they run off the acknowledgement's path).

on INBOX folders of --sizes messages (default 400 and 20,000) of
--body-size bytes, through a SpoolStore driven synchronously (no reactor
thread hops: the figure is the store's own cost).  Goal: <= 2 ms, and the
largest size's figure <= 1.5x the smallest's.

Then, on one folder of --big-count messages of --big-size bytes (default
20,000 x 50 KB = 1 GB), marking one message read (durably) against what a
rewrite of the file costs (an expunge of one message: the whole file
copied, synced and renamed).

The folders are written directly in the format the store writes (id line,
UID and flag lines with room), with their UID records, before the store
opens them.  Run by hand: python benchmarks/flags.py
"""

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from twisted_mail.mail.message import idHeaderLine, separatorLine  # noqa: E402
from twisted_mail.mail.model import FLAGGED  # noqa: E402
from twisted_mail.stores.spool.flags import storeLines  # noqa: E402
from twisted_mail.stores.spool.folderfile import writeUidRecord  # noqa: E402
from twisted_mail.stores.spool.store import SpoolStore  # noqa: E402
from tests.crashmodel import result  # noqa: E402
from tests.test_store import SynchronousThreads as _Synchronous  # noqa: E402


def fill(spool, user, count, bodySize):
    """
    Write C{user}'s INBOX of C{count} messages as the store writes them.
    """
    os.makedirs(spool, exist_ok=True)
    line = b"x" * 75 + b"\n"
    body = line * max(1, bodySize // len(line))
    when = 1700000000
    with open(os.path.join(spool, user), "wb") as f:
        for uid in range(1, count + 1):
            f.write(separatorLine(b"alice@localhost", when + uid) + b"\n"
                    + idHeaderLine(secrets.token_urlsafe(12)) + storeLines(uid, ())
                    + b"From: alice@localhost\nTo: %s@localhost\nSubject: m%d\n\n"
                    % (user.encode(), uid) + body + b"\n")
        f.flush()
        os.fsync(f.fileno())
    dirfd = os.open(spool, os.O_RDONLY | os.O_DIRECTORY)
    try:
        writeUidRecord(dirfd, user, 1700000000, count + 1, 0)
    finally:
        os.close(dirfd)


def timed(f, n, between=None):
    times = []
    for i in range(n):
        if between is not None and i and i % 50 == 0:
            between()
        started = time.perf_counter()
        f(i)
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.9)]


def measure(spool, user, count, ops, rng, journal=True):
    clock = _Synchronous()
    store = SpoolStore(spool, reactor=clock, journal=journal)
    try:
        started = time.perf_counter()
        view = result(store.openMailbox(user))
        ids = [m.id for m in result(view.listMessages()).messages]
        opened = time.perf_counter() - started
        assert len(ids) == count, (len(ids), count)
        result(store.listFolders(user))  # makes Archive

        def flag(i):
            msgid = rng.choice(ids)
            if i % 2:
                result(view.setFlags([msgid], remove=[FLAGGED]))
            else:
                result(view.setFlags([msgid], add=[FLAGGED]))

        def seen(i):
            result(view.markSeen([rng.choice(ids)]))

        moving = rng.sample(ids, min(ops, len(ids) - 1))

        def move(i):
            result(view.moveMessages([moving[i]], "Archive"))

        def checkpoint():
            clock.advance(1.0)

        between = checkpoint if journal else None
        figures = {"FLAG": timed(flag, ops, between), "SEEN": timed(seen, ops, between),
                   "MOVE": timed(move, len(moving), between)}
        result(view.close())
        return opened, figures
    finally:
        store.close()


def bigFolder(workdir, count, size, rng, journal=True):
    spool = os.path.join(workdir, "big")
    fill(spool, "big", count, size)
    total = os.path.getsize(os.path.join(spool, "big"))
    store = SpoolStore(spool, reactor=_Synchronous(), journal=journal)
    try:
        view = result(store.openMailbox("big"))
        ids = [m.id for m in result(view.listMessages()).messages]
        before = os.stat(os.path.join(spool, "big")).st_ino

        def markRead(i):
            result(view.setFlags([rng.choice(ids)], add=["\\Seen"]))

        read = timed(markRead, 20)
        assert os.stat(os.path.join(spool, "big")).st_ino == before
        result(view.deleteMessages([ids[0]]))
        started = time.perf_counter()
        result(view.close())
        rewrite = time.perf_counter() - started
    finally:
        store.close()
    return total, read, rewrite


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="400,20000")
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--big-count", type=int, default=20000)
    parser.add_argument("--big-size", type=int, default=50 * 1024)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-journal", dest="journal", action="store_false",
                        help="the spool without its journal (each change synced)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = tempfile.mkdtemp(prefix="flags-bench-", dir=os.environ.get("TMPDIR"))
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("journal: {}".format("on" if args.journal else "off (--no-journal)"))
    try:
        rows = {}
        for size in [int(s) for s in args.sizes.split(",")]:
            spool = os.path.join(workdir, "s{}".format(size))
            fill(spool, "bob", size, args.body_size)
            opened, figures = measure(spool, "bob", size, args.ops, rng, args.journal)
            rows[size] = figures
            print("{:>6} messages: first open + list {:.0f} ms".format(size, opened * 1e3))
            for op, (median, p90) in figures.items():
                print("   {:<5} median {:.3f} ms   p90 {:.3f} ms".format(
                    op, median * 1e3, p90 * 1e3))
        sizes = sorted(rows)
        for op in ("FLAG", "SEEN", "MOVE"):
            ratio = rows[sizes[-1]][op][0] / rows[sizes[0]][op][0]
            print("{:<5} {} / {}: {:.2f}x".format(op, sizes[-1], sizes[0], ratio))
        if args.big_count:
            total, read, rewrite = bigFolder(workdir, args.big_count, args.big_size, rng,
                                             args.journal)
            print("{} messages, {:.2f} GB: mark one read median {:.3f} ms (p90 {:.3f});"
                  " rewriting the file {:.0f} ms ({:.0f}x)".format(
                      args.big_count, total / 1e9, read[0] * 1e3, read[1] * 1e3,
                      rewrite * 1e3, rewrite / read[0]))
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
