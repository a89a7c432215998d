"""
A worker process of C{twistd simplemail --workers N}: C{python -m
twisted_mail.service.worker}, started by the supervisor
(L{twisted_mail.service.workers}).  It reads its configuration as one JSON
line on standard input, builds the same server as a single-process
C{twistd simplemail} on the listening sockets it inherited, and serves until
SIGTERM, SIGINT or the end of its standard input (the supervisor is gone).
"""

import json
import os
import signal
import sys
import threading

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger, globalLogBeginner
from zope.interface import implementer

from twisted_mail.service.worklog import _LogWriter

#: Seconds a worker whose supervisor is gone may take to stop cleanly
#: before it exits at once: an orphan must never linger, holding its
#: journal and the spool's locks (its journal is recovered like a kill's).
ORPHAN_GRACE = 30.0


def exitIfStillRunning(grace=ORPHAN_GRACE, exit=os._exit):
    """
    Start a daemon timer that ends the process after C{grace} seconds,
    whatever the reactor is doing; for a worker stopping because its
    supervisor is gone.

    @return: the started L{threading.Timer}.
    """
    timer = threading.Timer(grace, exit, (1,))
    timer.daemon = True
    timer.start()
    return timer


@implementer(IReadDescriptor)
class _SupervisorLink:
    """
    Watches the worker's standard input, a pipe from the supervisor: its end
    means the supervisor is gone, and the worker stops.
    """

    def __init__(self, reactor, fd, gone):
        self.reactor = reactor
        self.fd = fd
        self.gone = gone

    def fileno(self):
        return self.fd

    def doRead(self):
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.reactor.removeReader(self)
            self.gone()
        return None

    def connectionLost(self, reason):
        # The reactor reports a pipe whose writer closed with nothing left
        # to read (epoll's HUP without IN) here, never through doRead: the
        # supervisor is gone just the same.
        self.gone()

    def logPrefix(self):
        return "supervisor"


def readConfiguration(fd):
    """
    Read the worker's configuration: one JSON line on C{fd}.
    """
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 65536)
        if not chunk:
            raise ValueError("no configuration from the supervisor")
        data += chunk
    return json.loads(data.split(b"\n", 1)[0])


def main(stdin=0, stdout=1):
    """
    The worker process: read the configuration, build the server on the
    inherited sockets, serve until SIGTERM, SIGINT or the supervisor's end.

    @return: the exit status.
    """
    try:
        configuration = readConfiguration(stdin)
        number = configuration["worker"]
        argv = configuration["argv"]
        inherited = configuration["listeners"]
        secret = bytes.fromhex(configuration["secret"])
    except (ValueError, KeyError, TypeError, OSError) as e:
        sys.stderr.write("simplemail worker: {}\n".format(e))
        return 2
    # Signals from the terminal are for the supervisor, which passes them on.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass

    from twisted.internet import reactor

    from twisted.python import usage

    from twisted_mail.service import tap
    from twisted_mail.service.listeners import CannotListen, Listeners

    globalLogBeginner.beginLoggingTo([_LogWriter(stdout)], redirectStandardIO=True)
    workerLog = Logger(namespace="twisted_mail.service.worker")
    options = tap.Options()
    try:
        options.parseOptions(argv)
        indexer = None
        if configuration.get("indexer") is not None:
            from twisted_mail.stores.spool.indexerprocess import IndexerRelay

            indexer = IndexerRelay(configuration["indexer"], reactor)
        top = tap.makeService(
            options, reactor=reactor, listeners=Listeners(reactor, inherited), secret=secret,
            indexer=indexer,
        )
    except (CannotListen, SystemExit, usage.UsageError) as e:
        workerLog.error("worker {worker} could not start: {why}", worker=number, why=e)
        return 1
    except Exception:
        workerLog.failure("worker {worker} could not start", worker=number)
        return 1

    stopping = []

    def stop(why, orphan=False):
        if not stopping:
            stopping.append(why)
            if orphan:
                exitIfStillRunning()
            workerLog.info("worker {worker} stopping: {why}", worker=number, why=why)
            reactor.stop()

    def onSignal(number, frame):
        reactor.callFromThread(stop, signal.Signals(number).name)

    signal.signal(signal.SIGTERM, onSignal)
    signal.signal(signal.SIGINT, onSignal)
    os.set_blocking(stdin, False)
    reactor.addReader(_SupervisorLink(reactor, stdin, lambda: stop("the supervisor is gone", orphan=True)))
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.callWhenRunning(tap.tuneCollector, reactor)
    reactor.callWhenRunning(
        workerLog.info, "worker {worker} serving (pid {pid})", worker=number, pid=os.getpid()
    )
    top.startService()
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
