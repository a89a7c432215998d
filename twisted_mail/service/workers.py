"""
Serving from several processes: C{twistd simplemail --workers N}.

The process twistd starts is the I{supervisor}.  It binds every listener
once (L{twisted_mail.service.listeners}), then runs N I{worker} processes
(C{python -m twisted_mail.service.worker}), each given the listening sockets as
inherited file descriptors and the server's command line as one JSON line
on its standard input.  A worker builds the same server as a single-process
C{twistd simplemail} (the same C{makeService}, on the same spool), except
that it adopts the inherited sockets instead of binding: the kernel hands
each new connection to whichever worker accepts it first.

The supervisor serves no client and opens no mailbox.  It:

  - relays each worker's log events into its own log (the twistd log),
    tagged C{worker <n>} (the worker writes one line per event on its
    standard output);
  - runs the one indexing process of the spool's search index
    (L{twisted_mail.stores.spool.indexer}) and passes it each worker's
    kicks, which the worker writes on a pipe of their own;
  - starts a worker that died again, after a back-off (L{MIN_RESTART_DELAY}
    doubling up to L{MAX_RESTART_DELAY} while it keeps dying within
    L{STABLE_AFTER} seconds of its start), and logs it;
  - on stop (SIGTERM, SIGINT), closes its copies of the listening sockets,
    sends each worker SIGTERM, waits for them to finish what they
    acknowledged (each stops like a single server: listeners first, then
    its sessions end and its mailbox threads finish their jobs), and kills
    those still running after L{STOP_TIMEOUT} seconds.

A worker stops by itself, cleanly, when its standard input reaches its end:
the supervisor is gone.
"""

import json
import os
import sys

from twisted.application import service
from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol

from twisted.logger import LogLevel, Logger, globalLogPublisher

from twisted_mail.service.worklog import parseLogLine

log = Logger()

#: Restart back-off, in seconds: the first restart of a worker waits
#: MIN_RESTART_DELAY; each death within STABLE_AFTER seconds of its start
#: doubles the next wait, up to MAX_RESTART_DELAY; a worker that lived
#: STABLE_AFTER seconds starts over from MIN_RESTART_DELAY.
MIN_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 10.0

#: How long a stopping worker may take to finish before it is killed.
STOP_TIMEOUT = 30.0

#: After SIGKILL, how long to wait for the worker's end to be seen.
KILL_TIMEOUT = 5.0

#: The directory holding the twisted_mail package: workers import the
#: same code as the supervisor, whatever the working directory.
_CODE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def describeEnd(reason):
    """
    How a process ended, in a few words (C{"exited with status 3"}).
    """
    e = reason.value
    if isinstance(e, error.ProcessTerminated):
        if e.signal is not None:
            return "was killed by signal {}".format(e.signal)
        return "exited with status {}".format(e.exitCode)
    if isinstance(e, error.ProcessDone):
        return "exited"
    return "ended ({})".format(e)


class _Slot:
    """
    One of the N workers, across its restarts.

    @ivar number: 1 to N, as in the logs (C{worker 2}).
    @ivar process: the running process's transport, or L{None}.
    @ivar pid: the last process id.
    @ivar started: when the last process started (reactor seconds).
    @ivar delay: the wait before the next restart.
    @ivar restart: the pending restart's delayed call, or L{None}.
    """

    def __init__(self, number):
        self.number = number
        self.process = None
        self.pid = None
        self.started = None
        self.delay = MIN_RESTART_DELAY
        self.restart = None


class _WorkerProtocol(ProcessProtocol):
    """
    The supervisor's end of one worker process: sends it its configuration,
    relays its output to the log, and reports its end.
    """

    def __init__(self, supervisor, slot, configuration, kicks=None):
        self.supervisor = supervisor
        self.slot = slot
        self.configuration = configuration
        self._partial = {1: b"", 2: b""}
        # The worker's pipe of kicks for the indexing process, if any.
        self._kicks = kicks
        self._kickPartial = b""

    def connectionMade(self):
        # Standard input stays open: its end tells the worker that the
        # supervisor is gone.
        self.transport.write(self.configuration)

    def childDataReceived(self, fd, data):
        if fd == self._kicks:
            lines = (self._kickPartial + data).split(b"\n")
            self._kickPartial = lines.pop()
            for line in lines:
                if line:
                    self.supervisor.indexer.send(line)
            return
        if fd not in self._partial:
            return
        lines = (self._partial[fd] + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self.supervisor.relay(self.slot, line, fromStandardError=(fd == 2))

    def processEnded(self, reason):
        for fd, rest in self._partial.items():
            if rest:
                self.supervisor.relay(self.slot, rest, fromStandardError=(fd == 2))
        self._partial = {1: b"", 2: b""}
        self.supervisor.workerEnded(self.slot, reason)


class Supervisor(service.Service):
    """
    Runs and supervises the worker processes of a C{--workers N} server.

    @ivar slots: the L{_Slot}s, one per worker.
    """

    name = "workers"

    def __init__(
        self,
        count,
        argv,
        listeners,
        reactor,
        executable=None,
        stopTimeout=STOP_TIMEOUT,
        observer=None,
        indexer=None,
    ):
        """
        @param count: how many workers.
        @param argv: the C{twistd simplemail} command line (options after
            C{simplemail}), which each worker parses again.
        @param listeners: C{(option, description, port)} for each listener,
            bound and not accepting; the workers inherit the sockets.
        @param reactor: provides C{spawnProcess} and C{callLater}.
        @param executable: the Python interpreter for the workers (this one
            by default).
        @param stopTimeout: seconds a stopping worker may take.
        @param observer: receives the workers' relayed log events (the
            global log publisher by default).
        @param indexer: the spool's indexing process (an
            L{twisted_mail.stores.spool.indexerprocess.IndexerProcess},
            started at the first kick), or L{None} (a database store).
        """
        self.count = count
        self.argv = list(argv)
        self.listeners = list(listeners)
        self.reactor = reactor
        self.executable = executable or sys.executable
        self.stopTimeout = stopTimeout
        self.observer = globalLogPublisher if observer is None else observer
        self.indexer = indexer
        self.slots = [_Slot(n) for n in range(1, count + 1)]
        # The server's shared secret (tap.ServerParts.secret), the same for
        # every worker and every restart.
        self.secret = os.urandom(32)
        self._stopped = None
        self._timeouts = []

    # -- starting

    def startService(self):
        service.Service.startService(self)
        log.info(
            "starting {count} workers for {listeners}",
            count=self.count,
            listeners=", ".join(d for _, d, _ in self.listeners),
        )
        for slot in self.slots:
            self._spawn(slot)

    def _configuration(self):
        """
        The worker's descriptors: standard input, output and error, the
        listening sockets from 3 on, then the pipe of its kicks for the
        indexing process, if there is one.

        @return: C{(childFDs, listeners as the worker adopts them, the
            kicks' descriptor or None)}.
        """
        childFDs = {0: "w", 1: "r", 2: "r"}
        inherited = []
        for i, (option, description, port) in enumerate(self.listeners):
            childFDs[3 + i] = port.fileno()
            inherited.append([option, description, 3 + i])
        kicks = None
        if self.indexer is not None:
            kicks = 3 + len(self.listeners)
            childFDs[kicks] = "r"
        return childFDs, inherited, kicks

    def _environment(self):
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _CODE + (os.pathsep + path if path else "")
        return env

    def _spawn(self, slot):
        slot.restart = None
        childFDs, inherited, kicks = self._configuration()
        configuration = json.dumps(
            {
                "worker": slot.number,
                "argv": self.argv,
                "listeners": inherited,
                "secret": self.secret.hex(),
                "indexer": kicks,
            }
        ).encode("utf-8") + b"\n"
        protocol = _WorkerProtocol(self, slot, configuration, kicks)
        try:
            process = self.reactor.spawnProcess(
                protocol,
                self.executable,
                [self.executable, "-m", "twisted_mail.service.worker"],
                env=self._environment(),
                childFDs=childFDs,
            )
        except Exception:
            log.failure("could not start worker {worker}", worker=slot.number)
            self._scheduleRestart(slot)
            return
        slot.process = process
        slot.pid = process.pid
        slot.started = self.reactor.seconds()
        log.info("worker {worker} started (pid {pid})", worker=slot.number, pid=slot.pid)

    # -- the workers' logs

    def relay(self, slot, line, fromStandardError=False):
        """
        Log one line of a worker's output as an event of the supervisor's
        log, tagged with the worker's number.
        """
        parsed = None if fromStandardError else parseLogLine(line)
        if parsed is not None:
            when, level, namespace, text = parsed
            event = {
                "log_time": when,
                "log_level": level,
                "log_namespace": namespace,
                "text": text,
            }
        else:
            event = {
                "log_time": self.reactor.seconds(),
                "log_level": LogLevel.warn if fromStandardError else LogLevel.info,
                "log_namespace": "twisted_mail.service.workers.output",
                "text": line.decode("utf-8", "replace").rstrip("\r"),
            }
        event["log_format"] = "{text}"
        event["log_system"] = "worker {}".format(slot.number)
        event["worker"] = slot.number
        self.observer(event)

    # -- deaths and restarts

    def workerEnded(self, slot, reason):
        """
        A worker process ended: start it again later, unless the server is
        stopping.
        """
        slot.process = None
        how = describeEnd(reason)
        if self._stopped is not None:
            log.info("worker {worker} (pid {pid}) {how}", worker=slot.number, pid=slot.pid,
                     how=how)
            self._checkAllStopped()
            return
        uptime = self.reactor.seconds() - slot.started
        if uptime >= STABLE_AFTER:
            slot.delay = MIN_RESTART_DELAY
        delay = self._scheduleRestart(slot)
        log.warn(
            "worker {worker} (pid {pid}) {how} after {uptime:.1f} s; "
            "starting it again in {delay:g} s",
            worker=slot.number,
            pid=slot.pid,
            how=how,
            uptime=uptime,
            delay=delay,
        )

    def _scheduleRestart(self, slot):
        delay = slot.delay
        slot.delay = min(slot.delay * 2, MAX_RESTART_DELAY)
        slot.restart = self.reactor.callLater(delay, self._spawn, slot)
        return delay

    # -- stopping

    def stopService(self):
        """
        Stop accepting, ask every worker to stop (SIGTERM), and wait for
        them; kill those still running after C{stopTimeout} seconds.

        @return: a L{Deferred} that fires when every worker has ended.
        """
        service.Service.stopService(self)
        self._stopped = defer.Deferred()
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        closing = [
            defer.maybeDeferred(port.stopListening) for _, _, port in self.listeners
        ]
        for slot in self.slots:
            if slot.process is not None:
                self._signal(slot, "TERM")
        self._timeouts.append(self.reactor.callLater(self.stopTimeout, self._kill))
        self._checkAllStopped()
        return defer.DeferredList(closing + [self._stopped], consumeErrors=True)

    def _signal(self, slot, name):
        try:
            slot.process.signalProcess(name)
        except error.ProcessExitedAlready:
            pass

    def _kill(self):
        for slot in self.slots:
            if slot.process is not None:
                log.warn(
                    "worker {worker} (pid {pid}) did not stop within {timeout:g} s; "
                    "killing it",
                    worker=slot.number,
                    pid=slot.pid,
                    timeout=self.stopTimeout,
                )
                self._signal(slot, "KILL")
        self._timeouts.append(self.reactor.callLater(KILL_TIMEOUT, self._giveUp))

    def _giveUp(self):
        for slot in self.slots:
            if slot.process is not None:
                log.error(
                    "worker {worker} (pid {pid}) survived SIGKILL; not waiting for it",
                    worker=slot.number,
                    pid=slot.pid,
                )
                slot.process = None
        self._checkAllStopped()

    def _checkAllStopped(self):
        if self._stopped is None or self._stopped.called:
            return
        if any(slot.process is not None for slot in self.slots):
            return
        for call in self._timeouts:
            if call.active():
                call.cancel()
        del self._timeouts[:]
        if self.indexer is not None:
            # The workers' last kicks are in: the process finishes them and
            # ends at the end of its input.
            self.indexer.stop()
        self._stopped.callback(None)
