"""
Durable delivery throughput with the PostgreSQL store (--database), against
the durable peers, and with two servers on one database.

Each round runs every server in turn, each a fresh process (pg: on a fresh
database), with load.py's load shape: --clients connections, each sending
--body-size byte messages one after another to one of --mailboxes
mailboxes (seeded), waiting for each acknowledgement before the next:

  pg1       one twistd simplemail --database URL; line protocol (SEND)
  pg2       two twistd simplemail --database URL on the same database, the
            clients split between them
  spool     twistd simplemail --spool DIR (the mbox store), line protocol
  twisted   Twisted ESMTP + Maildir (peers.py)
  aiosmtpd  aiosmtpd + mbox (peers.py)

The database is a throwaway cluster started here (tests/pgserver.py:
PostgreSQL from /usr/lib/postgresql, fsync and synchronous_commit on, on a
Unix socket in a temporary directory), or --database URL (a server of
yours: each pg run then empties its tables).  After each run the messages
stored are counted and must equal the messages acknowledged.

Output: per run msgs/s, latencies, and CPU per message of each part: the
simplemail server(s), PostgreSQL (all its processes), and the load
generator.  Then the goals: pg1 / the better peer (>= 1.5), pg2 / pg1
(>= 0.95), and an estimate of N servers on N machines in front of one
database from the CPU per message of each part.

For the per-operation cost on a large mailbox, run scale.py with
--database (it copies its prefilled spool into the database with
simplemail-migrate first).
"""

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import load  # noqa: E402
from common import fmt, median, ms, percentile, printTable  # noqa: E402

sys.path.insert(0, common.CHECKOUT)

KINDS = ("pg1", "pg2", "spool", "twisted", "aiosmtpd")
PEERS = ("twisted", "aiosmtpd")


def clusterCpu(cluster):
    """
    CPU seconds used so far by the cluster's processes (the postmaster and
    its children), or L{None} for a database that is not ours.
    """
    if cluster is None:
        return None
    try:
        with open(os.path.join(cluster.data, "postmaster.pid")) as f:
            root = int(f.readline())
    except (OSError, ValueError):
        return None
    total = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(name)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Database:
    """
    Where the pg runs keep their mail: a throwaway cluster, or --database.
    """

    def __init__(self, url=None):
        self.cluster = None
        if url is None:
            from tests.pgserver import Cluster

            self.cluster = Cluster()
            self.cluster.start()
            self.cluster.createDatabase("simplemail")
            url = self.cluster.url
        self.url = url

    def fresh(self):
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS messages, users, schema_version")
            conn.execute("CHECKPOINT") if self.cluster is not None else None
        return self.url

    def stored(self):
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM messages").fetchone()[0]

    def stop(self):
        if self.cluster is not None:
            self.cluster.stop()


def loadArgs(args):
    """
    load.py's options, for its runOne (peers and the spool server).
    """
    return argparse.Namespace(
        clients=args.clients, mailboxes=args.mailboxes, body_size=args.body_size,
        messages=args.messages, duration=args.duration, warmup=args.warmup,
        mode="multiline", smtp_pipelining=False, probe_interval=0.0, capa_probe=False,
        quiet_cores=args.quiet_cores, wait_quiet=0.0, seed=args.seed, workdir=None,
        keep=False, server_log="file", server_arg=[], twistd_wrapper=None, variant=[],
        syscalls=False, profile=None)


def runPg(args, kind, roundNo, body, text, workdir, database):
    """
    One pg1 or pg2 run: fresh database, one or two servers, the load split
    between them.
    """
    url = database.fresh()
    n = 2 if kind == "pg2" else 1
    servers = []
    ports = []
    try:
        for i in range(n):
            port = common.freePort(avoid=set(ports))
            root = os.path.join(workdir, "{}-{}-{}".format(kind, roundNo, i))
            server = common.simplemailServer(root, port, root + ".log",
                                             ["--database", url])
            server.start()
            servers.append(server)
            ports.append(port)
        asyncio.run(load.setupSimplemail(ports[0], args.mailboxes))
        watches = [common.CpuWatch(s.pid) for s in servers]
        pg0 = clusterCpu(database.cluster)
        benches = []
        for i, port in enumerate(ports):
            share = argparse.Namespace(**vars(loadArgs(args)))
            share.clients = args.clients // n + (1 if i < args.clients % n else 0)
            share.seed = args.seed + i
            benches.append(load.Bench(share, "simplemail", port, body, text))

        async def together():
            return await asyncio.gather(*(b.run() for b in benches))

        results = asyncio.run(together())
        cpus = [w.stop() for w in watches]
        pg1 = clusterCpu(database.cluster)
        clients = [c for r in results for c in r[0]]
        t0 = min(r[1] for r in results)
        tEnd = max(r[2] for r in results)
        acked = sum(c.sent for c in clients)
        stored = database.stored()
    finally:
        for s in servers:
            s.stop()
    lat, count, window = load.countedWindow(
        clients, t0, tEnd, args.warmup, args.duration)
    elapsed = cpus[0]["elapsed"]
    serverCpu = sum(c["serverCpu"] for c in cpus)
    return {
        "server": kind, "round": roundNo, "acked": acked, "stored": stored,
        "errors": sum(c.errors for c in clients),
        "lastError": next((c.lastError for c in clients if c.lastError), None),
        "rate": count / window if window > 0 else None,
        "p50": percentile(lat, 50), "p99": percentile(lat, 99),
        "cpuPerMsg": serverCpu / acked if acked else None,
        "reactorCpuPerMsg": (sum(c["reactorBusy"] for c in cpus) * elapsed / acked
                             if acked else None),
        "pgCpuPerMsg": (pg1 - pg0) / acked if acked and pg0 is not None else None,
        "loadCpuPerMsg": cpus[0]["selfCpu"] / acked if acked else None,
        "foreign": max(0.0, cpus[0]["foreignCpu"] - (
            (pg1 - pg0) / elapsed if pg0 is not None else 0.0)
            - sum(c["serverCpu"] for c in cpus[1:]) / elapsed),
        "command": servers[0].commandLine(),
    }


def runOther(args, kind, roundNo, body, text, workdir):
    run = load.Run("simplemail" if kind == "spool" else kind)
    row = load.runOne(loadArgs(args), run, roundNo, body, text, workdir)
    row["server"] = kind
    row["pgCpuPerMsg"] = None
    return row


def estimate(rows, quiet):
    """
    What N servers on N machines in front of one database would give, from
    the CPU per message of each part (medians over the pg1 runs).
    """
    mine = [r for r in rows if r["server"] == "pg1"]
    srv = median([r["cpuPerMsg"] for r in mine])
    reactor = median([r["reactorCpuPerMsg"] for r in mine])
    pg = median([r["pgCpuPerMsg"] for r in mine if r["pgCpuPerMsg"] is not None])
    if not (srv and reactor and pg):
        print("no estimate: CPU figures missing")
        return
    # A server machine of 2 cores: the reactor thread saturates one, the
    # other threads (summaries, psycopg) use the rest of its CPU per message.
    perServer = min(1.0 / reactor, 2.0 / srv)
    print("estimate for N servers on N machines (2 cores each), one database machine "
          "with C cores:")
    print("  per message: simplemail server {:.3f} ms CPU (reactor thread {:.3f} ms), "
          "PostgreSQL {:.3f} ms CPU".format(ms(srv), ms(reactor), ms(pg)))
    print("  one server: ~{:.0f} msgs/s (min of 1 / reactor CPU and 2 cores / server CPU "
          "per message)".format(perServer))
    print("  the database: ~{:.0f} msgs/s per core (1 / PostgreSQL CPU per message; group "
          "commit keeps fsyncs per message well under one)".format(1.0 / pg))
    for cores in (2, 8):
        for nServers in (1, 2, 4, 8):
            bound = min(nServers * perServer, cores / pg)
            print("    C={} N={}: ~{:.0f} msgs/s ({})".format(
                cores, nServers, bound,
                "servers bound" if nServers * perServer < cores / pg else "database bound"))
    print("  (deliveries to one mailbox commit one after another, whatever N: a single "
          "mailbox is bound by its batches' commit latency, not by N)")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--mailboxes", type=int, default=10)
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--servers", default=",".join(KINDS),
                        help="comma-separated, in the order they take turns, from "
                             + ",".join(KINDS))
    parser.add_argument("--database", default=None,
                        help="a PostgreSQL URL to use (its simplemail tables are "
                             "dropped at each run) instead of a throwaway cluster")
    parser.add_argument("--quiet-cores", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            parser.error("unknown server {!r}".format(k))

    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    common.raiseNofile(4096)
    rng = random.Random(args.seed)
    body = load.makeBody(args.body_size, rng)
    text = load.oneLineText(args.body_size, rng)
    workdir = tempfile.mkdtemp(prefix="simplemail-pgload-")
    database = Database(args.database)
    print("database:", database.url, "(throwaway cluster)" if database.cluster else "")
    print("load: {} clients, {}-byte bodies, {} mailboxes, <= {} s per run".format(
        args.clients, args.body_size, args.mailboxes, args.duration), flush=True)
    rows = []
    try:
        for r in range(1, args.rounds + 1):
            for kind in kinds:
                if kind.startswith("pg"):
                    row = runPg(args, kind, r, body, text, workdir, database)
                else:
                    row = runOther(args, kind, r, body, text, workdir)
                rows.append(row)
                print("  round {} {:8s} {:8.1f} msgs/s  p50 {} ms  p99 {} ms  acked {} "
                      "stored {} errors {}  srv {} pg {} gen {} ms CPU/msg  others {}".format(
                          r, kind, row["rate"] or 0, fmt(ms(row["p50"])),
                          fmt(ms(row["p99"])), row["acked"], row["stored"], row["errors"],
                          fmt(ms(row["cpuPerMsg"]), "{:.3f}"),
                          fmt(ms(row["pgCpuPerMsg"]), "{:.3f}"),
                          fmt(ms(row["loadCpuPerMsg"]), "{:.3f}"),
                          fmt(row["foreign"], "{:.2f} cores")), flush=True)
                if row["lastError"]:
                    print("    first error:", row["lastError"])
    finally:
        database.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    summary = []
    for kind in kinds:
        mine = [r for r in rows if r["server"] == kind]
        summary.append([
            kind, fmt(median([r["rate"] for r in mine]), "{:.1f}"),
            fmt(ms(median([r["p50"] for r in mine]))),
            fmt(ms(median([r["p99"] for r in mine]))),
            fmt(ms(median([r["cpuPerMsg"] for r in mine])), "{:.3f}"),
            fmt(ms(median([r["pgCpuPerMsg"] for r in mine
                           if r["pgCpuPerMsg"] is not None])), "{:.3f}"),
            fmt(ms(median([r["loadCpuPerMsg"] for r in mine])), "{:.3f}"),
            "yes" if all(r["acked"] == r["stored"] for r in mine) else "NO",
        ])
    print("medians over {} rounds:".format(args.rounds))
    printTable(["server", "msgs/s", "p50 ms", "p99 ms", "srv CPU ms/msg",
                "pg CPU ms/msg", "gen CPU ms/msg", "acked==stored"], summary)
    print()

    def perRound(kind, r):
        for row in rows:
            if row["server"] == kind and row["round"] == r:
                return row["rate"]
        return None

    peers = [k for k in kinds if k in PEERS]
    if "pg1" in kinds and peers:
        ratios = []
        for r in range(1, args.rounds + 1):
            best = max((perRound(p, r) or 0) for p in peers)
            if best:
                ratios.append(perRound("pg1", r) / best)
        ratio = median(ratios)
        print("GOAL pg1 / better durable peer, median of per-round ratios {}: {} "
              "(target >= 1.5): {}".format(
                  [fmt(x) for x in ratios], fmt(ratio), common.verdict(ratio >= 1.5)))
    if "pg1" in kinds and "pg2" in kinds:
        ratios = [perRound("pg2", r) / perRound("pg1", r)
                  for r in range(1, args.rounds + 1) if perRound("pg1", r)]
        ratio = median(ratios)
        print("GOAL pg2 / pg1, median of per-round ratios {}: {} (target >= 0.95): {}".format(
            [fmt(x) for x in ratios], fmt(ratio), common.verdict(ratio >= 0.95)))
    if "pg1" in kinds:
        print()
        estimate(rows, args.quiet_cores)
    bad = [r for r in rows if r["acked"] != r["stored"]]
    if bad:
        print("WARNING: acknowledged != stored in", [(r["server"], r["round"]) for r in bad])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
