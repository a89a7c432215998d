"""
Per-operation cost against the size of the mailbox (goal 3).

Mailboxes of --sizes messages (default 400, 4,000 and 20,000) are prefilled
by writing their mbox files directly, in the format the server writes (see
the protocol document: From_ line, From:/To:/Date:/Message-ID: headers,
blank line, mboxrd-quoted body, blank line), before the server starts; the
server's own count is checked against it.  Then, one operation at a time on
one connection (no concurrency: this measures cost, not throughput):

  USER   the mailbox was already opened once (the first, indexing USER is
         reported apart as "first USER")
  SEND   one-line SEND of a --body-size body to the mailbox, from another user
  READM  successive messages from the start of the mailbox
  DELM   READM (not timed) then DELM (timed), in one session
  DONEU  the end of that session: the expunge that rewrites the mailbox
         without the deleted messages (O(mailbox) by design; informational)

Each is run --ops times per mailbox per round, sizes interleaved, for
--rounds rounds; the figure is the median latency, and the server's CPU
time per operation (from /proc) beside it.  Goal: each op on the largest
mailbox costs <= 2x what it costs on the smallest.

Then "delete all": mailboxes of --delete-sizes messages (default 4,000 and
20,000) are emptied by one client, READM + DELM for every message (the two
commands written together, both replies awaited), then DONEU.  Linear cost
means the same time per message at both sizes (goal: not quadratic; the
script flags a per-message ratio above 1.5).

Every phase is capped by --phase-seconds; the whole run takes a few minutes.
"""

import argparse
import os
import random
import shutil
import string
import sys
import tempfile
import time
import uuid
from email.utils import formatdate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import fmt, median, ms, printTable  # noqa: E402

DOMAIN = "localhost"
OPS = ("USER", "SEND", "READM", "DELM")


def mboxRecord(sender, receiver, body, when):
    """
    One message as the server stores it (PROTOCOL.md, "The spool").
    """
    stamp = time.asctime(time.gmtime(when))
    headers = (
        "From: {s}@{d}\nTo: {r}@{d}\nDate: {date}\nMessage-ID: <{mid}@{d}>\n\n".format(
            s=sender, r=receiver, d=DOMAIN, date=formatdate(when, usegmt=True),
            mid=uuid.uuid4().hex,
        )
    ).encode("ascii")
    # Bodies are generated without "From " lines: no mboxrd quoting needed.
    return b"From " + ("%s@%s" % (sender, DOMAIN)).encode("ascii") + b" " + \
        stamp.encode("ascii") + b"\n" + headers + body + b"\n"


def makeBodies(rng, n, size):
    letters = string.ascii_letters + string.digits + "    "
    bodies = []
    for _ in range(n):
        lines = []
        total = 0
        while total < size:
            k = min(72, max(1, size - total - 1))
            line = "b" + "".join(rng.choice(letters) for _ in range(k - 1))
            lines.append(line)
            total += len(line) + 1
        bodies.append(("\n".join(lines) + "\n").encode("ascii"))
    return bodies


def prefill(spool, name, count, bodies):
    """
    Write a mailbox of C{count} messages straight into the spool.
    """
    when = time.time() - 86400
    path = os.path.join(spool, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb", buffering=1 << 20) as f:
        for i in range(count):
            f.write(mboxRecord("filler", name, bodies[i % len(bodies)], when + i))
        f.flush()
        os.fsync(f.fileno())
    return os.path.getsize(path)


class Timer:
    """
    Latencies of one kind of operation, and the server CPU each used.
    """

    def __init__(self):
        self.latencies = []
        self.cpu = []

    def time(self, pid, fn):
        c0 = common.cpuSeconds(pid)
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        self.cpu.append(common.cpuSeconds(pid) - c0)
        self.latencies.append(t1 - t0)


def measureRound(args, server, names, text, results):
    """
    One round: every operation --ops times on every mailbox, the mailboxes
    taking turns op by op (so that a slow spell of the disk falls on all
    sizes alike).
    """
    deadline = time.monotonic() + args.phase_seconds
    pid = server.pid
    readers, senders = {}, {}
    try:
        for name in names:
            readers[name] = common.SyncClient(server.port)
            senders[name] = common.SyncClient(server.port)
            senders[name].command(b"USER sender")

        def each(op, fn):
            for _ in range(args.ops):
                if time.monotonic() > deadline:
                    raise common.BenchError("--phase-seconds reached during " + op)
                for name in names:
                    results[name][op].time(pid, lambda: fn(name))

        def user(name):
            readers[name].command(("USER " + name).encode("ascii"))

        def send(name):
            senders[name].command(b"SEND " + name.encode("ascii") + b" " + text)

        def readm(name):
            readers[name].send(b"READM\r\n")
            readers[name].multiline()

        def delm(name):
            readers[name].command(b"DELM")

        each("USER", user)
        each("SEND", send)
        for name in names:
            user(name)  # a fresh session: the cursor at the first message
        each("READM", readm)
        for _ in range(args.ops):
            if time.monotonic() > deadline:
                raise common.BenchError("--phase-seconds reached during DELM")
            for name in names:
                readm(name)  # not timed
                results[name]["DELM"].time(pid, lambda: delm(name))
        for name in names:
            results[name]["DONEU"].time(pid, lambda: readers[name].command(b"DONEU"))
    finally:
        for c in list(readers.values()) + list(senders.values()):
            c.close()


def pipeliningCheck(server, name, n):
    """
    Time READM+DELM pairs sent one command at a time, then with both
    commands in one write: a server that leaves Nagle's algorithm on holds
    the second reply until the client's delayed ACK (~40 ms).
    """
    client = common.SyncClient(server.port)
    try:
        client.command(("USER " + name).encode("ascii"))
        t0 = time.perf_counter()
        for _ in range(n):
            client.send(b"READM\r\n")
            client.multiline()
            client.command(b"DELM")
        sequential = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for _ in range(n):
            client.send(b"READM\r\nDELM\r\n")
            client.multiline()
            client.reply()
        pipelined = (time.perf_counter() - t0) / n
        client.command(b"DONEU")
    finally:
        client.close()
    return sequential, pipelined


def deleteAll(args, server, name, expected):
    """
    Empty a mailbox one message at a time; return the figures.
    """
    deadline = time.monotonic() + args.phase_seconds
    client = common.SyncClient(server.port, timeout=120)
    try:
        line = client.command(("USER " + name).encode("ascii"))
        count = int(line.split()[3])
        if count != expected:
            raise common.BenchError("{} has {} messages, not {}".format(name, count, expected))
        cpu0 = common.cpuSeconds(server.pid)
        stamps = []
        t0 = time.perf_counter()
        deleted = 0
        while deleted < count and time.monotonic() < deadline:
            if args.pipeline_deletes:
                client.send(b"READM\r\nDELM\r\n")
                client.multiline()
                client.reply()
            else:
                client.send(b"READM\r\n")
                client.multiline()
                client.command(b"DELM")
            deleted += 1
            if deleted % 100 == 0:
                stamps.append(time.perf_counter() - t0)
        loop = time.perf_counter() - t0
        cpu = common.cpuSeconds(server.pid) - cpu0
        t1 = time.perf_counter()
        client.command(b"DONEU")
        expunge = time.perf_counter() - t1
        left = int(client.command(("USER " + name).encode("ascii")).split()[3])
    finally:
        client.close()
    half = len(stamps) // 2
    firstHalf = stamps[half - 1] if half else None
    secondHalf = stamps[-1] - stamps[half - 1] if half else None
    return {
        "name": name,
        "size": count,
        "deleted": deleted,
        "complete": deleted == count,
        "seconds": loop,
        "perMessage": loop / deleted if deleted else None,
        "cpuPerMessage": cpu / deleted if deleted else None,
        "halves": (firstHalf, secondHalf),
        "expunge": expunge,
        "left": left,
    }


def intoDatabase(url, spool):
    """
    Copy the prefilled spool into a PostgreSQL database (simplemail-migrate
    to-database), its simplemail tables dropped first; C{url} 'throwaway'
    starts a cluster of our own.

    @return: the cluster started (or L{None}) and the database URL.
    """
    sys.path.insert(0, common.CHECKOUT)
    import io

    import psycopg

    from twisted_mail.service import migrate

    cluster = None
    if url == "throwaway":
        from tests.pgserver import Cluster

        cluster = Cluster()
        cluster.start()
        cluster.createDatabase("simplemail")
        url = cluster.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS messages, users, schema_version")
    t0 = time.perf_counter()
    out = io.StringIO()
    if migrate.main(["--spool", spool, "--database", url, "to-database"], stdout=out,
                    stderr=sys.stderr) != 0:
        raise common.BenchError("simplemail-migrate failed")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print("copied into the database in {:.1f} s: {}".format(
        time.perf_counter() - t0, out.getvalue().strip().splitlines()[-1]), flush=True)
    return cluster, url


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="400,4000,20000",
                        help="mailbox sizes for the per-op costs (400,4000,20000)")
    parser.add_argument("--delete-sizes", default="4000,20000",
                        help="mailbox sizes emptied one by one (4000,20000; '' = skip)")
    parser.add_argument("--ops", type=int, default=100,
                        help="operations of each kind per mailbox per round (100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--phase-seconds", type=float, default=120.0,
                        help="cap on each measured phase (120)")
    parser.add_argument("--pipeline-deletes", action="store_true",
                        help="delete-all writes READM and DELM together (pipelined) "
                             "instead of waiting for each reply")
    parser.add_argument("--twistd-wrapper", metavar="SCRIPT", default=None,
                        help="run simplemail with this Python script instead of twistd's "
                             "entry point (e.g. benchmarks/trypatches.py): to measure a "
                             "candidate fix without editing the tree")
    parser.add_argument("--database", default=None, metavar="URL",
                        help="measure the PostgreSQL store: the prefilled spool is copied "
                             "into this database (its simplemail tables dropped first) "
                             "with simplemail-migrate, and the server runs with "
                             "--database; 'throwaway' starts a cluster of its own "
                             "(tests/pgserver.py)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    deleteSizes = [int(x) for x in args.delete_sizes.split(",") if x.strip()]

    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    rng = random.Random(args.seed)
    workdir = args.workdir or tempfile.mkdtemp(prefix="simplemail-scale-")
    spool = os.path.join(workdir, "spool")
    os.makedirs(spool, exist_ok=True)
    bodies = makeBodies(rng, 50, args.body_size)
    text = ("t" + "".join(rng.choice(string.ascii_letters) for _ in range(args.body_size - 1))
            ).encode("ascii")

    t0 = time.perf_counter()
    names = {}
    for size in sizes:
        names[size] = "box{}".format(size)
        prefill(spool, names[size], size, bodies)
    delNames = {}
    for size in deleteSizes:
        delNames[size] = "del{}".format(size)
        prefill(spool, delNames[size], size, bodies)
    prefill(spool, "sender", 0, bodies)
    print("prefilled {} mailboxes in {:.1f} s (spool {})".format(
        len(sizes) + len(deleteSizes), time.perf_counter() - t0, spool), flush=True)

    extra = []
    cluster = None
    if args.database:
        cluster, url = intoDatabase(args.database, spool)
        extra = ["--database", url]
    port = common.freePort()
    server = common.simplemailServer(spool, port, os.path.join(workdir, "twistd.log"),
                                     extra, wrapper=args.twistd_wrapper)
    try:
        server.start()
    except BaseException:
        if cluster is not None:
            cluster.stop()
        raise
    print("server:", server.commandLine(), flush=True)
    try:
        # First USER of each mailbox: reads and indexes the whole file.
        # First USER of each mailbox: the server reads and indexes the whole
        # file.  A CAPA probe (answered by the reactor alone) runs meanwhile.
        first, firstProbe = {}, {}
        client = common.SyncClient(port, timeout=120)
        for size, nm in [(k, v) for k, v in names.items()] + [(k, v) for k, v in delNames.items()]:
            probe = common.Probe(port, "CAPA", 0.02, maxSeconds=150)
            time.sleep(0.3)
            t = time.perf_counter()
            line = client.command(("USER " + nm).encode("ascii"))
            first[nm] = time.perf_counter() - t
            time.sleep(0.1)
            lat = probe.stop()["latencies"]
            firstProbe[nm] = max(lat) if lat else None
            got = int(line.split()[3])
            if got != size:
                raise common.BenchError(
                    "the server counts {} messages in {}, prefilled {}".format(got, nm, size))
        client.command(b"DONEU")
        client.close()

        results = {}
        for size in sizes:
            results[names[size]] = {op: Timer() for op in OPS + ("DONEU",)}
        for r in range(1, args.rounds + 1):
            measureRound(args, server, [names[size] for size in sizes], text, results)
            print("round {} done".format(r), flush=True)

        print()
        print("per-operation cost: median latency in ms [median server CPU ms per op], "
              "{} ops x {} rounds per cell".format(args.ops, args.rounds))
        headers = ["mailbox", "first USER", "CAPA probe max"] + list(OPS) + ["DONEU (expunge)"]
        rows = []
        for size in sizes:
            res = results[names[size]]
            row = ["{} msgs".format(size), fmt(ms(first[names[size]])),
                   fmt(ms(firstProbe[names[size]]))]
            for op in OPS + ("DONEU",):
                t = res[op]
                row.append("{} [{}]".format(fmt(ms(median(t.latencies)), "{:.3f}"),
                                            fmt(ms(median(t.cpu)), "{:.3f}")))
            rows.append(row)
        printTable(headers, rows)
        print()
        small, large = names[min(sizes)], names[max(sizes)]
        verdicts = []
        ratioRows = []
        for op in OPS:
            a, b = results[small][op], results[large][op]
            latRatio = median(b.latencies) / median(a.latencies)
            cpuRatio = median(b.cpu) / median(a.cpu) if median(a.cpu) else None
            ok = latRatio <= 2.0 or (cpuRatio is not None and cpuRatio <= 2.0
                                     and op in ("SEND", "DELM"))
            verdicts.append(ok)
            ratioRows.append([op, fmt(latRatio), fmt(cpuRatio), "<= 2", common.verdict(ok)])
        print("GOAL 3  cost on {} / cost on {} messages:".format(max(sizes), min(sizes)))
        printTable(["op", "latency ratio", "CPU ratio", "target", "verdict"], ratioRows)
        print("(SEND and DELM wait for an fsync, whose time on this disk varies from 0.1 to "
              "10 ms from one moment to the next: for them the server's CPU per op decides "
              "when the latency ratio does not.)")

        pipelining = pipeliningCheck(server, names[min(sizes)], min(30, args.ops))
        print()
        print("pipelining: READM+DELM pairs on {}, {} each way: sequential {:.2f} ms per pair, "
              "pipelined (both commands in one write) {:.2f} ms per pair".format(
                  names[min(sizes)], min(30, args.ops), ms(pipelining[0]), ms(pipelining[1])))

        if deleteSizes:
            print()
            dels = []
            for size in deleteSizes:
                dels.append(deleteAll(args, server, delNames[size], size))
                print("deleted all of {} in {:.1f} s".format(delNames[size], dels[-1]["seconds"]),
                      flush=True)
            rows = []
            for d in dels:
                fh, sh = d["halves"]
                rows.append([
                    "{} msgs".format(d["size"]),
                    "{}{}".format(d["deleted"], "" if d["complete"] else " (capped)"),
                    fmt(d["seconds"], "{:.1f}"),
                    fmt(ms(d["perMessage"]), "{:.3f}"),
                    fmt(ms(d["cpuPerMessage"]), "{:.3f}"),
                    "{} / {}".format(fmt(fh, "{:.1f}"), fmt(sh, "{:.1f}")),
                    fmt(ms(d["expunge"])),
                    d["left"],
                ])
            print("delete all, READM+DELM for each message ({}), then DONEU:".format(
                "pipelined" if args.pipeline_deletes else "each reply awaited"))
            printTable(["mailbox", "deleted", "seconds", "ms/msg", "server CPU ms/msg",
                        "1st half / 2nd half s", "DONEU ms", "left"], rows)
            if len(dels) >= 2 and all(d["perMessage"] for d in dels):
                ratio = dels[-1]["perMessage"] / dels[0]["perMessage"]
                ok = ratio <= 1.5
                print("GOAL 3  delete-all time per message, {} vs {} messages: ratio {:.2f} "
                      "(linear = 1; quadratic would be {:.0f}): {}".format(
                          dels[-1]["size"], dels[0]["size"], ratio,
                          dels[-1]["size"] / dels[0]["size"], common.verdict(ok)))
                verdicts.append(ok)
        print()
        print("GOAL 3 overall: {}".format(common.verdict(all(verdicts))))
    finally:
        server.stop()
        if cluster is not None:
            cluster.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
