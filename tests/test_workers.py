"""
Tests for C{--workers N}: L{twisted_mail.workers} (the supervisor, the
worker's log channel), L{twisted_mail.listeners} and their options.

The supervisor's unit tests run on a L{MemoryReactorClock} that records
spawned processes; the integration tests run a real
C{twistd -n simplemail --workers 2} (tests/serverprocess.py).
"""

import json
import os
import signal
import socket
import time

from twisted.application.service import MultiService
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_mail import tap, workers
from twisted_mail.listeners import CannotListen, Listeners

from .serverprocess import (
    ServerProcess,
    freePort,
    processExists,
    runTwistd,
    twistdEnvironment,
    waitUntilGone,
)


class FakeProcess:
    """
    The transport of a spawned process, as the supervisor sees it.
    """

    def __init__(self, pid, protocol, args, childFDs):
        self.pid = pid
        self.protocol = protocol
        self.args = args
        self.childFDs = childFDs
        self.written = b""
        self.signals = []
        self.ended = False

    def write(self, data):
        self.written += data

    def signalProcess(self, name):
        if self.ended:
            raise error.ProcessExitedAlready()
        self.signals.append(name)

    def end(self, exitCode=0, signal=None):
        """
        The process ends (with a status, or killed by a signal).
        """
        self.ended = True
        if exitCode == 0 and signal is None:
            reason = error.ProcessDone(0)
        else:
            reason = error.ProcessTerminated(exitCode=exitCode, signal=signal)
        self.protocol.processEnded(Failure(reason))


class SpawningReactor(MemoryReactorClock):
    """
    A memory reactor with a clock that records spawned processes.
    """

    def __init__(self):
        MemoryReactorClock.__init__(self)
        self.processes = []

    def spawnProcess(self, protocol, executable, args=(), env=None, path=None,
                     uid=None, gid=None, usePTY=0, childFDs=None):
        process = FakeProcess(1000 + len(self.processes), protocol, args, childFDs)
        self.processes.append(process)
        protocol.makeConnection(process)
        return process


class FakePort:
    """
    A bound listening socket of the supervisor.
    """

    def __init__(self, fd):
        self.fd = fd
        self.closed = False

    def fileno(self):
        return self.fd

    def stopListening(self):
        self.closed = True


class SupervisorTests(SynchronousTestCase):
    """
    The supervisor starts, restarts and stops its workers.
    """

    def setUp(self):
        self.reactor = SpawningReactor()
        self.events = []
        self.ports = [FakePort(7), FakePort(9)]
        self.supervisor = workers.Supervisor(
            2,
            ["--spool", "x", "--workers", "2"],
            [("listen", "tcp:9025", self.ports[0]), ("smtp", "tcp:2525", self.ports[1])],
            self.reactor,
            executable="/usr/bin/python3",
            stopTimeout=20,
            observer=self.events.append,
        )

    def live(self):
        return [p for p in self.reactor.processes if not p.ended]

    def test_startsEveryWorkerWithTheSockets(self):
        """
        Starting runs N worker processes, each inheriting every listening socket and told its number, the command line and which socket is which.
        """
        self.supervisor.startService()
        self.assertEqual(len(self.reactor.processes), 2)
        for number, process in enumerate(self.reactor.processes, 1):
            self.assertEqual(process.args, ["/usr/bin/python3", "-m", "twisted_mail.workers"])
            self.assertEqual(process.childFDs, {0: "w", 1: "r", 2: "r", 3: 7, 4: 9})
            self.assertTrue(process.written.endswith(b"\n"))
            self.assertEqual(
                json.loads(process.written),
                {
                    "worker": number,
                    "argv": ["--spool", "x", "--workers", "2"],
                    "listeners": [["listen", "tcp:9025", 3], ["smtp", "tcp:2525", 4]],
                    "secret": self.supervisor.secret.hex(),
                },
            )
        self.assertEqual(len(self.supervisor.secret), 32)

    def test_restartKeepsTheSecret(self):
        """
        A restarted worker gets the same secret as the others, so that what one worker signed another can check.
        """
        self.supervisor.startService()
        self.reactor.processes[0].end(signal=9)
        self.reactor.advance(1)
        secrets = {json.loads(p.written)["secret"] for p in self.reactor.processes}
        self.assertEqual(secrets, {self.supervisor.secret.hex()})
        other = workers.Supervisor(1, [], [], self.reactor)
        self.assertNotEqual(other.secret, self.supervisor.secret)

    def test_restartWithBackOff(self):
        """
        A worker that keeps dying soon after its start is started again after 1, 2, 4, ... seconds, at most 30, never in a tight loop.
        """
        self.supervisor.startService()
        waits = []
        for death in range(7):
            process = self.reactor.processes[-1] if death else self.reactor.processes[0]
            process.end(signal=9)
            spawned = len(self.reactor.processes)
            waited = 0
            while len(self.reactor.processes) == spawned:
                self.reactor.advance(0.5)
                waited += 0.5
                self.assertLess(waited, 60)
            waits.append(waited)
        self.assertEqual(waits, [1, 2, 4, 8, 16, 30, 30])
        self.assertEqual(len(self.live()), 2)

    def test_backOffResetsAfterAStableRun(self):
        """
        A worker that ran for a while before dying is started again after one second, whatever its earlier deaths.
        """
        self.supervisor.startService()
        for _ in range(3):
            self.live()[0].end(exitCode=1)
            self.reactor.advance(30)
        self.reactor.advance(60)  # the last one runs for a minute
        spawned = len(self.reactor.processes)
        self.live()[0].end(signal=9)
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.processes), spawned)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), spawned + 1)

    def test_deathLogged(self):
        """
        A worker's death and its restart are logged with its number, its pid and how it ended.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.supervisor.startService()
        self.reactor.processes[1].end(signal=9)
        texts = [formatEvent(e) for e in logged if e.get("log_namespace") == "twisted_mail.workers"]
        self.assertIn("worker 2 started (pid 1001)", texts)
        self.assertIn(
            "worker 2 (pid 1001) was killed by signal 9 after 0.0 s; starting it again in 1 s",
            texts,
        )

    def test_stopSignalsAndWaits(self):
        """
        Stopping closes the supervisor's sockets, sends SIGTERM to every worker and finishes only when all have ended, restarting none.
        """
        self.supervisor.startService()
        d = self.supervisor.stopService()
        self.assertTrue(all(p.closed for p in self.ports))
        self.assertEqual([p.signals for p in self.reactor.processes], [["TERM"], ["TERM"]])
        self.assertNoResult(d)
        self.reactor.processes[0].end()
        self.assertNoResult(d)
        self.reactor.processes[1].end(exitCode=1)
        self.successResultOf(d)
        self.reactor.advance(100)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_stopKillsLaggards(self):
        """
        A worker still running when the stop timeout passes gets SIGKILL, and the stop finishes once it has ended.
        """
        self.supervisor.startService()
        d = self.supervisor.stopService()
        self.reactor.processes[0].end()
        self.reactor.advance(19)
        self.assertEqual(self.reactor.processes[1].signals, ["TERM"])
        self.reactor.advance(1)
        self.assertEqual(self.reactor.processes[1].signals, ["TERM", "KILL"])
        self.assertNoResult(d)
        self.reactor.processes[1].end(signal=9)
        self.successResultOf(d)

    def test_stopCancelsPendingRestart(self):
        """
        A worker waiting to be started again is not started once the server stops.
        """
        self.supervisor.startService()
        self.reactor.processes[0].end(signal=9)
        d = self.supervisor.stopService()
        self.reactor.processes[1].end()
        self.successResultOf(d)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_relayStructuredLine(self):
        """
        A worker's log line becomes an event of the supervisor's log with the worker's time, level, namespace and text, tagged with its number.
        """
        self.supervisor.startService()
        protocol = self.reactor.processes[1].protocol
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        workers._LogWriter(w)(
            {"log_time": 1234.5, "log_level": LogLevel.warn,
             "log_namespace": "twisted_mail.server", "log_format": "refused {x}",
             "x": "{y}\n\tdétail\t\\n"}
        )
        line = os.read(r, 65536)
        protocol.childDataReceived(1, line[:10])
        self.assertEqual(self.events, [])
        protocol.childDataReceived(1, line[10:])
        [event] = self.events
        self.assertEqual(event["log_time"], 1234.5)
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_namespace"], "twisted_mail.server")
        self.assertEqual(event["log_system"], "worker 2")
        from twisted.logger import formatEvent

        self.assertEqual(formatEvent(event), "refused {y}\n\tdétail\t\\n")

    def test_relayPlainOutput(self):
        """
        Anything else a worker prints (a traceback before its logging starts) is logged too, line by line, tagged with its number.
        """
        self.supervisor.startService()
        protocol = self.reactor.processes[0].protocol
        protocol.childDataReceived(2, b"Traceback (most recent call last):\n  File")
        protocol.childDataReceived(1, b"not a log line\n")
        self.reactor.processes[0].end(exitCode=1)
        texts = [(e["log_system"], e["log_level"], e["text"]) for e in self.events]
        self.assertEqual(
            texts,
            [
                ("worker 1", LogLevel.warn, "Traceback (most recent call last):"),
                ("worker 1", LogLevel.info, "not a log line"),
                ("worker 1", LogLevel.warn, "  File"),
            ],
        )


class LogWriterTests(SynchronousTestCase):
    """
    The worker's end of the log channel.
    """

    def test_oneLinePerEvent(self):
        """
        Each event is written at once as one line holding its time, level, namespace and text, tracebacks included.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        writer = workers._LogWriter(w)
        writer({"log_time": 5.0, "log_level": LogLevel.info, "log_namespace": "a.b",
                "log_format": "hello {who}", "who": "bob"})
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        writer({"log_time": 6.0, "log_level": LogLevel.critical, "log_namespace": "c",
                "log_format": "boom", "log_failure": failure})
        lines = os.read(r, 65536).split(b"\n")
        self.assertEqual(lines[-1], b"")
        first, second = [workers.parseLogLine(line) for line in lines[:-1]]
        self.assertEqual(first, (5.0, LogLevel.info, "a.b", "hello bob"))
        self.assertEqual(second[:3], (6.0, LogLevel.critical, "c"))
        self.assertTrue(second[3].startswith("boom\nTraceback"))
        self.assertIn("ZeroDivisionError", second[3])

    def test_otherLinesAreNotEvents(self):
        """
        Lines that a worker's log writer did not write are not taken for events.
        """
        for line in (b"plain text", b"1.0\tinfo\tx\tnot quoted", b"1.0\tnope\tx\t\"a\"",
                     b"1.0\tinfo\tx\t\"a\" trailing", b"x\tinfo\tx\t\"a\""):
            self.assertIsNone(workers.parseLogLine(line), line)


class WorkerProcessTests(SynchronousTestCase):
    """
    The worker process on its own, as the supervisor starts it.
    """

    def runWorker(self, configuration):
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "twisted_mail.workers"],
            input=configuration, env=twistdEnvironment(), capture_output=True, timeout=60,
        )
        return done.returncode, done.stdout, done.stderr

    def test_cannotStart(self):
        """
        A worker that cannot build its server logs one error line saying why and exits with status 1.
        """
        configuration = json.dumps({
            "worker": 3, "argv": ["--spool", self.mktemp(), "--listen", "tcp:1"],
            "listeners": [["listen", "tcp:2", 3]], "secret": "00",
        }).encode() + b"\n"
        code, out, err = self.runWorker(configuration)
        self.assertEqual(code, 1, err)
        [line] = out.splitlines()
        _, level, _, text = workers.parseLogLine(line)
        self.assertEqual(level, LogLevel.error)
        self.assertEqual(
            text, "worker 3 could not start: simplemail: cannot listen on tcp:1 (--listen): "
            "the supervisor passed the socket of tcp:2 (--listen)")

    def test_noConfiguration(self):
        """
        A worker whose standard input ends before its configuration says so and exits with status 2.
        """
        code, out, err = self.runWorker(b"")
        self.assertEqual((code, out), (2, b""))
        self.assertIn(b"no configuration from the supervisor", err)


class OptionsTests(SynchronousTestCase):
    """
    C{--workers} on the command line.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(["--spool", self.mktemp()] + list(argv))
        return options

    def test_default(self):
        """
        Without --workers the server runs in one process.
        """
        self.assertEqual(self.parse()["workers"], 1)

    def test_badCounts(self):
        """
        --workers 0, -1 or abc is a one-line usage error.
        """
        for value in ("0", "-1", "abc", "1.5"):
            exc = self.assertRaises(usage.UsageError, self.parse, "--workers", value)
            self.assertIn("--workers", str(exc))
            self.assertNotIn("\n", str(exc))

    def test_unshareableEndpoint(self):
        """
        With --workers above 1, an endpoint whose socket the workers cannot share is a one-line usage error naming those they can.
        """
        exc = self.assertRaises(
            usage.UsageError, self.parse, "--workers", "2", "--listen", "stdio:"
        )
        self.assertEqual(
            str(exc),
            "cannot listen on stdio: (--listen): --workers shares only tcp:, tcp6:, "
            "ssl: and unix: endpoints",
        )

    def test_keepsCommandLine(self):
        """
        The options keep the command line, for the workers to parse again.
        """
        options = tap.Options()
        options.parseOptions(["--workers", "3", "--smtp", "tcp:2525"])
        self.assertEqual(options.argv, ["--workers", "3", "--smtp", "tcp:2525"])


class MakeServiceTests(SynchronousTestCase):
    """
    C{makeService} with C{--workers}, and listeners that cannot be opened.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(["--spool", self.mktemp()] + list(argv))
        return options

    def test_supervisorOpensEveryDoor(self):
        """
        With --workers 3 the service is a supervisor of three workers holding every door's listener, bound but not accepting.
        """
        reactor = MemoryReactorClock()
        options = self.parse(
            "--workers", "3", "--listen", "tcp:9025", "--smtp", "tcp:2525",
            "--listen", "tcp:9026",
        )
        supervisor = tap.makeService(options, reactor=reactor)
        self.assertIsInstance(supervisor, workers.Supervisor)
        self.assertEqual(supervisor.count, 3)
        self.assertEqual(
            [(option, description) for option, description, _ in supervisor.listeners],
            [("listen", "tcp:9025"), ("listen", "tcp:9026"), ("smtp", "tcp:2525")],
        )
        self.assertEqual([port for port, _, _, _ in reactor.tcpServers], [9025, 9026, 2525])
        self.assertEqual(supervisor.argv, options.argv)

    def test_oneWorkerIsOneProcess(self):
        """
        With --workers 1 the server is the single-process service.
        """
        service = tap.makeService(self.parse("--workers", "1"), reactor=MemoryReactorClock())
        self.assertIsInstance(service, MultiService)
        for child in service:
            if hasattr(child, "factory"):
                self.addCleanup(child.factory.store.close)

    def test_cannotListenOneLine(self):
        """
        A listener that cannot be opened stops the server with one line naming the endpoint and the reason, with or without --workers.
        """
        cause = error.CannotListenError(
            "127.0.0.1", 9025, OSError(98, "Address already in use")
        )
        for extra in ([], ["--workers", "2"]):
            reactor = RaisingMemoryReactor(listenException=cause)
            options = self.parse("--listen", "tcp:9025:interface=127.0.0.1", *extra)
            exc = self.assertRaises(SystemExit, tap.makeService, options, reactor=reactor)
            self.assertEqual(
                str(exc),
                "simplemail: cannot listen on tcp:9025:interface=127.0.0.1 (--listen): "
                "Address already in use",
            )

    def test_workerAdoptsInOrder(self):
        """
        A worker adopts the inherited sockets in the supervisor's order, and refuses one passed for another listener.
        """
        a, b = socket.socket(), socket.socket()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        reactor = MemoryReactorClock()
        listeners = Listeners(
            reactor, [["listen", "tcp:9025", os.dup(a.fileno())], ["smtp", "tcp:2525", 99]]
        )
        listeners.listen("listen", "tcp:9025", object())
        self.assertEqual(len(reactor.adoptedPorts), 1)
        exc = self.assertRaises(CannotListen, listeners.listen, "smtp", "tcp:2526", object())
        self.assertIn("the supervisor passed the socket of tcp:2525", str(exc))


# -- a real twistd with --workers 2


def _workerOf(log, clientPort):
    """
    The worker number that logged the connection from C{clientPort}.
    """
    needle = "connection from 127.0.0.1:{}\n".format(clientPort)
    for line in log.splitlines(True):
        if line.endswith(needle) and "] " in line and "[worker " in line:
            return int(line.split("[worker ", 1)[1].split("]", 1)[0])
    return None


class TwoWorkersTests(SynchronousTestCase):
    """
    C{twistd -n simplemail --workers 2}, end to end.
    """

    def startServer(self, **kwargs):
        server = ServerProcess(
            os.path.abspath(self.mktemp()), workers=2,
            logPath=os.path.abspath(self.mktemp()) + ".log", **kwargs
        )
        self.addCleanup(server.close)
        server.start()
        return server

    def clientsOnEachWorker(self, server, limit=60):
        """
        Open connections until both workers hold one.

        @return: C{{worker number: client}}.
        """
        byWorker = {}
        opened = []
        deadline = time.monotonic() + 20
        while len(byWorker) < 2 and len(opened) < limit and time.monotonic() < deadline:
            client = server.connect()
            self.addCleanup(client.close)
            opened.append(client)
            port = client.sock.getsockname()[1]
            log = server.waitForLog("connection from 127.0.0.1:{}\n".format(port))
            byWorker.setdefault(_workerOf(log, port), client)
        self.assertEqual(sorted(byWorker), [1, 2], "{} connections".format(len(opened)))
        return byWorker

    def test_bothWorkersServeOneSpool(self):
        """
        Connections land on both workers, and a message delivered and deleted through one is seen and gone through the other.
        """
        server = self.startServer()
        one, two = self.clientsOnEachWorker(server).values()
        self.assertTrue(one.command(b"ADDU bob").startswith(b"+OK"))
        self.assertTrue(one.command(b"USER bob").startswith(b"+OK"))
        self.assertEqual(one.command(b"SEND bob hello"), b"+OK message delivered to bob")
        self.assertEqual(two.command(b"USER bob"), b"+OK bob has 1 message")
        self.assertIn(b"hello", two.readMessage())
        self.assertEqual(two.command(b"DELM"), b"+OK message deleted")
        self.assertEqual(two.command(b"DONEU"), b"+OK goodbye bob")
        self.assertEqual(one.command(b"USER bob"), b"+OK bob has 0 messages")
        pids = {pid for _, pid in server.workersServing()}
        self.assertEqual(set(server.workerPids()), pids)
        self.assertNotIn(server.pid, pids)

    def test_killedWorkerRestartedNothingLost(self):
        """
        A worker killed with SIGKILL is started again by the supervisor, and every message acknowledged before the kill is still there.
        """
        server = self.startServer()
        clients = self.clientsOnEachWorker(server)
        setup = clients[1]
        setup.command(b"ADDU bob")
        victim = clients[2]
        victim.command(b"USER bob")
        acknowledged = 0
        for i in range(20):
            reply = victim.command(b"SEND bob message %d" % (i,))
            self.assertEqual(reply, b"+OK message delivered to bob")
            acknowledged += 1
        [(_, pid)] = [(n, p) for n, p in server.workersServing() if n == 2]
        victim.sendLine(b"SEND bob in flight")
        os.kill(pid, signal.SIGKILL)
        server.waitForLog("worker 2 (pid {}) was killed by signal 9".format(pid))
        server.waitForWorkers(count=3, timeout=15)
        self.assertIn("starting it again in 1 s", server.logSinceStart())
        with server.connect() as c:
            reply = c.command(b"USER bob")
        count = int(reply.split()[3])
        self.assertIn(count, (acknowledged, acknowledged + 1), reply)
        self.assertTrue(server.running())

    def test_sigtermLeavesNothing(self):
        """
        SIGTERM on the supervisor stops every worker, ends as twistd does on a signal, and leaves no process, dot-lock or lock source in the spool.
        """
        server = self.startServer()
        clients = self.clientsOnEachWorker(server)
        for number, client in clients.items():
            user = b"u%d" % (number,)
            client.command(b"ADDU " + user)
            client.command(b"USER " + user)
            client.command(b"SEND " + user + b" hi")
            client.readMessage()
            client.command(b"DELM")
        pids = server.workerPids()
        self.assertEqual(len(pids), 2)
        self.assertEqual(server.stop(), -signal.SIGTERM)
        waitUntilGone(pids, 5)
        left = [n for n in os.listdir(server.spool)
                if n.endswith(".lock") or n.endswith(".lockpid")]
        self.assertEqual(left, [])
        log = server.log()
        self.assertIn("worker 1 stopping: SIGTERM", log)
        self.assertIn("worker 2 stopping: SIGTERM", log)
        self.assertNotIn("Traceback", log)
        # The deletes made in the sessions open at the stop were expunged.
        for number in clients:
            with open(os.path.join(server.spool, "u%d" % (number,)), "rb") as f:
                self.assertEqual(f.read(), b"")

    def test_smtpDoor(self):
        """
        The SMTP door is served by the workers too: mail sent by SMTP to either worker is read through the line protocol.
        """
        import smtplib

        smtpPort = freePort()
        server = self.startServer(
            extraArgs=["--smtp", "tcp:{}:interface=127.0.0.1".format(smtpPort)]
        )
        with server.connect() as c:
            c.command(b"ADDU bob")
        for n in range(4):
            with smtplib.SMTP("127.0.0.1", smtpPort, timeout=30) as smtp:
                smtp.sendmail("app@example.org", ["bob@localhost"],
                              "Subject: n%d\r\n\r\nbody %d\r\n" % (n, n))
        with server.connect() as c:
            self.assertEqual(c.command(b"USER bob"), b"+OK bob has 4 messages")
        self.assertIn("[worker ", server.waitForLog("SMTP connection from"))

    def test_pop3Door(self):
        """
        The POP3 door is served by the workers too, over the same spool: UIDL gives the same ids on every connection, whichever worker serves it.
        """
        import poplib

        popPort = freePort()
        server = self.startServer(
            extraArgs=["--pop3", "tcp:{}:interface=127.0.0.1".format(popPort)]
        )
        with server.connect() as c:
            c.command(b"ADDU bob")
            c.command(b"USER bob")
            c.command(b"SEND bob one")
            c.command(b"SEND bob two")
        listings = set()
        for _ in range(6):
            pop = poplib.POP3("127.0.0.1", popPort, timeout=30)
            try:
                pop.user("bob")
                pop.pass_("anything")
                self.assertEqual(pop.stat()[0], 2)
                listings.add(tuple(pop.uidl()[1]))
            finally:
                pop.quit()
        self.assertEqual(len(listings), 1)
        log = server.logSinceStart()
        self.assertIn("[worker ", log)

    def test_webLoginKnownToEveryWorker(self):
        """
        With passwords, a web login made through one worker is honoured by every worker, and a logout through any ends it for all.
        """
        import http.client

        from twisted_mail.auth import PasswordFile

        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        passwords = os.path.join(work, "passwords")
        PasswordFile(passwords).setPassword("bob", "secret words")
        webPort = freePort()
        server = self.startServer(extraArgs=[
            "--passwords", passwords, "--web", "tcp:{}:interface=127.0.0.1".format(webPort),
        ])
        with open(os.path.join(server.spool, "bob"), "wb"):
            pass  # bob's (empty) mailbox: bob exists

        def request(method, path, body=None, cookie=None):
            connection = http.client.HTTPConnection("127.0.0.1", webPort, timeout=30)
            try:
                headers = {"Content-Type": "application/json", "X-Simplemail": "1"}
                if cookie:
                    headers["Cookie"] = cookie
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                return response
            finally:
                connection.close()

        # Which worker answers is decided by stopping the other (SIGSTOP).
        first, second = server.workerPids()
        for pid in (first, second):
            self.addCleanup(_continue, pid)

        def only(pid):
            other = second if pid == first else first
            os.kill(other, signal.SIGSTOP)
            os.kill(pid, signal.SIGCONT)

        only(first)
        response = request("POST", "/api/v1/login",
                           json.dumps({"user": "bob", "password": "secret words"}))
        self.assertEqual(response.status, 200)
        cookie = response.getheader("Set-Cookie").split(";", 1)[0]
        only(second)
        self.assertEqual(request("GET", "/api/v1/users/bob/messages", cookie=cookie).status, 200)
        self.assertEqual(request("POST", "/api/v1/logout", cookie=cookie).status, 204)
        only(first)
        self.assertEqual(request("GET", "/api/v1/users/bob/messages", cookie=cookie).status, 401)
        _continue(second)

    def test_tlsAndUnixListeners(self):
        """
        Workers serve ssl: listeners with TLS and unix: listeners with the socket's mode kept, and the socket file is gone once the server stops.
        """
        import ssl

        from .certs import makeCertificate

        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        makeCertificate(work)
        tlsPort = freePort()
        import shutil
        import tempfile

        short = tempfile.mkdtemp(prefix="sm-")  # AF_UNIX paths are short
        self.addCleanup(shutil.rmtree, short, True)
        path = os.path.join(short, "mail.sock")
        server = self.startServer(extraArgs=[
            "--listen", "ssl:{}:interface=127.0.0.1:privateKey={}:certKey={}".format(
                tlsPort, os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")),
            "--listen", "unix:{}:mode=600".format(path),
        ])
        context = ssl.create_default_context(cafile=os.path.join(work, "cert.pem"))
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", tlsPort), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as s:
                    self.assertEqual(s.recv(100), b"+OK simplemail ready\r\n")
            with socket.socket(socket.AF_UNIX) as u:
                u.settimeout(10)
                u.connect(path)
                self.assertEqual(u.recv(100), b"+OK simplemail ready\r\n")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(server.stop(), -signal.SIGTERM)
        self.assertFalse(os.path.exists(path))

    def test_daemonized(self):
        """
        Without -n, twistd daemonizes with its pid file; killing that pid stops every worker and removes the pid file.
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        pidfile = os.path.join(work, "twistd.pid")
        port = freePort()
        code, output = runTwistd(
            [
                "--pidfile", pidfile, "--logfile", os.path.join(work, "twistd.log"),
                "simplemail", "--workers", "2", "--spool", os.path.join(work, "spool"),
                "--listen", "tcp:{}:interface=127.0.0.1".format(port),
            ],
            cwd=work,
        )
        self.assertEqual((code, output), (0, ""))
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_killQuietly, pid)
        deadline = time.monotonic() + 30
        workerPids = []
        while len(workerPids) < 2 and time.monotonic() < deadline:
            from .serverprocess import childProcesses

            workerPids = childProcesses(pid, "twisted_mail.workers")
            time.sleep(0.05)
        self.assertEqual(len(workerPids), 2)
        for p in workerPids:
            self.addCleanup(_killQuietly, p)
        greeting = b""
        while not greeting and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    greeting = s.recv(100)
            except OSError:
                time.sleep(0.05)
        self.assertTrue(greeting.startswith(b"+OK"))
        os.kill(pid, signal.SIGTERM)
        waitUntilGone([pid] + workerPids, 20)
        self.assertFalse(os.path.exists(pidfile))

    def test_busyPortOneLine(self):
        """
        A port in use stops twistd with one line naming the endpoint and the reason, and exit status 1, with or without --workers.
        """
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        description = "tcp:{}:interface=127.0.0.1".format(busy.getsockname()[1])
        for extra in ([], ["--workers", "2"]):
            code, output = runTwistd(
                ["-n", "--pidfile=", "simplemail", "--spool", self.mktemp(),
                 "--listen", description] + extra
            )
            self.assertEqual(
                (code, output),
                (1, "simplemail: cannot listen on {} (--listen): Address already in use\n"
                 .format(description)),
            )


class NewMailAcrossProcessesTests(TestCase):
    """
    New-mail events with --workers: the spool's poll carries them between
    processes.
    """

    @defer.inlineCallbacks
    def test_deliveryThroughEitherWorkerAnnounced(self):
        """
        Mail delivered through either worker is announced within 2 seconds to a subscriber in another process sharing the spool.
        """
        from twisted.internet import reactor
        from twisted.internet.threads import deferToThread

        from twisted_mail.spool import SpoolStore

        server = ServerProcess(
            os.path.abspath(self.mktemp()), workers=2,
            logPath=os.path.abspath(self.mktemp()) + ".log",
        )
        self.addCleanup(server.close)
        yield deferToThread(server.start)
        clients = yield deferToThread(TwoWorkersTests.clientsOnEachWorker, self, server)
        yield deferToThread(clients[1].command, b"ADDU bob")
        store = SpoolStore(server.spool, reactor=reactor)
        self.addCleanup(store.close)
        heard = []
        unsubscribe = store.subscribe("bob", heard.append)
        self.addCleanup(unsubscribe)
        for number in (1, 2):
            before = len(heard)
            yield deferToThread(clients[number].command, b"USER bob")
            sent = reactor.seconds()
            reply = yield deferToThread(
                clients[number].command, b"SEND bob through worker %d" % (number,)
            )
            self.assertEqual(reply, b"+OK message delivered to bob")
            while len(heard) == before and reactor.seconds() - sent < 2.5:
                yield deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(len(heard), before + 1, "worker {}".format(number))
            self.assertLessEqual(reactor.seconds() - sent, 2.0)
        yield deferToThread(server.stop)


def _continue(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _killQuietly(pid):
    if processExists(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
