"""
Helpers shared by the benchmark scripts (not a benchmark itself).

- starting and stopping server processes (simplemail under twistd, the
  peers in peers.py) on loopback ports, with bounded waits;
- raising RLIMIT_NOFILE;
- reading a process's memory and CPU time from /proc;
- a tiny asyncio client for the simplemail line protocol;
- percentiles and table printing.

Everything here is bounded in time: a server that does not come up, a reply
that does not arrive or a process that does not stop raises an error.
"""

import asyncio
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(BENCHMARKS)

# ``python -m twisted.scripts.twistd`` exits 0 doing nothing (that module has
# no __main__ block), so twistd's entry point is run with -c.
_TWISTD = (
    "import sys; sys.argv[0] = 'twistd'; "
    "from twisted.scripts.twistd import run; run()"
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class BenchError(Exception):
    pass


def commandLine():
    """
    The command line this script was run with, to print with the results.
    """
    return " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)


def freePort(avoid=()):
    """
    A loopback TCP port free now, other than those in C{avoid} (a second
    port for the same server: the kernel may hand out the same one twice).
    """
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in avoid:
            return port
    raise BenchError("no free port outside {}".format(sorted(avoid)))


def raiseNofile(wanted):
    """
    Raise this process's RLIMIT_NOFILE soft limit (and the hard limit when
    we may, i.e. as root) to at least C{wanted}.  Children inherit it.

    @return: the C{(soft, hard)} limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            wanted = hard  # not root: the hard limit is as far as we go
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- /proc


def procStatus(pid):
    """
    The memory fields of /proc/PID/status, in KiB: VmRSS, VmHWM, RssAnon...
    """
    fields = {}
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0])
            elif key == "Threads":
                fields[key] = int(parts[0])
    return fields


def resetPeakRss(pid):
    """
    Reset VmHWM (the peak RSS) of a process to its current RSS (Linux >= 4.0:
    write 5 to /proc/PID/clear_refs).  @return: whether it worked.
    """
    try:
        with open("/proc/{}/clear_refs".format(pid), "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid):
    """
    CPU seconds a process (all its live threads) has used so far, with
    nanosecond resolution (/proc/PID/task/*/schedstat); falls back to the
    clock-tick counts of /proc/PID/stat.
    """
    try:
        total = 0
        for tid in os.listdir("/proc/{}/task".format(pid)):
            try:
                with open("/proc/{}/task/{}/schedstat".format(pid, tid)) as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass  # the thread ended meanwhile
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/{}/stat".format(pid)) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def mainThreadCpuSeconds(pid):
    """
    User + system CPU seconds of a process's main thread alone (for a
    Twisted server: the reactor thread).
    """
    with open("/proc/{0}/task/{0}/schedstat".format(pid)) as f:
        return int(f.read().split()[0]) / 1e9


def mainThreadRunQueueWait(pid):
    """
    Seconds the main thread of a process has spent runnable but waiting for a
    CPU (/proc/PID/task/PID/schedstat): time lost to other processes, not to
    the process itself.
    """
    try:
        with open("/proc/{0}/task/{0}/schedstat".format(pid)) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def systemCpuBusy():
    """
    CPU seconds the whole machine has been busy (all CPUs, not idle or
    waiting for I/O), from /proc/stat.
    """
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLK_TCK


def busyCores(interval=1.0):
    """
    How many CPUs the whole machine kept busy over the next C{interval}
    seconds.
    """
    b0 = systemCpuBusy()
    time.sleep(interval)
    return (systemCpuBusy() - b0) / interval


def waitQuiet(threshold, maxWait):
    """
    Wait (at most C{maxWait} seconds) until the machine uses fewer than
    C{threshold} cores: other people's work skews a run.

    @return: the busy cores of the last second.
    """
    deadline = time.monotonic() + maxWait
    while True:
        busy = busyCores(1.0)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def childPids(pid):
    """
    The ids of a process's children (from /proc/*/stat), e.g. the worker
    processes of C{twistd simplemail --workers N}.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                data = f.read()
        except OSError:
            continue
        if int(data[data.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return sorted(found)


class CpuWatch:
    """
    CPU accounting over an interval for one server process: its CPU, its
    main thread's CPU and run-queue wait, this process's CPU, and the CPU
    the rest of the machine used (other people's work skews a benchmark).

    With C{children} (a server with C{--workers}), the server is the process
    and its children at the start: CPU and main threads are summed over
    them, and C{supervisorCpu} is the first process's alone.

    The server's other child processes (the search index's indexing
    process, the web door's helper processes), also those started during
    the run, are the server's work too: their CPU is in C{serverCpu}, and
    alone in C{helperCpu}.
    """

    def __init__(self, pid, extraPids=(), children=False):
        self.pid = pid
        self.pids = [pid] + (childPids(pid) if children else [])
        self.extraPids = list(extraPids)
        self.t0 = time.monotonic()
        self.sup0 = cpuSeconds(pid)
        self.cpu0 = self._sum(cpuSeconds)
        self.main0 = self._sum(mainThreadCpuSeconds)
        self.wait0 = self._sum(mainThreadRunQueueWait)
        self.self0 = selfCpuSeconds()
        self.sys0 = systemCpuBusy()
        self.extra0 = {p: _safeCpu(p) for p in self.extraPids}
        self.helpers0 = {p: _safeCpu(p) for p in self._helpers()}

    def _helpers(self):
        """
        The server's child processes (and its workers') not in C{pids}.
        """
        found = []
        for pid in self.pids:
            found.extend(p for p in childPids(pid) if p not in self.pids)
        return found

    def addPid(self, pid):
        self.extraPids.append(pid)
        self.extra0[pid] = _safeCpu(pid)

    def _sum(self, reading):
        total = 0.0
        for pid in self.pids:
            try:
                total += reading(pid)
            except OSError:
                pass  # a worker died meanwhile
        return total

    def stop(self):
        elapsed = time.monotonic() - self.t0
        helpers = sum(_safeCpu(p) - self.helpers0.get(p, 0.0) for p in self._helpers())
        cpu = self._sum(cpuSeconds) - self.cpu0 + helpers
        mine = selfCpuSeconds() - self.self0
        extra = sum(_safeCpu(p) - self.extra0[p] for p in self.extraPids)
        busy = systemCpuBusy() - self.sys0
        return {
            "elapsed": elapsed,
            "serverCpu": cpu,
            "helperCpu": helpers,
            "processes": len(self.pids),
            "supervisorCpu": cpuSeconds(self.pid) - self.sup0,
            "reactorBusy": (self._sum(mainThreadCpuSeconds) - self.main0) / elapsed,
            "reactorRunQueueWait": (self._sum(mainThreadRunQueueWait) - self.wait0) / elapsed,
            "selfCpu": mine,
            "foreignCpu": max(0.0, busy - cpu - mine - extra) / elapsed,
        }


    def settledHelperCpu(self, quiet=2.5, limit=120.0):
        """
        After L{stop}: wait until the helper processes' CPU stops growing
        (for C{quiet} seconds, at most C{limit} seconds in all), and give
        their CPU since the start.  An indexing process that yields to the
        deliveries (C{SCHED_IDLE}) does most of its work after the load:
        this is what it cost, wherever it was spent.
        """
        def total():
            return sum(_safeCpu(p) - self.helpers0.get(p, 0.0) for p in self._helpers())

        deadline = time.monotonic() + limit
        last, since = total(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = total()
            if now > last + 0.005:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last


def _safeCpu(pid):
    try:
        return cpuSeconds(pid)
    except OSError:
        return 0.0


def checkoutState():
    """
    The commit of the checkout and whether twisted_mail/ has uncommitted
    changes: the code a benchmark measured.
    """
    try:
        head = subprocess.run(
            ["git", "-C", CHECKOUT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", CHECKOUT, "status", "--porcelain", "--", "twisted_mail", "twisted"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return "{}{}".format(head, " + uncommitted changes in twisted_mail/" if dirty else "")


def machineLoad():
    """
    The load averages (1, 5, 15 min) and CPU count: other work on the
    machine skews every figure, so each script prints this.
    """
    with open("/proc/loadavg") as f:
        one, five, fifteen = f.read().split()[:3]
    return "load average {} {} {} on {} CPUs".format(one, five, fifteen, os.cpu_count())


def selfCpuSeconds():
    t = os.times()
    return t.user + t.system


# -- server processes


class ServerProcess:
    """
    A server child process listening on a loopback port, its output in a
    log file.  C{ready} is a greeting prefix (C{b"+OK"} or C{b"220"}) that
    a probe connection must receive before the server counts as started.
    """

    def __init__(self, name, argv, port, logPath, ready, env=None, nofile=None):
        self.name = name
        self.argv = argv
        self.port = port
        self.logPath = logPath
        self.ready = ready
        self.env = env
        self.nofile = nofile
        self.process = None
        self._log = None

    @property
    def pid(self):
        return self.process.pid

    def commandLine(self):
        return " ".join(shlex.quote(a) for a in self.argv)

    def start(self, timeout=START_TIMEOUT):
        self._log = open(self.logPath or os.devnull, "ab")
        nofile = self.nofile

        def limits():
            if nofile:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                if hard != resource.RLIM_INFINITY and hard < nofile:
                    hard = nofile
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=limits,
            start_new_session=True,
        )
        try:
            self._waitReady(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _waitReady(self, timeout):
        waitGreeting(self.port, self.ready, server=self, timeout=timeout)

    def logTail(self, n=4000):
        try:
            with open(self.logPath, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout=STOP_TIMEOUT):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(STOP_TIMEOUT)


def waitGreeting(port, ready, server=None, timeout=START_TIMEOUT):
    """
    Wait (at most C{timeout} seconds) until a connection to C{port} is
    greeted with a line starting with C{ready}; raise L{BenchError} if it is
    not, or if C{server} (a started L{ServerProcess}) exits meanwhile.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if server is not None and server.process.poll() is not None:
            raise BenchError("{} exited with {}; log:\n{}".format(
                server.name, server.process.returncode, server.logTail()))
        try:
            probe = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            pass
        else:
            try:
                probe.settimeout(5)
                greeting = probe.recv(200)
            except OSError:
                greeting = b""
            finally:
                probe.close()
            if greeting.startswith(ready):
                return
        if time.monotonic() > deadline:
            raise BenchError("nothing greeted with {!r} on port {} within {} s{}".format(
                ready, port, timeout,
                "; log:\n" + server.logTail() if server is not None else ""))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def simplemailServer(spool, port, logPath, extraArgs=(), nofile=None, wrapper=None, env=None):
    """
    C{twistd -n simplemail} from this checkout (PYTHONPATH=checkout), with
    this interpreter.  C{wrapper}: a Python script run instead of twistd's
    entry point, that patches something and then runs twistd with its
    arguments (for trying a fix without touching the tree).  C{env}: more
    environment variables for the server (for example C{SM_PATCH}).
    """
    argv = [
        sys.executable,
    ] + ([wrapper] if wrapper else ["-c", _TWISTD]) + [
        "-n",
        "--pidfile=",
        "--logfile=-",
        "simplemail",
        "--listen",
        "tcp:{}:interface=127.0.0.1".format(port),
        "--spool",
        spool,
    ] + list(extraArgs)
    extraEnv = env
    env = dict(os.environ)
    env.update(extraEnv or {})
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = CHECKOUT + (os.pathsep + path if path else "")
    return ServerProcess("simplemail", argv, port, logPath, b"+OK", env=env, nofile=nofile)


def peerServer(kind, root, port, logPath, users, extraArgs=()):
    """
    One of the SMTP peers of peers.py.
    """
    argv = [
        sys.executable,
        os.path.join(BENCHMARKS, "peers.py"),
        kind,
        "--port",
        str(port),
        "--root",
        root,
        "--users",
        ",".join(users),
    ] + list(extraArgs)
    return ServerProcess(kind, argv, port, logPath, b"220")


# -- a small asyncio client for the simplemail protocol


class LineConnection:
    """
    An asyncio stream connection that reads CRLF (or LF) lines, bounded by
    a timeout per read.
    """

    def __init__(self, reader, writer, timeout):
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    @classmethod
    async def open(cls, port, timeout=30.0, host="127.0.0.1", limit=1 << 20):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=limit), timeout
        )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, timeout)

    async def readLine(self):
        line = await asyncio.wait_for(self.reader.readline(), self.timeout)
        if not line.endswith(b"\n"):
            raise BenchError("connection closed (got {!r})".format(line[:200]))
        return line.rstrip(b"\r\n")

    async def reply(self):
        """
        One status line; raise unless it is +OK.
        """
        line = await self.readLine()
        if not line.startswith(b"+OK"):
            raise BenchError("unexpected reply {!r}".format(line[:200]))
        return line

    async def multiline(self):
        """
        A +OK multi-line reply: the data lines (still dot-stuffed).
        """
        await self.reply()
        lines = []
        while True:
            line = await self.readLine()
            if line == b".":
                return lines
            lines.append(line)

    def send(self, data):
        self.writer.write(data)

    async def command(self, line):
        self.writer.write(line + b"\r\n")
        return await self.reply()

    async def close(self):
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError, ConnectionError):
            pass


# -- statistics and printing


def percentile(values, p):
    """
    The p-th percentile (0..100) by the nearest-rank method; None if empty.
    """
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def median(values):
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def ms(seconds):
    return None if seconds is None else seconds * 1000.0


def fmt(value, spec="{:.2f}"):
    if value is None:
        return "-"
    return spec.format(value)


def printTable(headers, rows, out=None):
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for j, row in enumerate(cells):
        out.write(
            "  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(row))
            + "\n"
        )
        if j == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.flush()


def verdict(ok):
    return "MET" if ok else "NOT MET"


# -- the latency probe (probe.py) as a child process


class Probe:
    """
    probe.py running in its own process against C{port}; L{stop} ends it
    and returns its latencies (seconds) and error count.
    """

    def __init__(self, port, command="LSTU", interval=0.02, maxSeconds=300.0):
        self.argv = [
            sys.executable,
            os.path.join(BENCHMARKS, "probe.py"),
            "--port",
            str(port),
            "--command",
            command,
            "--interval",
            str(interval),
            "--max-seconds",
            str(maxSeconds),
        ]
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def stop(self, timeout=60.0):
        import json

        try:
            out, _ = self.process.communicate(b"", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise BenchError("the probe did not stop")
        if self.process.returncode != 0:
            raise BenchError("the probe failed (exit {})".format(self.process.returncode))
        return json.loads(out)


# -- a blocking client for sequential measurements


class SyncClient:
    """
    A blocking client for the simplemail line protocol: every read waits at
    most C{timeout} seconds.  Replies are returned without line endings.
    """

    def __init__(self, port, timeout=60.0, host="127.0.0.1", greet=True):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.greeting = self.readLine() if greet else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def readLine(self):
        deadline = time.monotonic() + self.timeout
        while True:
            i = self.buf.find(b"\n")
            if i != -1:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line.rstrip(b"\r")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("no reply within {} s".format(self.timeout))
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise BenchError("connection closed by the server")
            self.buf += chunk

    def reply(self, expectOk=True):
        line = self.readLine()
        if expectOk and not line.startswith(b"+OK"):
            raise BenchError("unexpected reply {!r}".format(line[:200]))
        return line

    def command(self, line, expectOk=True):
        self.sock.sendall(line + b"\r\n")
        return self.reply(expectOk)

    def multiline(self, expectOk=True):
        """
        A multi-line reply: C{(status line, data bytes)}; the data is not
        unstuffed (the benchmarks only count it).
        """
        status = self.reply(expectOk)
        if not status.startswith(b"+OK"):
            return status, b""
        deadline = time.monotonic() + self.timeout
        searchFrom = 0
        while True:
            end = self.buf.find(b"\r\n.\r\n", searchFrom)
            searchFrom = max(0, len(self.buf) - 4)
            if end != -1:
                data = bytes(self.buf[:end])
                del self.buf[: end + 5]
                return status, data
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return status, b""
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("multi-line reply not finished within {} s".format(self.timeout))
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise BenchError("connection closed by the server")
            self.buf += chunk
