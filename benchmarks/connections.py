"""
Many idle connections (goal 4): the server's memory per idle connection, and
how fast a fresh client is answered while they are held.

The script raises RLIMIT_NOFILE for itself and for the server (soft and, as
root, hard limit; it prints what it got), starts twistd simplemail with
--max-connections raised to --connections + 100 (the default, 10,000, would
refuse the fresh clients measured once 10,000 idle ones are held), reads the
server's VmRSS from /proc/PID/status, opens --connections connections (at
most --concurrency connecting at once: the listen backlog is 50), waits for
every greeting, reads VmRSS again, then times --probes fresh clients:
connect, greeting, CAPA, LSTU, QUIT.  Finally it closes everything and
reads VmRSS once more (memory given back is informational).

Goals: (after - before) / connections <= 10 KiB; every fresh client greeted
and answered within 100 ms.
"""

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import fmt, median, ms, percentile, printTable  # noqa: E402


class Idle(asyncio.Protocol):
    """
    A connection that reads the greeting and then says nothing.
    """

    def __init__(self, greeted):
        self.greeted = greeted
        self.buf = b""
        self.transport = None
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if b"\n" in self.buf and not self.greeted.done():
            self.greeted.set_result(self.buf.startswith(b"+OK"))

    def connection_lost(self, exc):
        self.lost = True
        if not self.greeted.done():
            self.greeted.set_result(False)


async def openIdle(port, n, concurrency, deadline):
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency)
    conns = []
    failures = []

    async def one():
        async with sem:
            if loop.time() > deadline:
                failures.append("deadline")
                return
            greeted = loop.create_future()
            try:
                transport, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: Idle(greeted), "127.0.0.1", port), 30
                )
            except (OSError, asyncio.TimeoutError) as e:
                failures.append(repr(e))
                return
            try:
                ok = await asyncio.wait_for(greeted, 30)
            except asyncio.TimeoutError:
                ok = False
            if not ok:
                failures.append("no greeting: {!r}".format(proto.buf[:80]))
                transport.close()
                return
            conns.append(proto)

    await asyncio.gather(*(one() for _ in range(n)))
    return conns, failures


async def freshClient(port):
    """
    Connect, read the greeting, CAPA, LSTU, QUIT; the time of each step.
    """
    t0 = time.perf_counter()
    conn = await common.LineConnection.open(port, timeout=30)
    await conn.reply()
    t1 = time.perf_counter()
    conn.send(b"CAPA\r\n")
    await conn.multiline()
    t2 = time.perf_counter()
    conn.send(b"LSTU\r\n")
    await conn.multiline()
    t3 = time.perf_counter()
    await conn.command(b"QUIT")
    await conn.close()
    return {"greeting": t1 - t0, "capa": t2 - t1, "lstu": t3 - t2, "total": t3 - t0}


async def run(args, server):
    loop = asyncio.get_running_loop()
    pid = server.pid
    # Warm the server's code paths with one client, then let it settle.
    await freshClient(server.port)
    await asyncio.sleep(args.settle)
    before = common.procStatus(pid)
    t0 = time.perf_counter()
    deadline = loop.time() + args.max_seconds
    # Half, then the rest: the growth over the second half is free of any
    # memory the server had freed before and could reuse at first.
    half = args.connections // 2
    conns, failures = await openIdle(server.port, half, args.concurrency, deadline)
    await asyncio.sleep(args.settle)
    middle = common.procStatus(pid)
    more, moreFailures = await openIdle(
        server.port, args.connections - half, args.concurrency, deadline
    )
    conns += more
    failures += moreFailures
    opened = time.perf_counter() - t0
    await asyncio.sleep(args.settle)
    after = common.procStatus(pid)
    stillOpen = sum(1 for c in conns if not c.lost)
    probes = []
    for _ in range(args.probes):
        probes.append(await freshClient(server.port))
        await asyncio.sleep(0.05)
    stillOpenAfterProbes = sum(1 for c in conns if not c.lost)
    for c in conns:
        c.transport.close()
    await asyncio.sleep(args.settle)
    closed = common.procStatus(pid)
    return {
        "before": before,
        "middle": middle,
        "half": half,
        "after": after,
        "closed": closed,
        "opened": len(conns),
        "failures": failures,
        "openSeconds": opened,
        "stillOpen": stillOpen,
        "stillOpenAfterProbes": stillOpenAfterProbes,
        "probes": probes,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--connections", type=int, default=10000,
                        help="idle connections to hold (10000)")
    parser.add_argument("--concurrency", type=int, default=40,
                        help="connections being opened at once (40)")
    parser.add_argument("--probes", type=int, default=20,
                        help="fresh clients timed while the idle ones are held (20)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait before each memory reading (2)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="cap on the time spent opening connections (120)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    need = args.connections + 1000
    soft, hard = common.raiseNofile(need)
    print("RLIMIT_NOFILE of this client: soft {} hard {} (wanted {})".format(soft, hard, need))
    if soft < args.connections + 100:
        print("cannot hold {} connections with {} descriptors: lower --connections or "
              "raise the hard limit (ulimit -Hn) as root".format(args.connections, soft))
        return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="simplemail-conns-")
    spool = os.path.join(workdir, "spool")
    port = common.freePort()
    maxConnections = args.connections + 100
    server = common.simplemailServer(
        spool, port, os.path.join(workdir, "twistd.log"),
        ["--max-connections", str(maxConnections)], nofile=need,
    )
    server.start()
    try:
        with open("/proc/{}/limits".format(server.pid)) as f:
            limit = next(line for line in f if line.startswith("Max open files"))
        print("server: {}".format(server.commandLine()))
        print("server {} (--max-connections {} passed: the default 10,000 would refuse "
              "fresh clients once {} are held)".format(
                  " ".join(limit.split()), maxConnections, args.connections))
        result = asyncio.run(run(args, server))
    finally:
        server.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    b, a, c = result["before"], result["after"], result["closed"]
    n = result["opened"]
    perConn = (a["VmRSS"] - b["VmRSS"]) / n if n else None
    print()
    print("idle connections: {} opened in {:.1f} s ({} failed{}); {} still open after "
          "settling, {} after the probes".format(
              n, result["openSeconds"], len(result["failures"]),
              ": " + "; ".join(sorted(set(result["failures"]))[:3]) if result["failures"] else "",
              result["stillOpen"], result["stillOpenAfterProbes"]))
    printTable(
        ["server memory", "VmRSS KiB", "RssAnon KiB", "VmHWM KiB", "threads"],
        [
            ["before", b["VmRSS"], b.get("RssAnon"), b["VmHWM"], b.get("Threads")],
            ["{} idle".format(result["half"]), result["middle"]["VmRSS"],
             result["middle"].get("RssAnon"), result["middle"]["VmHWM"],
             result["middle"].get("Threads")],
            ["{} idle".format(n), a["VmRSS"], a.get("RssAnon"), a["VmHWM"], a.get("Threads")],
            ["all closed", c["VmRSS"], c.get("RssAnon"), c["VmHWM"], c.get("Threads")],
        ],
    )
    probes = result["probes"]
    rows = []
    for key in ("greeting", "capa", "lstu", "total"):
        values = [p[key] for p in probes]
        rows.append([key, fmt(ms(median(values))), fmt(ms(percentile(values, 90))),
                     fmt(ms(max(values)))])
    print()
    print("{} fresh clients while {} idle connections are held (ms):".format(len(probes), n))
    printTable(["step", "median", "p90", "max"], rows)
    print()
    secondHalf = (a["VmRSS"] - result["middle"]["VmRSS"]) / (n - result["half"]) \
        if n > result["half"] else None
    memOk = (perConn is not None and perConn <= 10 and n == args.connections
             and secondHalf is not None and secondHalf <= 10)
    worst = max(p["total"] for p in probes) if probes else None
    fastOk = worst is not None and worst <= 0.1
    print("GOAL 4  server memory per idle connection: {} KiB (VmRSS {} -> {} KiB over {} "
          "connections; target <= 10 KiB): {}".format(
              fmt(perConn), b["VmRSS"], a["VmRSS"], n, common.verdict(memOk)))
    print("        over the second half alone ({} -> {} connections): {} KiB each".format(
        result["half"], n, fmt(secondHalf)))
    print("GOAL 4  fresh client, connect to LSTU answered, worst of {}: {} ms (target <= 100 "
          "ms): {}".format(len(probes), fmt(ms(worst)), common.verdict(fastOk)))
    return 0 if n == args.connections else 1


if __name__ == "__main__":
    sys.exit(main())
