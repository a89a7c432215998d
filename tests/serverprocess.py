"""
Run a real C{twistd -n simplemail} process for end-to-end tests, and talk
to it with a tiny blocking line-protocol client.

Not a test module.  Everything here is synchronous and every wait is bounded:
a server that does not come up, a reply that does not arrive or a process
that does not stop raises L{ServerProcessError} (or L{ClientError}) with the
log or the bytes received so far, instead of hanging.

Typical use from a L{twisted.trial.unittest.SynchronousTestCase}::

    server = ServerProcess(self.mktemp())
    self.addCleanup(server.kill)
    server.start()
    with server.connect() as client:
        client.command(b"ADDU bob")
"""

import os
import signal
import socket
import subprocess
import sys
import time

#: The root of the checkout: twistd finds the plugin through PYTHONPATH.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: C{python -m twisted.scripts.twistd} does nothing (that module has no
#: C{__main__} block), so run twistd's entry point with C{-c}.
_TWISTD = (
    "import sys; sys.argv[0] = 'twistd'; "
    "from twisted.scripts.twistd import run; run()"
)

#: Bounds, in seconds.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REPLY_TIMEOUT = 30.0


class ServerProcessError(Exception):
    """
    The server process did not do what was expected (start, stop, exit).
    """


class ClientError(Exception):
    """
    A reply did not come, or the connection closed, or it was not what the
    protocol allows.
    """


def freePort():
    """
    A TCP port on 127.0.0.1 that nobody listened on a moment ago.  Another
    program may take it before the server does: L{ServerProcess.start}
    retries with a new port when that happens.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def twistdCommand(args):
    """
    The argument vector that runs C{twistd} (from this checkout, with this
    interpreter) with C{args}.
    """
    return [sys.executable, "-c", _TWISTD] + list(args)


def twistdEnvironment():
    """
    The environment for a child twistd: this checkout first on PYTHONPATH.
    """
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = CHECKOUT + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def runTwistd(args, timeout=START_TIMEOUT, cwd=None):
    """
    Run C{twistd} with C{args} to completion (for option errors and other
    runs expected to end by themselves).

    @return: C{(exit code, output)}: stdout and stderr together, as text.
    """
    try:
        done = subprocess.run(
            twistdCommand(args),
            env=twistdEnvironment(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise ServerProcessError(
            "twistd {} did not exit within {}s; output:\n{}".format(
                args, timeout, (e.output or b"").decode("utf-8", "replace")
            )
        )
    return done.returncode, done.stdout.decode("utf-8", "replace")


class ServerProcess:
    """
    One C{twistd -n simplemail} child process on a loopback port.

    @ivar spool: the spool directory given with C{--spool}.
    @ivar port: the TCP port it listens on (after L{start}).
    @ivar logPath: the file that receives its stdout and stderr (the twistd
        log goes to stdout); it is kept across restarts and each start is
        appended, so the whole history can be read with L{log}.
    """

    def __init__(
        self,
        spool,
        extraArgs=(),
        logPath=None,
        port=None,
        cwd=None,
        preexec=None,
        workers=1,
    ):
        # spool=None: no --spool option (the server's default, under cwd).
        self.spool = os.path.abspath(spool) if spool is not None else None
        self.extraArgs = list(extraArgs)
        # workers > 1: --workers N; pid is the supervisor's, start() waits
        # for every worker, and kill() kills the workers too (a crash).
        self.workers = workers
        if workers != 1:
            self.extraArgs += ["--workers", str(workers)]
        if logPath is None:
            base = self.spool or os.path.join(os.path.abspath(cwd or "."), "server")
            logPath = base.rstrip(os.sep) + ".twistd-{}.log".format(id(self) & 0xFFFFFF)
        self.logPath = os.path.abspath(logPath)
        self.cwd = cwd
        self.preexec = preexec
        self._fixedPort = port
        self.port = port
        self.process = None
        self._logFile = None
        self._logStart = 0

    # -- lifetime

    def args(self, port):
        return [
            "-n",
            "--pidfile=",
            "--logfile=-",
            "simplemail",
            "--listen",
            "tcp:{}:interface=127.0.0.1".format(port),
        ] + (["--spool", self.spool] if self.spool is not None else []) + self.extraArgs

    def start(self, timeout=START_TIMEOUT):
        """
        Start the server and wait until it accepts connections (it has sent
        its greeting to a probe connection).

        @raise ServerProcessError: if it exits or does not answer in time.
        """
        if self.running():
            raise ServerProcessError("server already running")
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            port = self._fixedPort or freePort()
            self._spawn(port)
            try:
                self._waitUntilReady(deadline)
                if self.workers > 1:
                    self.waitForWorkers(max(1.0, deadline - time.monotonic()))
                return self
            except ServerProcessError:
                exited = self.process.poll() is not None
                newLog = self.logSinceStart()
                if (
                    exited
                    and self._fixedPort is None
                    and attempts < 5
                    and "Address already in use" in newLog
                ):
                    continue  # somebody took the port first: try another
                self.kill()
                raise

    def command(self, port):
        """
        The argument vector of the server process listening on C{port}.
        """
        return twistdCommand(self.args(port))

    def _spawn(self, port):
        self.port = port
        if self._logFile is None:
            self._logFile = open(self.logPath, "ab")
        self._logFile.flush()
        self._logStart = os.fstat(self._logFile.fileno()).st_size
        self.process = subprocess.Popen(
            self.command(port),
            env=twistdEnvironment(),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
        )

    def _waitUntilReady(self, deadline):
        delay = 0.01
        while True:
            if self.process.poll() is not None:
                raise ServerProcessError(
                    "twistd exited with {} before accepting connections; log:\n{}".format(
                        self.process.returncode, self.logSinceStart()
                    )
                )
            try:
                probe = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                pass
            else:
                try:
                    probe.settimeout(max(0.5, min(5.0, deadline - time.monotonic())))
                    greeting = probe.recv(100)
                except OSError:
                    greeting = b""
                finally:
                    probe.close()
                if greeting.startswith(b"+OK"):
                    return
            if time.monotonic() > deadline:
                raise ServerProcessError(
                    "twistd did not accept connections on port {}; log:\n{}".format(
                        self.port, self.logSinceStart()
                    )
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def running(self):
        return self.process is not None and self.process.poll() is None

    # -- workers (--workers N)

    def workerPids(self):
        """
        The process ids of the supervisor's worker processes now running
        (its children running C{twisted_mail.service.worker}).
        """
        if not self.running():
            return []
        return childProcesses(self.pid, "twisted_mail.service.worker")

    def workersServing(self):
        """
        The worker numbers and process ids that said they serve, since the
        last start, latest last: C{[(number, pid), ...]}.
        """
        found = []
        for line in self.logSinceStart().splitlines():
            marker = line.find("] worker ")
            if marker != -1 and " serving (pid " in line:
                words = line[marker + 2 :].split()
                # worker <n> serving (pid <pid>)
                found.append((int(words[1]), int(words[4].rstrip(")"))))
        return found

    def waitForWorkers(self, timeout=START_TIMEOUT, count=None):
        """
        Wait until C{count} (default: all) worker starts since the last
        start have been logged as serving.
        """
        count = self.workers if count is None else count
        deadline = time.monotonic() + timeout
        while len(self.workersServing()) < count:
            if not self.running() or time.monotonic() > deadline:
                raise ServerProcessError(
                    "{} of {} workers serving; log:\n{}".format(
                        len(self.workersServing()), count, self.logSinceStart()
                    )
                )
            time.sleep(0.02)

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    def stop(self, timeout=STOP_TIMEOUT):
        """
        Stop the server with SIGTERM and wait for it to exit (SIGKILL if it
        does not in time).

        @return: its exit code, or L{None} if it was not running.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
                raise ServerProcessError(
                    "twistd ignored SIGTERM for {}s; log:\n{}".format(
                        timeout, self.logSinceStart()
                    )
                )
        return self.process.returncode

    def kill(self, timeout=STOP_TIMEOUT):
        """
        SIGKILL the server (a crash) and reap it.  Safe to call at any time,
        any number of times: it is the cleanup of every test.
        """
        workers = []
        if self.workers > 1 and self.running():
            # Stopped first, the supervisor cannot start a worker again
            # between the listing and the kills: that one would be orphaned.
            try:
                os.kill(self.pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            # Every child, even one forked but not yet running the worker.
            workers = childProcesses(self.pid)
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise ServerProcessError("twistd {} survived SIGKILL".format(self.pid))
        waitUntilGone(workers, timeout)
        if self._logFile is not None:
            self._logFile.flush()
        return self.process.returncode if self.process is not None else None

    def close(self):
        """
        Kill the process if need be and close the log file.
        """
        try:
            self.kill()
        finally:
            if self._logFile is not None:
                self._logFile.close()
                self._logFile = None

    # -- the log

    def log(self):
        """
        Everything the server printed, over all its starts, as text.
        """
        try:
            with open(self.logPath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def logSinceStart(self):
        """
        What the server printed since its last start.
        """
        try:
            with open(self.logPath, "rb") as f:
                f.seek(self._logStart)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def waitForLog(self, text, timeout=10.0):
        """
        Wait until C{text} shows in the log since the last start (log lines
        are written after the reply that they describe may have been sent).

        @return: the log since the last start.
        """
        deadline = time.monotonic() + timeout
        while True:
            log = self.logSinceStart()
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise ServerProcessError(
                    "{!r} not in the log after {}s; log:\n{}".format(text, timeout, log)
                )
            time.sleep(0.02)

    # -- clients

    def connect(self, timeout=REPLY_TIMEOUT, greet=True):
        """
        A L{LineClient} connected to the server, the greeting read (unless
        C{greet} is false).
        """
        client = LineClient("127.0.0.1", self.port, timeout=timeout)
        if greet:
            greeting = client.readLine()
            if not greeting.startswith(b"+OK"):
                client.close()
                raise ClientError("unexpected greeting {!r}".format(greeting))
            client.greeting = greeting
        return client


def childProcesses(parent, needle=""):
    """
    The ids of C{parent}'s child processes whose command line holds
    C{needle} (read from /proc).
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry), "rb") as f:
                stat = f.read()
            with open("/proc/{}/cmdline".format(entry), "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == parent and needle.encode() in cmdline:
            found.append(int(entry))
    return found


def processExists(pid):
    """
    Whether process C{pid} exists and is not a zombie.
    """
    try:
        with open("/proc/{}/stat".format(pid), "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def waitUntilGone(pids, timeout=STOP_TIMEOUT):
    """
    Wait until none of C{pids} exists.

    @raise ServerProcessError: if one still does after C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if processExists(pid)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise ServerProcessError("processes {} still running".format(left))
        time.sleep(0.02)


class LineClient:
    """
    A blocking client for the simplemail line protocol, for tests.

    Lines are sent with CRLF; replies are returned without their line
    ending.  Every read waits at most C{timeout} seconds in all.
    """

    greeting = None
    lastStatus = None

    def __init__(self, host, port, timeout=REPLY_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- sending

    def sendall(self, data):
        """
        Send raw bytes (several pipelined commands, a body, anything).
        """
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def sendLine(self, line):
        self.sendall(line + b"\r\n")

    # -- receiving

    def _fill(self, deadline):
        if self._eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError(
                "no complete reply within {}s; buffered: {!r}".format(
                    self.timeout, bytes(self._buf[self._pos : self._pos + 300])
                )
            )
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise ClientError(
                "no complete reply within {}s; buffered: {!r}".format(
                    self.timeout, bytes(self._buf[self._pos : self._pos + 300])
                )
            )
        if not data:
            self._eof = True
            return False
        if self._pos > 1 << 20 and self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        return True

    def readLine(self, deadline=None):
        """
        One line, without its CRLF (or LF).

        @raise ClientError: if the connection closes first or no line comes
            in time.
        """
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end != -1:
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line
            if not self._fill(deadline):
                raise ConnectionClosed(
                    "connection closed; unterminated data: {!r}".format(
                        bytes(self._buf[self._pos : self._pos + 300])
                    )
                )

    def readReply(self):
        """
        One status line; it must start with C{+OK} or C{-ERR}.
        """
        line = self.readLine()
        if not (line.startswith(b"+OK") or line.startswith(b"-ERR")):
            raise ClientError("not a status line: {!r}".format(line[:300]))
        return line

    def readMultiline(self, deadline=None):
        """
        The data lines of a multi-line reply (after its C{+OK} line), up to
        the line holding only C{.}, dot-unstuffed.

        @rtype: L{list} of L{bytes}
        """
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        lines = []
        while True:
            line = self.readLine(deadline)
            if line == b".":
                return lines
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)

    def readUntilClosed(self):
        """
        Everything until the server closes the connection (bounded).
        """
        deadline = time.monotonic() + self.timeout
        while self._fill(deadline):
            pass
        data = bytes(self._buf[self._pos :])
        self._pos = len(self._buf)
        return data

    # -- commands

    def command(self, line):
        """
        Send one command line and return its one-line reply.
        """
        self.sendLine(line)
        return self.readReply()

    def multiline(self, line):
        """
        Send one command whose success reply is multi-line.

        @return: C{(status line, data lines or None on -ERR)}.
        """
        self.sendLine(line)
        status = self.readReply()
        if status.startswith(b"+OK"):
            return status, self.readMultiline()
        return status, None

    def readMessage(self):
        """
        C{READM}: the message as bytes with LF line endings, or L{None} on
        C{-ERR} (the status line is kept in L{lastStatus}).
        """
        status, lines = self.multiline(b"READM")
        self.lastStatus = status
        if lines is None:
            return None
        return b"".join(line + b"\n" for line in lines)

    def readAll(self, most=1000):
        """
        C{READM} until the mailbox is empty: the messages, as
        L{readMessage} gives them.

        @raise ClientError: if C{READM} failed otherwise than with
            C{-ERR No More Mail}, or the mailbox held more than C{most}.
        """
        messages = []
        while len(messages) <= most:
            text = self.readMessage()
            if text is None:
                if self.lastStatus != b"-ERR No More Mail":
                    raise ClientError("READM failed: {!r}".format(self.lastStatus))
                return messages
            messages.append(text)
        raise ClientError("more than {} messages".format(most))

    def send(self, receiver, body):
        """
        Multi-line C{SEND}: the body (bytes, LF or CRLF line endings) is
        split into lines, dot-stuffed and ended with C{.}.

        @return: the final reply (or the first one, if it was C{-ERR}).
        """
        if isinstance(receiver, str):
            receiver = receiver.encode("ascii")
        first = self.command(b"SEND " + receiver)
        if not first.startswith(b"+OK"):
            return first
        self.sendall(stuffBody(body) + b".\r\n")
        return self.readReply()


class ConnectionClosed(ClientError):
    """
    The server closed the connection.
    """


def stuffBody(body):
    """
    A body as the bytes of dot-stuffed CRLF lines (without the final C{.}).
    """
    if not body:
        return b""
    lines = body.replace(b"\r\n", b"\n")
    if lines.endswith(b"\n"):
        lines = lines[:-1]
    out = []
    for line in lines.split(b"\n"):
        if line.startswith(b"."):
            line = b"." + line
        out.append(line + b"\r\n")
    return b"".join(out)


class DatabaseServerProcess(ServerProcess):
    """
    A C{twistd -n simplemail --database URL} child process: no spool; its
    log in C{cwd} (a directory of the test's), where the server runs.
    """

    def __init__(self, url, cwd, extraArgs=(), **kwargs):
        ServerProcess.__init__(
            self, None, ["--database", url] + list(extraArgs), cwd=cwd, **kwargs)
        self.url = url
