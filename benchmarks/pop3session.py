"""
How long a POP3 session takes on a small and a large mailbox.

A session is what a mail program does when it fetches mail: connect, USER
and PASS, UIDL, RETR of every message, QUIT (nothing deleted, so that each
run finds the same mailbox).  The mailboxes (400 and 20,000 messages of
about 1.3 KiB by default) are written directly as mbox files in the spool,
in the format the server writes (with its X-Simplemail-Id line), before the
server starts.  Each mailbox gets a fresh server; the session is run
``--runs`` times on it: the first run meets cold caches (the spool indexes
the file and parses the summaries at the first login), the later ones warm.

The goal (issue 11): the cost per message does not grow with the mailbox.

Usage, from the top of the checkout::

    .venv/bin/python benchmarks/pop3session.py [--sizes 400,20000] [--runs 3]
"""

import argparse
import os
import poplib
import secrets
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

GOAL = 1.5  # the large mailbox's warm per-message cost, at most this x the small one's


def writeMailbox(path, count, bodySize):
    """
    An mbox file of C{count} messages as the server stores them.
    """
    line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"
    body = line * max(1, bodySize // len(line))
    with open(path, "wb") as f:
        for n in range(count):
            f.write(
                b"From alice@localhost Fri Dec  4 12:00:00 2026\n"
                b"X-Simplemail-Id: " + secrets.token_urlsafe(12).encode() + b"\n"
                b"From: alice@localhost\n"
                b"To: bob@localhost\n"
                b"Date: Fri, 04 Dec 2026 12:00:00 +0000\n"
                b"Message-ID: <bench%d@localhost>\n"
                b"Subject: message number %d\n"
                b"\n" % (n, n)
            )
            f.write(body)
            f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


def session(port, count):
    """
    One POP3 session; the seconds of each phase.
    """
    times = {}
    start = time.perf_counter()
    p = poplib.POP3("127.0.0.1", port, timeout=300)
    p.user("bob")
    reply = p.pass_("x")
    times["login"] = time.perf_counter() - start
    if not reply.startswith(b"+OK bob has %d messages" % count):
        raise common.BenchError("unexpected login reply {!r}".format(reply))
    t = time.perf_counter()
    _, uids, _ = p.uidl()
    times["uidl"] = time.perf_counter() - t
    if len(uids) != count:
        raise common.BenchError("UIDL listed {} of {}".format(len(uids), count))
    t = time.perf_counter()
    octets = 0
    for n in range(1, count + 1):
        octets += p.retr(n)[2]
    times["retr"] = time.perf_counter() - t
    t = time.perf_counter()
    p.quit()
    times["quit"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - start
    times["octets"] = octets
    return times


def bigRetr(workdir, size):
    """
    RETR of one message of C{size} bytes: how long it takes.  (The
    server's memory is not a useful figure here: the login's summary has
    read the message once already, and the allocator reuses that memory;
    tests/test_pop3.py bounds what the protocol itself allocates.)
    """
    spool = os.path.join(workdir, "spool-big")
    os.makedirs(spool, exist_ok=True)
    line = b"." + b"x" * 78 + b"\n"
    with open(os.path.join(spool, "bob"), "wb") as f:
        f.write(b"From alice@localhost Fri Dec  4 12:00:00 2026\n"
                b"X-Simplemail-Id: " + secrets.token_urlsafe(12).encode() + b"\n"
                b"From: alice@localhost\nTo: bob@localhost\nSubject: big\n\n")
        f.write(line * (size // len(line)))
        f.write(b"\n")
    port = common.freePort()
    popPort = common.freePort(avoid={port})
    server = common.simplemailServer(
        spool, port, os.path.join(workdir, "twistd-big.log"),
        ["--pop3", "tcp:{}:interface=127.0.0.1".format(popPort)],
    )
    server.start()
    try:
        p = poplib.POP3("127.0.0.1", popPort, timeout=300)
        p.user("bob")
        p.pass_("x")
        t = time.perf_counter()
        octets = p.retr(1)[2]
        elapsed = time.perf_counter() - t
        p.quit()
    finally:
        server.stop()
    return {"octets": octets, "seconds": elapsed}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="400,20000",
                        help="mailbox sizes, comma-separated (default 400,20000)")
    parser.add_argument("--runs", type=int, default=3, help="sessions per mailbox")
    parser.add_argument("--body-size", type=int, default=1024,
                        help="approximate body bytes per message")
    parser.add_argument("--big", type=int, default=9 * 2**20,
                        help="bytes of the one message RETR'd for the memory figure "
                             "(0: skip)")
    parser.add_argument("--workdir", help="keep the spool and logs here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = max(1, min(args.runs, 10))

    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    workdir = args.workdir or tempfile.mkdtemp(prefix="simplemail-pop3-")
    rows = []
    warm = {}
    try:
        for count in sizes:
            spool = os.path.join(workdir, "spool-{}".format(count))
            os.makedirs(spool, exist_ok=True)
            t = time.perf_counter()
            writeMailbox(os.path.join(spool, "bob"), count, args.body_size)
            written = time.perf_counter() - t
            mboxSize = os.path.getsize(os.path.join(spool, "bob"))
            print("mailbox of {} messages: {:.1f} MiB, written in {:.2f}s".format(
                count, mboxSize / 2**20, written), flush=True)
            port = common.freePort()
            popPort = common.freePort(avoid={port})
            server = common.simplemailServer(
                spool, port, os.path.join(workdir, "twistd-{}.log".format(count)),
                ["--pop3", "tcp:{}:interface=127.0.0.1".format(popPort)],
            )
            server.start()
            try:
                for run in range(1, runs + 1):
                    cpu = common.cpuSeconds(server.pid)
                    times = session(popPort, count)
                    cpu = common.cpuSeconds(server.pid) - cpu
                    rows.append([
                        count, run, common.fmt(times["login"], "{:.3f}"),
                        common.fmt(times["uidl"], "{:.3f}"),
                        common.fmt(times["retr"], "{:.3f}"),
                        common.fmt(times["total"], "{:.3f}"),
                        common.fmt(1e6 * times["retr"] / count, "{:.0f}"),
                        common.fmt(1e6 * times["total"] / count, "{:.0f}"),
                        common.fmt(1e6 * cpu / count, "{:.0f}"),
                    ])
                    print("  run {}: {:.3f}s in all".format(run, times["total"]), flush=True)
                    if run > 1 or runs == 1:
                        warm.setdefault(count, []).append(times["total"] / count)
            finally:
                server.stop()
        big = bigRetr(workdir, args.big) if args.big else None
    finally:
        if args.keep or args.workdir:
            print("kept:", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    common.printTable(
        ["messages", "run", "login s", "UIDL s", "RETR all s", "session s",
         "RETR us/msg", "session us/msg", "server CPU us/msg"],
        rows,
    )
    small, large = min(warm), max(warm)
    if small != large:
        ratio = common.median(warm[large]) / common.median(warm[small])
        print()
        print("warm session cost per message: {} messages {:.0f} us, {} messages "
              "{:.0f} us, ratio {:.2f}".format(
                  small, 1e6 * common.median(warm[small]),
                  large, 1e6 * common.median(warm[large]), ratio))
        print("GOAL 1 per-message cost does not grow with the mailbox "
              "(ratio <= {}): {}".format(GOAL, common.verdict(ratio <= GOAL)))
    if big is not None:
        print()
        print("RETR of one {:.1f} MiB message (every line dot-stuffed): {:.2f}s, "
              "{:.0f} MiB/s".format(big["octets"] / 2**20, big["seconds"],
                                    big["octets"] / 2**20 / big["seconds"]))


if __name__ == "__main__":
    main()
