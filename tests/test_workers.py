"""
Tests for C{--workers N}: L{twisted_mail.service.workers} (the supervisor, the
worker's log channel), L{twisted_mail.service.listeners} and their options.

The supervisor's unit tests run on a L{MemoryReactorClock} that records
spawned processes; a real C{twistd -n simplemail --workers 2} is in
tests/test_workers_e2e.py.
"""

import json
import os
import socket

from twisted.application.service import MultiService
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.service import tap
from twisted_mail.service import workers, worklog
from twisted_mail.service.listeners import CannotListen, Listeners

from .serverprocess import twistdEnvironment


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
            self.assertEqual(process.args, ["/usr/bin/python3", "-m", "twisted_mail.service.worker"])
            self.assertEqual(process.childFDs, {0: "w", 1: "r", 2: "r", 3: 7, 4: 9})
            self.assertTrue(process.written.endswith(b"\n"))
            self.assertEqual(
                json.loads(process.written),
                {
                    "worker": number,
                    "argv": ["--spool", "x", "--workers", "2"],
                    "listeners": [["listen", "tcp:9025", 3], ["smtp", "tcp:2525", 4]],
                    "secret": self.supervisor.secret.hex(),
                    "indexer": None,
                },
            )
        self.assertEqual(len(self.supervisor.secret), 32)

    def test_workersKicksPassedToTheIndexer(self):
        """
        With a spool's indexing process, each worker gets a pipe of its own for its kicks (the descriptor after the sockets, named in its configuration); each whole line a worker writes there is passed to the one process, however the pipe cuts it, and the process is stopped once every worker has ended, not before.
        """
        sent, stopped = [], []

        class Indexer:
            def send(self, line):
                sent.append(line)
                return True

            def stop(self):
                stopped.append(True)

        supervisor = workers.Supervisor(
            2, ["--workers", "2"], [("listen", "tcp:9025", self.ports[0])], self.reactor,
            observer=self.events.append, indexer=Indexer())
        supervisor.startService()
        for process in self.reactor.processes:
            self.assertEqual(process.childFDs, {0: "w", 1: "r", 2: "r", 3: 7, 4: "r"})
            self.assertEqual(json.loads(process.written)["indexer"], 4)
        one, two = self.reactor.processes
        one.protocol.childDataReceived(4, b'["bob",[[1,0,9,')
        two.protocol.childDataReceived(4, b"alice\n")
        one.protocol.childDataReceived(4, b'"i","k",1]]]\ncarol\n\n')
        two.protocol.childDataReceived(1, b"1.0\tinfo\t-\t\"not a kick\"\n")
        self.assertEqual(sent, [b"alice", b'["bob",[[1,0,9,"i","k",1]]]', b"carol"])
        supervisor.stopService()
        one.end()
        self.assertEqual(stopped, [])
        two.end()
        self.assertEqual(stopped, [True])

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
        texts = [formatEvent(e) for e in logged if e.get("log_namespace") == "twisted_mail.service.workers"]
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
        worklog._LogWriter(w)(
            {"log_time": 1234.5, "log_level": LogLevel.warn,
             "log_namespace": "twisted_mail.doors.line", "log_format": "refused {x}",
             "x": "{y}\n\tdétail\t\\n"}
        )
        line = os.read(r, 65536)
        protocol.childDataReceived(1, line[:10])
        self.assertEqual(self.events, [])
        protocol.childDataReceived(1, line[10:])
        [event] = self.events
        self.assertEqual(event["log_time"], 1234.5)
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_namespace"], "twisted_mail.doors.line")
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
        writer = worklog._LogWriter(w)
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
        first, second = [worklog.parseLogLine(line) for line in lines[:-1]]
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
            self.assertIsNone(worklog.parseLogLine(line), line)


class WorkerProcessTests(SynchronousTestCase):
    """
    The worker process on its own, as the supervisor starts it.
    """

    def runWorker(self, configuration):
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "twisted_mail.service.worker"],
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
        _, level, _, text = worklog.parseLogLine(line)
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


    def test_supervisorGoneStopsWorker(self):
        """
        A worker notices its supervisor is gone when the pipe from it closes with nothing left to read, as when the supervisor is killed (the reactor reports that hang-up as a lost connection, not as a read).
        """
        from twisted.internet import reactor

        from twisted_mail.service import worker

        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        os.set_blocking(readEnd, False)
        gone = []
        link = worker._SupervisorLink(reactor, readEnd, lambda: gone.append(True))
        os.close(writeEnd)
        reactor.addReader(link)
        self.addCleanup(reactor.removeReader, link)
        # One reactor iteration at a time, as the worker's reactor runs.
        for _ in range(1000):
            if gone:
                break
            reactor.iterate(0.01)
        self.assertEqual(gone, [True])

    def test_orphanExitsAfterGrace(self):
        """
        A worker whose supervisor is gone ends after the grace period even if its clean stop never finishes (an orphan never lingers holding the spool's locks).
        """
        import threading

        from twisted_mail.service import worker

        exited = threading.Event()
        codes = []

        def exit(code):
            codes.append(code)
            exited.set()

        timer = worker.exitIfStillRunning(grace=0.01, exit=exit)
        self.addCleanup(timer.cancel)
        self.assertTrue(exited.wait(60), "the watchdog never fired")
        self.assertEqual(codes, [1])
        self.assertTrue(timer.daemon)


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
