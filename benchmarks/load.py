"""
Durable delivery throughput of simplemail against two durable SMTP peers
(goal 1), and the responsiveness of simplemail's reactor under that load
(goal 2).

Each round runs every server in turn (A B C D A B C D ...), each a fresh
process on a fresh directory, with the same load shape: --clients
connections, each sending messages of --body-size bytes one after another to
one of --mailboxes mailboxes (seeded, the same sequence for every server),
waiting for each acknowledgement before the next message.  The servers:

  simplemail       simplemail's own line protocol: USER u<i>, then per
                   message (--mode):
                     multiline  SEND u<r> / +OK / body lines, "." / +OK
                                (default)
                     oneline    SEND u<r> <1 KiB text> / +OK
                     pipelined  SEND u<r> + body + "." in one write / +OK +OK
  simplemail-smtp  simplemail's SMTP ingress (twistd simplemail --smtp
                   ENDPOINT, twisted_mail/doors/smtp/), driven by the same SMTP
                   client as the peers; the mailboxes are made and counted,
                   and the probes sent, on its line-protocol port
  twisted          Twisted ESMTP + Maildir (peers.py)
  aiosmtpd         aiosmtpd + mbox (peers.py)

  Every SMTP server gets EHLO, then per message MAIL FROM / 250, RCPT TO /
  250, DATA / 354, body, "." / 250 (--smtp-pipelining sends MAIL, RCPT and
  DATA in one write).

A message's latency runs from its first byte sent to its final
acknowledgement.  Messages acknowledged in the first --warmup seconds are
not counted.  Each run stops after --messages messages per client or
--duration seconds, whichever comes first.  After each run the messages
stored are counted and must equal the messages acknowledged.

During each simplemail or simplemail-smtp run a probe process (probe.py)
sends LSTU every --probe-interval seconds on its own line-protocol
connection and times the replies (goal 2); the peers are probed with NOOP,
for comparison.

"srv CPU ms/msg" is the server's CPU per acknowledged message in the run,
with its helper processes' ("of it helpers": the search index's indexing
process, niced, which does part of its work after the load stops);
"settled" is the same with the helpers' CPU counted once they have caught
up (their CPU stays unchanged for 2.5 s after the run): what the index
costs in all, wherever it was spent.

Output: one row per run, then per server the medians over rounds, and, for
simplemail and for simplemail-smtp each, the median over rounds of its
throughput divided by each peer's and by the better peer's of the same round
(goal: >= 4).  The peers are twisted and aiosmtpd only: simplemail's two
front ends are never each other's peer.
"""

import argparse
import asyncio
import os
import random
import shlex
import shutil
import socket
import string
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import fmt, median, ms, percentile, printTable  # noqa: E402

SERVERS = ("simplemail", "simplemail-smtp", "twisted", "aiosmtpd")
TRYPATCHES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trypatches.py")
#: Our servers: simplemail's line protocol and its SMTP ingress.  Both are
#: started as twistd simplemail, have their mailboxes made with ADDU and are
#: probed with LSTU; the others are the durable peers they are compared with.
OURS = ("simplemail", "simplemail-smtp")


def countedWindow(clients, t0, tEnd, warmup, duration):
    """
    What a run counts: the latencies of the messages acknowledged after the
    warm-up and before the deadline (after it, fewer and fewer clients are
    still sending), their number, and the length of that window.
    """
    since = t0 + warmup
    until = min(tEnd, t0 + duration)
    lat, count = [], 0
    for c in clients:
        for end, latency in zip(c.ends, c.latencies):
            if since <= end <= until:
                lat.append(latency)
                count += 1
    return lat, count, until - since

def makeBody(size, rng):
    """
    A body of exactly C{size} bytes with CRLF line endings (lines of at most
    78 bytes), seeded; no line starts with "." or "From ".
    """
    letters = string.ascii_letters + string.digits + "     "
    out = bytearray()
    while len(out) < size:
        room = size - len(out)
        n = min(76, room - 2) if room > 2 else 0
        if n <= 0:
            out += b"x" * room
            break
        line = "a" + "".join(rng.choice(letters) for _ in range(n - 1))
        out += line.encode("ascii") + b"\r\n"
    return bytes(out[:size])


def oneLineText(size, rng):
    letters = string.ascii_letters + string.digits
    return ("a" + "".join(rng.choice(letters) for _ in range(size - 1))).encode("ascii")


class Client(asyncio.Protocol):
    """
    One load connection: a script of steps, each some bytes to write and a
    number of replies to wait for.  A reply is a line (SMTP NNN- lines are
    continuation lines); it is good when it starts with +OK, 2 or 3.
    """

    def __init__(self, bench, index):
        self.bench = bench
        self.index = index
        self.rng = random.Random(bench.seed * 1000003 + index)
        self.buf = b""
        self.steps = []
        self.need = 0
        self.sent = 0
        self.latencies = []
        self.ends = []
        self.errors = 0
        self.lastError = None
        self.setupDone = None
        self.finished = None
        self.stopping = False
        self.messageStart = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next()  # start the set-up script

    def connection_lost(self, exc):
        if self.need or self.steps:
            self._fail("connection lost ({})".format(exc))

    def _fail(self, why):
        self.errors += 1
        self.lastError = why
        self.steps = []
        self.need = 0
        for fut in (self.setupDone, self.finished):
            if fut is not None and not fut.done():
                fut.set_result(False)
        if self.transport is not None:
            self.transport.close()

    def runSteps(self, steps):
        self.steps = list(steps)
        self._next()

    def _next(self):
        if not self.steps:
            return self._scriptDone()
        data, self.need = self.steps.pop(0)
        if data:
            self.transport.write(data)
        if self.need == 0:
            self._next()

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i == -1:
                break
            line = buf[start:i]
            start = i + 1
            if line[3:4] == b"-" and line[:3].isdigit():
                continue  # SMTP continuation line
            if not self.need:
                self._fail("unexpected line {!r}".format(line[:100]))
                return
            if not (line.startswith(b"+OK") or line[:1] in (b"2", b"3")):
                self._fail("error reply {!r}".format(line[:100]))
                return
            self.need -= 1
            if not self.need:
                self._next()
        self.buf = buf[start:]

    # -- the script

    def _scriptDone(self):
        if self.messageStart is not None:
            now = time.perf_counter()
            self.latencies.append(now - self.messageStart)
            self.ends.append(now)
            self.messageStart = None
            self.sent += 1
            return self.sendMessage()
        if self.setupDone is not None and not self.setupDone.done():
            self.setupDone.set_result(True)

    def sendMessage(self):
        bench = self.bench
        if self.stopping or self.sent >= bench.messages or time.perf_counter() >= bench.deadline:
            self.steps = []
            if not self.finished.done():
                self.finished.set_result(True)
            return
        receiver = "u{}".format(self.rng.randrange(bench.mailboxes))
        self.messageStart = time.perf_counter()
        self.runSteps(bench.messageSteps(self, receiver))


class Bench:
    """
    The load of one run against one server.
    """

    def __init__(self, args, kind, port, body, text):
        self.args = args
        self.kind = kind
        # simplemail's line protocol, or SMTP (the peers and simplemail-smtp).
        self.lineProtocol = kind == "simplemail"
        self.port = port  # where the load goes
        self.seed = args.seed
        self.mailboxes = args.mailboxes
        self.messages = args.messages
        self.body = body  # CRLF lines, for multi-line sends
        self.dataBlock = body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"
        self.text = text  # one line, for SEND <id> <text>
        self.deadline = float("inf")

    def setupSteps(self, client):
        if self.lineProtocol:
            return [(None, 1), (b"USER u%d\r\n" % (client.index % self.mailboxes), 1)]
        return [(None, 1), (b"EHLO bench.localhost\r\n", 1)]

    def messageSteps(self, client, receiver):
        rcpt = receiver.encode("ascii")
        if self.lineProtocol:
            mode = self.args.mode
            if mode == "oneline":
                return [(b"SEND " + rcpt + b" " + self.text + b"\r\n", 1)]
            if mode == "pipelined":
                return [(b"SEND " + rcpt + b"\r\n" + self.dataBlock, 2)]
            return [(b"SEND " + rcpt + b"\r\n", 1), (self.dataBlock, 1)]
        envelope = [
            b"MAIL FROM:<c%d@bench.localhost>\r\n" % client.index,
            b"RCPT TO:<" + rcpt + b"@localhost>\r\n",
            b"DATA\r\n",
        ]
        if self.args.smtp_pipelining:
            return [(b"".join(envelope), 3), (self.dataBlock, 1)]
        return [(e, 1) for e in envelope] + [(self.dataBlock, 1)]

    async def run(self):
        loop = asyncio.get_running_loop()
        args = self.args
        clients = []
        # Connect and set up every client (bounded), then start them at once.
        for i in range(args.clients):
            c = Client(self, i)
            c.setupDone = loop.create_future()
            c.steps = self.setupSteps(c)  # the greeting may come at once
            await asyncio.wait_for(
                loop.create_connection(lambda c=c: c, "127.0.0.1", self.port), 30
            )
            clients.append(c)
        ok = await asyncio.wait_for(asyncio.gather(*(c.setupDone for c in clients)), 60)
        if not all(ok):
            bad = [c.lastError for c in clients if c.lastError]
            raise common.BenchError("client set-up failed: {}".format(bad[:3]))
        t0 = time.perf_counter()
        self.deadline = t0 + args.duration
        for c in clients:
            c.finished = loop.create_future()
            c.sendMessage()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.finished for c in clients)), args.duration + 60
            )
        except asyncio.TimeoutError:
            for c in clients:
                c.stopping = True
            raise common.BenchError("clients did not finish within --duration + 60 s")
        tEnd = time.perf_counter()
        for c in clients:
            c.transport.close()
        return clients, t0, tEnd


async def setupSimplemail(port, mailboxes):
    conn = await common.LineConnection.open(port)
    await conn.reply()
    for i in range(mailboxes):
        await conn.command(b"ADDU u%d" % i)
    await conn.command(b"QUIT")
    await conn.close()


async def countSimplemail(port, mailboxes):
    conn = await common.LineConnection.open(port)
    await conn.reply()
    total = 0
    for i in range(mailboxes):
        line = await conn.command(b"USER u%d" % i)
        total += int(line.split()[3])
    await conn.command(b"QUIT")
    await conn.close()
    return total


def countStored(kind, root, port, mailboxes):
    if kind in OURS:
        return asyncio.run(countSimplemail(port, mailboxes))
    if kind == "twisted":
        return sum(len(os.listdir(os.path.join(root, "u%d" % i, "new"))) for i in range(mailboxes))
    total = 0
    for i in range(mailboxes):
        with open(os.path.join(root, "u%d" % i), "rb") as f:
            data = f.read()
        total += data.count(b"\nFrom MAILER-DAEMON ") + data.startswith(b"From MAILER-DAEMON ")
    return total


class Run:
    """
    One server of the rotation: C{kind} (one of L{SERVERS}), and for ours
    the patches of benchmarks/trypatches.py it runs with (C{SM_PATCH}), or
    L{None} for the tree as it is, started by twistd itself.  C{label} names
    it in the output: the kind, then the patches in brackets.
    """

    def __init__(self, kind, patches=None, index=0, workers=None):
        self.kind = kind
        self.patches = patches
        self.index = index
        self.workers = workers
        if patches is None:
            self.label = kind
        else:
            self.label = "{}[{}]".format(kind, patches or "none")
        if workers is not None:
            self.label += "/w{}".format(workers)


def waitWorkers(pid, count, timeout=30.0):
    """
    Wait until the supervisor C{pid} has C{count} worker processes, and a
    moment more for them to start serving.
    """
    deadline = time.monotonic() + timeout
    while len(common.childPids(pid)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("{} workers did not start".format(count))
        time.sleep(0.05)
    time.sleep(1.0)


def runOne(args, run, roundNo, body, text, workdir):
    kind = run.kind
    if args.wait_quiet > 0:
        busy = common.waitQuiet(args.quiet_cores, args.wait_quiet)
        if busy >= args.quiet_cores:
            print("  (the machine stayed busy: {:.2f} cores in use before this run)".format(busy))
    port = common.freePort()  # simplemail: its line protocol; a peer: SMTP
    loadPort = port  # where the load goes
    root = os.path.join(workdir, "{}-{}-{}-w{}".format(kind, run.index, roundNo,
                                                          run.workers or 1))
    logPath = root + ".log" if args.server_log == "file" else None
    users = ["u%d" % i for i in range(args.mailboxes)]
    if kind in OURS:
        extra = list(args.server_arg)
        if run.workers is not None:
            extra += ["--workers", str(run.workers)]
        if kind == "simplemail-smtp":
            loadPort = common.freePort(avoid={port})
            extra += ["--smtp", "tcp:{}:interface=127.0.0.1".format(loadPort)]
        env = None
        wrapper = args.twistd_wrapper
        if run.patches is not None:
            env = {"SM_PATCH": run.patches}
            wrapper = wrapper or TRYPATCHES
        server = common.simplemailServer(root, port, logPath, extra, wrapper=wrapper,
                                         env=env)
    else:
        server = common.peerServer(kind, root, port, logPath, users)
    server.start()
    probe = capaProbe = None
    profiler = None
    try:
        if loadPort != port:
            common.waitGreeting(loadPort, b"220", server)
        if kind in OURS and (run.workers or 1) > 1:
            waitWorkers(server.pid, run.workers)
        if kind in OURS:
            asyncio.run(setupSimplemail(port, args.mailboxes))
        if args.profile and kind in OURS:
            profiler = startProfiler(args, server.pid, run, roundNo)
        perf = startPerf(server.pid) if args.syscalls else None
        watch = common.CpuWatch(server.pid, children=(run.workers or 1) > 1)
        if args.probe_interval > 0:
            probe = common.Probe(
                port, "LSTU" if kind in OURS else "NOOP", args.probe_interval,
                maxSeconds=args.duration + 60,
            )
            if kind in OURS and args.capa_probe:
                capaProbe = common.Probe(port, "CAPA", args.probe_interval,
                                         maxSeconds=args.duration + 60)
            for p in (probe, capaProbe):
                if p is not None:
                    watch.addPid(p.process.pid)
        bench = Bench(args, kind, loadPort, body, text)
        clients, t0, tEnd = asyncio.run(bench.run())
        cpu = watch.stop()
        syscalls = stopPerf(perf) if perf else None
        probeResult = probe.stop() if probe else None
        probe = None
        capaResult = capaProbe.stop() if capaProbe else None
        capaProbe = None
        if profiler is not None:
            stopProfiler(profiler)
            profiler = None
        acked = sum(c.sent for c in clients)
        stored = countStored(kind, root, port, args.mailboxes)
        # What the helpers (the indexing process) cost in all, once they
        # have caught up with the load's mail.
        settled = watch.settledHelperCpu() if kind in OURS else 0.0
    finally:
        for p in (probe, capaProbe):
            if p is not None:
                p.process.kill()
                p.process.wait()
        if profiler is not None:
            stopProfiler(profiler)
        server.stop()
    errors = sum(c.errors for c in clients)
    lat, count, window = countedWindow(clients, t0, tEnd, args.warmup, args.duration)
    row = {
        "server": run.label,
        "kind": kind,
        "round": roundNo,
        "acked": acked,
        "stored": stored,
        "errors": errors,
        "lastError": next((c.lastError for c in clients if c.lastError), None),
        "rate": count / window if window > 0 else None,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "seconds": tEnd - t0,
        # With its helper processes (the search index's indexing process).
        "cpuPerMsg": cpu["serverCpu"] / acked if acked else None,
        "helperCpuPerMsg": cpu["helperCpu"] / acked if acked else None,
        # The helpers' CPU once caught up, and the server's CPU with it.
        "settledHelperPerMsg": settled / acked if acked else None,
        "settledCpuPerMsg": (cpu["serverCpu"] - cpu["helperCpu"] + settled) / acked
        if acked else None,
        "mainBusy": cpu["reactorBusy"],
        # The reactor thread's own CPU per message: steadier than msgs/s on
        # a shared machine, and what a single-threaded reactor is bound by.
        "reactorCpuPerMsg": cpu["reactorBusy"] * cpu["elapsed"] / acked if acked else None,
        # With --workers: the supervisor's share (relaying the workers' logs).
        "supervisorCpuPerMsg": (
            cpu["supervisorCpu"] / acked if acked and cpu["processes"] > 1 else None
        ),
        "mainWait": cpu["reactorRunQueueWait"],
        "foreign": cpu["foreignCpu"],
        "loadCpuPerMsg": cpu["selfCpu"] / acked if acked else None,
        "command": server.commandLine(),
        "syscalls": syscalls,
    }
    if probeResult is not None:
        pl = probeResult["latencies"]
        row["probeN"] = len(pl)
        row["probeP50"] = percentile(pl, 50)
        row["probeP99"] = percentile(pl, 99)
        row["probeMax"] = max(pl) if pl else None
        row["probeErrors"] = probeResult["errors"]
    if capaResult is not None:
        cl = capaResult["latencies"]
        row["capaP99"] = percentile(cl, 99)
        row["capaMax"] = max(cl) if cl else None
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return row


PERF_EVENTS = ("fdatasync", "fsync", "openat", "unlinkat", "fcntl", "pwrite64", "pwritev",
               "write", "epoll_ctl")


def startPerf(pid):
    """
    Count some system calls of the server with perf (tracepoints, all its
    threads, and with --workers all its processes): how many fsyncs,
    opens, ... a message costs.
    """
    import subprocess

    perf = shutil.which("perf")
    if perf is None:
        print("--syscalls: perf not found; skipped")
        return None
    events = ",".join("syscalls:sys_enter_" + e for e in PERF_EVENTS)
    pids = ",".join(str(p) for p in [pid] + common.childPids(pid))
    p = subprocess.Popen([perf, "stat", "-x", ",", "-e", events, "-p", pids],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    return p


def stopPerf(p):
    import signal
    import subprocess

    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None
    counts = {}
    for line in err.decode("utf-8", "replace").splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
            try:
                counts[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
            except ValueError:
                pass
    return counts


def startProfiler(args, pid, run, roundNo):
    import subprocess

    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    name = run.kind if run.patches is None else "{}-{}".format(run.kind, run.index)
    out = os.path.join(args.profile, "{}-round{}.txt".format(name, roundNo))
    os.makedirs(args.profile, exist_ok=True)
    argv = [pyspy, "record", "--pid", str(pid), "--format", "raw", "--threads",
            "--rate", "250", "--gil", "--duration", str(int(args.duration) + 5), "--output", out,
            "--nonblocking"]
    if (run.workers or 1) > 1:
        argv.append("--subprocesses")  # the workers, where the work is
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    print("profiling {} with: {}".format(run.label, " ".join(argv)), flush=True)
    return p


def stopProfiler(p):
    import signal
    import subprocess

    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def goal1(args, rows, ours, peers):
    """
    Print the throughput of C{ours} over each peer's, per round, and the
    GOAL 1 line: the median over rounds of its throughput over the better
    peer's of the same round.
    """
    ratios = {p: [] for p in peers}
    best = []
    quietBest = []
    for r in range(1, args.rounds + 1):
        mine = next(x for x in rows if x["round"] == r and x["server"] == ours)
        quiet = all(x["foreign"] <= args.quiet_cores for x in rows if x["round"] == r)
        peerRates = {}
        for p in peers:
            theirs = next(x for x in rows if x["round"] == r and x["server"] == p)
            if theirs["rate"] and mine["rate"]:
                ratios[p].append(mine["rate"] / theirs["rate"])
                peerRates[p] = theirs["rate"]
        if peerRates and mine["rate"]:
            best.append(mine["rate"] / max(peerRates.values()))
            if quiet:
                quietBest.append(best[-1])
    for p in peers:
        print("{} / {} throughput, median over rounds: {}  (per round: {})".format(
            ours, p, fmt(median(ratios[p])), ", ".join(fmt(x) for x in ratios[p])))
    if best:
        m = median(best)
        print("GOAL 1  {} / best durable peer, median of per-round ratios: {:.2f} "
              "(per round: {}; target >= 4): {}".format(
                  ours, m, ", ".join(fmt(x) for x in best), common.verdict(m >= 4)))
        print("        over the {} undisturbed round(s) alone: {}".format(
            len(quietBest), fmt(median(quietBest))))


def goal2(args, rows, ours):
    """
    Print the GOAL 2 line for C{ours}: the worst run's LSTU probe p99.
    """
    mine = [r for r in rows if r["server"] == ours and "probeP99" in r]
    if not mine:
        return
    probes = [r["probeP99"] for r in mine]
    worst = max(probes)
    print("GOAL 2  {}: LSTU probe p99 under load, worst run: {:.2f} ms, median of runs: "
          "{:.2f} ms (target <= 10 ms, issue 22): {}".format(
              ours, ms(worst), ms(median(probes)), common.verdict(worst <= 0.010)))
    quietProbes = [r["probeP99"] for r in mine if r["foreign"] <= args.quiet_cores]
    print("        undisturbed runs alone: {}; CAPA (reactor only) p99, worst run: "
          "{} ms".format(
              ", ".join("{:.2f} ms".format(ms(p)) for p in quietProbes) or "none",
              fmt(ms(max((r.get("capaP99") or 0) for r in mine)))))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of A B C D (default 3)")
    parser.add_argument("--abba", action="store_true",
                        help="run every other round in reverse order (A B C D, D C B A, "
                             "...): the first run of a round, and a machine that gets "
                             "slower or faster, then favour no server or variant")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--mailboxes", type=int, default=10, help="receiving mailboxes (10)")
    parser.add_argument("--body-size", type=int, default=1024, help="body bytes (1024)")
    parser.add_argument("--messages", type=int, default=1000,
                        help="cap: messages per client per run (1000)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="cap: seconds per run (10)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds at the start of each run not counted (1)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated, in the order they take turns, from "
                             "{} (default: all)".format(",".join(SERVERS)))
    parser.add_argument("--mode", choices=["multiline", "oneline", "pipelined"],
                        default="multiline",
                        help="how simplemail (line protocol) clients SEND")
    parser.add_argument("--smtp-pipelining", action="store_true",
                        help="SMTP clients (peers and simplemail-smtp) send MAIL, RCPT "
                             "and DATA in one write")
    parser.add_argument("--probe-interval", type=float, default=0.02,
                        help="seconds between probes (0.02; 0 = no probe)")
    parser.add_argument("--no-capa-probe", dest="capa_probe", action="store_false",
                        help="no second simplemail probe sending CAPA (answered by the "
                             "reactor alone, no thread pool): it tells a reactor stall "
                             "from a wait for the thread pool")
    parser.add_argument("--quiet-cores", type=float, default=0.3,
                        help="a run during which other processes used more cores than "
                             "this is marked disturbed (0.3)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to SECONDS for the machine to use "
                             "fewer than --quiet-cores (default 0: do not wait)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=None,
                        help="where spools go (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep spools and logs")
    parser.add_argument("--server-log", choices=["file", "null"], default="file",
                        help="where the servers' stdout (twistd's log) goes: a file in "
                             "the work directory (default) or /dev/null")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argument for simplemail's twistd, for both "
                             "simplemail and simplemail-smtp (repeatable)")
    parser.add_argument("--twistd-wrapper", metavar="SCRIPT", default=None,
                        help="run simplemail with this Python script instead of twistd's "
                             "entry point (it patches, then runs twistd with its arguments): "
                             "to measure a candidate fix without editing the tree")
    parser.add_argument("--workers", default=None, metavar="N[,N...]",
                        help="run simplemail and simplemail-smtp once per count, "
                             "with --workers N (labelled KIND/wN), e.g. 1,2,4; their "
                             "CPU is summed over the supervisor and its workers")
    parser.add_argument("--variant", action="append", default=[], metavar="PATCHES",
                        help="run simplemail and simplemail-smtp once per --variant in "
                             "each round, through benchmarks/trypatches.py (or "
                             "--twistd-wrapper) with SM_PATCH=PATCHES; 'none' (or '') is "
                             "the tree unpatched.  Repeatable: --variant none --variant "
                             "nolog --variant nolog,pool2 compares the three in "
                             "alternation, each against the peers")
    parser.add_argument("--syscalls", action="store_true",
                        help="count the servers' fsyncs, opens, ... per message with "
                             "perf (from the start of the load to its end)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="record simplemail and simplemail-smtp with py-spy (raw "
                             "stacks) into DIR/KIND-roundN.txt")
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            parser.error("unknown server {!r}".format(s))
    if len(set(servers)) != len(servers):
        parser.error("a server is named twice in --servers")
    if args.variant and not any(s in OURS for s in servers):
        parser.error("--variant needs simplemail or simplemail-smtp in --servers")
    workerCounts = [None]
    if args.workers:
        try:
            workerCounts = [int(n) for n in args.workers.split(",")]
        except ValueError:
            parser.error("--workers wants numbers, e.g. 1,2,4")
    runs = []
    for kind in servers:
        if kind in OURS and args.variant:
            for i, patches in enumerate(args.variant):
                patches = "" if patches.strip() in ("", "none") else patches.strip()
                for n in workerCounts:
                    runs.append(Run(kind, patches, i, n))
        elif kind in OURS:
            for n in workerCounts:
                runs.append(Run(kind, workers=n))
        else:
            runs.append(Run(kind))
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        parser.error("a --variant is named twice")
    width = max(len(label) for label in labels)

    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    common.raiseNofile(4096)
    rng = random.Random(args.seed)
    body = makeBody(args.body_size, rng)
    text = oneLineText(args.body_size, rng)
    workdir = args.workdir or tempfile.mkdtemp(prefix="simplemail-load-")
    os.makedirs(workdir, exist_ok=True)
    print(
        "load: {} clients, {}-byte bodies, {} mailboxes, simplemail mode {}, SMTP {}; "
        "each run: <= {} messages per client, <= {} s, first {} s not counted; "
        "probe every {} s; workdir {}".format(
            args.clients, args.body_size, args.mailboxes, args.mode,
            "pipelining MAIL/RCPT/DATA" if args.smtp_pipelining else "one command at a time",
            args.messages, args.duration, args.warmup, args.probe_interval, workdir,
        ),
        flush=True,
    )
    rows = []
    headers = ["round", "server", "msgs/s", "p50 ms", "p99 ms", "acked", "stored", "errors",
               "srv CPU ms/msg", "of it helpers", "settled", "reactor CPU ms/msg",
               "reactor busy",
               "reactor CPU wait",
               "gen CPU ms/msg",
               "others' CPU", "probe p50", "probe p99", "probe max", "CAPA p99", "CAPA max"]
    for r in range(1, args.rounds + 1):
        # --abba: every other round in reverse (A B, B A, A B ...), so that
        # neither the first run of a round nor a drifting machine favours
        # one server or variant.
        order = runs[::-1] if args.abba and r % 2 == 0 else runs
        for run in order:
            row = runOne(args, run, r, body, text, workdir)
            rows.append(row)
            if r == 1:
                print("  {} started as: {}{}".format(
                    run.label,
                    "SM_PATCH={} ".format(shlex.quote(run.patches)) if run.patches is not None
                    else "", row["command"]))
            print(
                "  round {} {:{width}s} {:8.1f} msgs/s  p50 {} ms  p99 {} ms  acked {} stored {} "
                "errors {}{}".format(
                    r, run.label, row["rate"] or 0, fmt(ms(row["p50"])), fmt(ms(row["p99"])),
                    row["acked"], row["stored"], row["errors"],
                    "  probe p99 {} ms".format(fmt(ms(row.get("probeP99"))))
                    if "probeP99" in row else "",
                    width=width,
                ),
                flush=True,
            )
            if row["lastError"]:
                print("    first error: {}".format(row["lastError"]))
    print()
    printTable(
        headers,
        [
            [
                row["round"], row["server"] + ("*" if row["foreign"] > args.quiet_cores else ""),
                fmt(row["rate"], "{:.1f}"), fmt(ms(row["p50"])),
                fmt(ms(row["p99"])), row["acked"], row["stored"], row["errors"],
                fmt(ms(row["cpuPerMsg"]), "{:.3f}"), fmt(ms(row.get("helperCpuPerMsg")), "{:.3f}"),
                fmt(ms(row.get("settledCpuPerMsg")), "{:.3f}"),
                fmt(ms(row["reactorCpuPerMsg"]), "{:.3f}"),
                fmt(100 * row["mainBusy"], "{:.0f}%"),
                fmt(100 * row["mainWait"], "{:.0f}%"), fmt(ms(row["loadCpuPerMsg"]), "{:.3f}"),
                fmt(row["foreign"], "{:.2f} cores"),
                fmt(ms(row.get("probeP50"))), fmt(ms(row.get("probeP99"))),
                fmt(ms(row.get("probeMax"))), fmt(ms(row.get("capaP99"))),
                fmt(ms(row.get("capaMax"))),
            ]
            for row in rows
        ],
    )
    print("* disturbed: other processes used more than {} cores during the run".format(
        args.quiet_cores))
    print()
    summary = []
    for label in labels:
        mine = [r for r in rows if r["server"] == label]
        summary.append([
            label,
            fmt(median([r["rate"] for r in mine]), "{:.1f}"),
            fmt(ms(median([r["p50"] for r in mine]))),
            fmt(ms(median([r["p99"] for r in mine]))),
            fmt(ms(median([r["cpuPerMsg"] for r in mine])), "{:.3f}"),
            fmt(ms(median([r["settledCpuPerMsg"] for r in mine
                           if r.get("settledCpuPerMsg") is not None])), "{:.3f}"),
            fmt(ms(median([r["reactorCpuPerMsg"] for r in mine])), "{:.3f}"),
            fmt(ms(median([r["supervisorCpuPerMsg"] for r in mine
                           if r.get("supervisorCpuPerMsg") is not None])), "{:.3f}"),
            fmt(ms(median([r["probeP99"] for r in mine if "probeP99" in r]))),
            fmt(ms(max([r["probeMax"] for r in mine if r.get("probeMax") is not None],
                       default=None))),
            sum(r["errors"] for r in mine),
            "yes" if all(r["acked"] == r["stored"] for r in mine) else "NO",
        ])
    print("medians over {} rounds:".format(args.rounds))
    printTable(["server", "msgs/s", "p50 ms", "p99 ms", "srv CPU ms/msg",
                "settled CPU ms/msg", "reactor CPU ms/msg", "supervisor CPU ms/msg", "probe p99 ms",
                "probe max ms", "errors", "acked==stored"], summary)
    if args.syscalls:
        print()
        print("system calls per acknowledged message (perf, median over rounds):")
        srows = []
        for label in labels:
            mine = [r for r in rows if r["server"] == label and r.get("syscalls")]
            srows.append([label] + [
                fmt(median([r["syscalls"].get(e, 0) / r["acked"] for r in mine if r["acked"]]))
                for e in PERF_EVENTS])
        printTable(["server"] + list(PERF_EVENTS), srows)
    print()
    failed = False
    peers = [run.label for run in runs if run.kind not in OURS]
    for ours in [run.label for run in runs if run.kind in OURS]:
        goal1(args, rows, ours, peers)
    for ours in [run.label for run in runs if run.kind in OURS]:
        goal2(args, rows, ours)
    if any(r["acked"] != r["stored"] or r["errors"] for r in rows):
        failed = True
        print("WARNING: errors, or acknowledged messages missing from a store")
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
