"""
IMAP sessions side by side with Debian's Dovecot 2.3, on the same messages.

For a 400- and a 20,000-message INBOX (about 1.3 KiB each, written as an
mbox file; Dovecot gets its own copy, since it rewrites the file on first
sight), each server is started fresh and a client script measures:

- login and ``SELECT INBOX`` (the first time: cold, the server indexes);
- a header ``FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)``;
- ``UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])``: every message's body;

first cold (the first session on the fresh server), then warm (``--runs``
more sessions), with the server's CPU (its processes and the children it
reaped: Dovecot's per-connection imap processes). Then 8 concurrent
sessions (8 client processes) each fetch every body of the 400-message
INBOX, against Dovecot, simplemail and ``simplemail --workers 2``:
messages per second in all, the median of 3 rounds after a first one
(shown too: it warms every server process, and with ``--workers`` a
process's first SELECT reads the folder).

The goals (issue 20): warm per-message time at most 2x Dovecot's, cold at
most 3x, 8 concurrent sessions with --workers 2 at least 0.5x Dovecot's
messages per second, and the 20,000-message figures per message within
1.5x the 400-message ones.

Runs as root (Dovecot drops to ``nobody`` for the mail). Usage::

    .venv/bin/python benchmarks/imap.py [--sizes 400,20000] [--runs 2]
"""

import argparse
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402
from pop3session import writeMailbox  # noqa: E402
from tests.dovecotserver import DovecotServer  # noqa: E402

HEADERS = b"FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
BODIES = b"UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[])"


class Client:
    """
    A lean blocking IMAP client: sends a command, reads to its tagged
    answer (literals skipped by their counts), counts FETCH responses.
    """

    def __init__(self, port, timeout=600):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.tags = 0
        self._until(b"*")

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise common.BenchError("connection closed: {!r}".format(bytes(self.buf[-300:])))
        self.buf += data

    def _until(self, tag):
        buf = self.buf
        pos = 0
        fetches = 0
        while True:
            end = buf.find(b"\r\n", pos)
            if end == -1:
                del buf[:pos]
                pos = 0
                self._fill()
                buf = self.buf
                continue
            if buf[end - 1:end] == b"}":
                start = buf.rfind(b"{", pos, end)
                size = int(buf[start + 1:end - 1].rstrip(b"+"))
                while len(buf) < end + 2 + size:
                    del buf[:pos]
                    end -= pos
                    pos = 0
                    self._fill()
                    buf = self.buf
                if buf.startswith(b"* ", pos):
                    fetches += 1
                pos = end + 2 + size
                continue
            line = bytes(buf[pos:end])
            pos = end + 2
            if line.startswith(b"* ") and b" FETCH (" in line[:24]:
                fetches += 1
            if tag == b"*" or line.startswith(tag + b" "):
                del buf[:pos]
                if not line.split(b" ", 2)[1] in (b"OK", b"PREAUTH"):
                    raise common.BenchError("command failed: {!r}".format(line))
                return line, fetches

    def command(self, line):
        self.tags += 1
        tag = b"t%d" % self.tags
        self.sock.sendall(tag + b" " + line + b"\r\n")
        return self._until(tag)

    def close(self):
        try:
            self.command(b"LOGOUT")
        except (OSError, common.BenchError):
            pass
        self.sock.close()


def session(port, count, what):
    """
    One session: login + SELECT, then the C{what} fetch; seconds of each.
    """
    t0 = time.perf_counter()
    c = Client(port)
    c.command(b"LOGIN bob secret")
    _, _ = c.command(b"SELECT INBOX")
    t1 = time.perf_counter()
    _, fetched = c.command(HEADERS if what == "headers" else BODIES)
    t2 = time.perf_counter()
    c.close()
    if fetched != count:
        raise common.BenchError("fetched {} of {}".format(fetched, count))
    return t1 - t0, t2 - t1


def treeCpu(pid):
    """
    CPU seconds of a process, its live descendants and the children it
    reaped (from /proc stat: utime, stime, cutime, cstime).
    """
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid] + _descendants(pid):
        try:
            with open("/proc/{}/stat".format(p)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


def _descendants(pid):
    found = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child in common.childPids(parent):
            found.append(child)
            todo.append(child)
    return found


# -- the servers


def startSimplemail(workdir, name, count, bodySize, workers=1):
    spool = os.path.join(workdir, "spool-" + name)
    os.makedirs(spool, exist_ok=True)
    writeMailbox(os.path.join(spool, "bob"), count, bodySize)
    port = common.freePort()
    imapPort = common.freePort(avoid={port})
    extra = ["--imap", "tcp:{}:interface=127.0.0.1".format(imapPort)]
    if workers > 1:
        extra += ["--workers", str(workers)]
    server = common.simplemailServer(
        spool, port, os.path.join(workdir, "twistd-{}.log".format(name)), extra)
    server.start()
    _waitIMAP(imapPort)
    return server, imapPort


def startDovecot(workdir, name, count, bodySize):
    """
    A throwaway Dovecot (L{tests.dovecotserver}) serving IMAP for bob, its
    INBOX the same messages as simplemail's spool file (its id lines too).

    @return: the L{DovecotServer}, its IMAP port.
    """
    server = DovecotServer(os.path.join(workdir, "dovecot-" + name), protocols=("imap",),
                           specialUse=False)
    try:
        server.addUser("bob", lambda path: writeMailbox(path, count, bodySize))
        server.start()
    except BaseException:
        server.stop()
        raise
    return server, server.imapPort


def _waitIMAP(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            greeting = s.recv(200)
            s.close()
            if greeting.startswith(b"* OK"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise common.BenchError("no IMAP server on port {}".format(port))


def stop(server):
    server.stop()


# -- measurements


def measure(kind, pid, port, count, runs):
    rows = []
    for run in range(1, runs + 2):
        label = "cold" if run == 1 else "warm"
        for what in ("headers", "bodies"):
            cpu = treeCpu(pid)
            select, fetch = session(port, count, what)
            cpu = treeCpu(pid) - cpu
            rows.append({"server": kind, "messages": count, "run": label, "what": what,
                         "select": select, "fetch": fetch, "cpu": cpu})
            print("  {} {} {} {}: select {:.3f}s, fetch {:.3f}s ({:.0f} us/msg), "
                  "server CPU {:.3f}s".format(kind, count, label, what, select, fetch,
                                              1e6 * fetch / count, cpu), flush=True)
    return rows


def _concurrentWorker(args):
    port, count = args
    select, fetch = session(port, count, "bodies")
    return select + fetch


def concurrent(port, count, sessions=8, rounds=3):
    """
    Messages per second of C{sessions} concurrent sessions, each fetching
    every body: the first round (it warms every server process: with
    C{--workers}, a process's first SELECT reads the folder) and the median
    of C{rounds} more.
    """
    rates = []
    with multiprocessing.Pool(sessions) as pool:
        for _ in range(rounds + 1):
            t = time.perf_counter()
            pool.map(_concurrentWorker, [(port, count)] * sessions)
            rates.append(sessions * count / (time.perf_counter() - t))
    print("  {} concurrent sessions: {} messages/s".format(
        sessions, ", ".join("{:.0f}".format(r) for r in rates)), flush=True)
    return rates[0], common.median(rates[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="400,20000")
    parser.add_argument("--runs", type=int, default=2, help="warm sessions per fetch")
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--concurrent", type=int, default=400,
                        help="messages in the folder of the 8 concurrent sessions (0: skip)")
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    if shutil.which("dovecot") is None:
        raise SystemExit("needs Debian's dovecot-imapd")
    print("command:", common.commandLine())
    print("checkout:", common.checkoutState())
    print("machine:", common.machineLoad())
    workdir = args.workdir or tempfile.mkdtemp(prefix="simplemail-imap-")
    os.chmod(workdir, 0o755)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    rates = {}
    try:
        for count in sizes:
            dovecot, port = startDovecot(workdir, str(count), count, args.body_size)
            try:
                rows += measure("dovecot", dovecot.process.pid, port, count, args.runs)
            finally:
                stop(dovecot)
            server, port = startSimplemail(workdir, str(count), count, args.body_size)
            try:
                rows += measure("simplemail", server.pid, port, count, args.runs)
            finally:
                stop(server)
        if args.concurrent:
            n = args.concurrent
            dovecot, port = startDovecot(workdir, "c", n, args.body_size)
            try:
                session(port, n, "bodies")  # index once
                rates["dovecot"] = concurrent(port, n)
            finally:
                stop(dovecot)
            for workers in (1, 2):
                server, port = startSimplemail(workdir, "c%d" % workers, n, args.body_size,
                                               workers=workers)
                try:
                    session(port, n, "bodies")
                    rates["simplemail --workers %d" % workers] = concurrent(port, n)
                finally:
                    stop(server)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report(rows, rates)


def report(rows, rates):
    print()
    table = []
    index = {}
    for r in rows:
        key = (r["server"], r["messages"], r["run"], r["what"])
        index.setdefault(key, []).append(r)
    for (server, count, run, what), found in sorted(index.items()):
        fetch = common.median([r["fetch"] for r in found])
        cpu = common.median([r["cpu"] for r in found])
        select = common.median([r["select"] for r in found])
        table.append([server, count, run, what, common.fmt(select, "{:.3f}"),
                      common.fmt(1e6 * fetch / count, "{:.0f}"),
                      common.fmt(1e6 * cpu / count, "{:.0f}")])
    common.printTable(["server", "messages", "run", "fetch", "login+SELECT s",
                       "fetch us/msg", "server CPU us/msg"], table)

    def per(server, count, run, what, field="fetch"):
        found = index.get((server, count, run, what))
        return common.median([r[field] for r in found]) / count if found else None

    print()
    for count in sorted({r["messages"] for r in rows}):
        for run in ("cold", "warm"):
            for what in ("headers", "bodies"):
                d = per("dovecot", count, run, what)
                s = per("simplemail", count, run, what)
                dc = per("dovecot", count, run, what, "cpu")
                sc = per("simplemail", count, run, what, "cpu")
                if d and s:
                    print("{} {} {}: time {:.2f}x Dovecot, server CPU {}x".format(
                        count, run, what, s / d,
                        "{:.2f}".format(sc / dc) if dc else "n/a"))
    sizes = sorted({r["messages"] for r in rows})
    if len(sizes) > 1:
        for server in ("dovecot", "simplemail"):
            for what in ("headers", "bodies"):
                small = per(server, sizes[0], "warm", what)
                large = per(server, sizes[-1], "warm", what)
                if small and large:
                    print("{} warm {}: {} per message is {:.2f}x {}".format(
                        server, what, sizes[-1], large / small, sizes[0]))
    for name, (first, rate) in rates.items():
        print("8 concurrent sessions, {}: {:.0f} messages/s{} (first round {:.0f}{})".format(
            name, rate, "" if name == "dovecot" or "dovecot" not in rates else
            " ({:.2f}x Dovecot)".format(rate / rates["dovecot"][1]), first,
            "" if name == "dovecot" or "dovecot" not in rates else
            ", {:.2f}x Dovecot's".format(first / rates["dovecot"][0])))


if __name__ == "__main__":
    main()
