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

--flaggers N (issue 22's group commit): instead, a real server (twistd
simplemail from this checkout) and N clients, each on a mailbox of its own
(400 messages), sending FLAG and UNFLAG one after the other for
--seconds; perf counts the server's fdatasync and fsync calls.  Printed:
changes per second, journal syncs per change (1.0 if every command synced
alone; with group commit, about 1 / the number of commands a group
gathers), server CPU per change.

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
    ids = [secrets.token_urlsafe(12) for _ in range(count)]
    with open(os.path.join(spool, user), "wb") as f:
        for uid in range(1, count + 1):
            f.write(separatorLine(b"alice@localhost", when + uid) + b"\n"
                    + idHeaderLine(ids[uid - 1]) + storeLines(uid, ())
                    + b"From: alice@localhost\nTo: %s@localhost\nSubject: m%d\n\n"
                    % (user.encode(), uid) + body + b"\n")
        f.flush()
        os.fsync(f.fileno())
    dirfd = os.open(spool, os.O_RDONLY | os.O_DIRECTORY)
    try:
        writeUidRecord(dirfd, user, 1700000000, count + 1, 0)
    finally:
        os.close(dirfd)
    return ids


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


def flaggers(workdir, n, seconds, journal=True):
    """
    N clients changing flags at once, each in its own mailbox, through a
    real server: C{(changes, seconds, fdatasync+fsync calls, CPU seconds)}.
    """
    import signal
    import subprocess
    import threading

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common

    spool = os.path.join(workdir, "flaggers")
    ids = {}
    for i in range(n):
        ids["u%d" % i] = fill(spool, "u%d" % i, 400, 1024)
    port = common.freePort()
    server = common.simplemailServer(spool, port, os.path.join(workdir, "server.log"),
                                     [] if journal else ["--no-journal"])
    server.start()
    try:
        clients = {}
        for user in ids:
            clients[user] = common.SyncClient(port)
            clients[user].command(b"USER " + user.encode())
        counts = dict.fromkeys(ids, 0)
        stop = threading.Event()

        def run(user):
            client, mine = clients[user], ids[user]
            i = 0
            while not stop.is_set():
                verb = b"FLAG " if i % 2 == 0 else b"UNFLAG "
                client.command(verb + mine[(i // 2) % len(mine)].encode() + b" \\Flagged")
                i += 1
            counts[user] = i

        perf = subprocess.Popen(
            ["perf", "stat", "-x", ",", "-e",
             "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync", "-p", str(server.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        cpu0 = common.cpuSeconds(server.pid)
        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(user,)) for user in ids]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        cpu = common.cpuSeconds(server.pid) - cpu0
        perf.send_signal(signal.SIGINT)
        _, err = perf.communicate(timeout=30)
        syncs = 0
        for line in err.decode("utf-8", "replace").splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                syncs += int(parts[0]) if parts[0].isdigit() else 0
        for client in clients.values():
            client.close()
        return sum(counts.values()), elapsed, syncs, cpu
    finally:
        server.stop()


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
    parser.add_argument("--flaggers", default="",
                        help="comma-separated client counts: the concurrent flag changes "
                             "through a real server instead (e.g. 1,8,32)")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long each --flaggers run lasts (5)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = tempfile.mkdtemp(prefix="flags-bench-", dir=os.environ.get("TMPDIR"))
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("journal: {}".format("on" if args.journal else "off (--no-journal)"))
    try:
        if args.flaggers:
            for n in [int(x) for x in args.flaggers.split(",")]:
                changes, elapsed, syncs, cpu = flaggers(
                    os.path.join(workdir, "f%d" % n), n, args.seconds, args.journal)
                print("{:>3} flaggers: {:6d} changes, {:7.0f} per second, {:.3f} syncs "
                      "per change, {:.3f} ms server CPU per change".format(
                          n, changes, changes / elapsed, syncs / max(changes, 1),
                          cpu * 1e3 / max(changes, 1)))
            print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
            return
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
