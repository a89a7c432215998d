"""
End-to-end tests of C{--workers}: a real C{twistd -n simplemail --workers 2}
(tests/serverprocess.py), its doors, its supervision and its shutdown.
"""

import json
import os
import signal
import socket
import time

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from .serverprocess import (
    ServerProcess,
    childProcesses,
    freePort,
    processExists,
    runTwistd,
    waitUntilGone,
)
from .test_index_process import _indexed


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

    def deliverAndWaitForIndex(self, server):
        """
        Deliver 5 messages to bob through each worker and wait until his
        index holds all 10, though nobody searches.

        @return: the indexing process's id.
        """
        clients = self.clientsOnEachWorker(server)
        self.assertTrue(clients[1].command(b"ADDU bob").startswith(b"+OK"))
        for number, client in clients.items():
            self.assertTrue(client.command(b"USER bob").startswith(b"+OK"))
            for i in range(5):
                self.assertEqual(client.command(b"SEND bob from %d, %d" % (number, i)),
                                 b"+OK message delivered to bob")
        deadline = time.monotonic() + 20
        while _indexed(server.spool, "bob") < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(_indexed(server.spool, "bob"), 10)
        # One indexing process for both workers, the supervisor's.
        indexers = childProcesses(server.pid, "twisted_mail.stores.spool.indexer")
        self.assertEqual(len(indexers), 1)
        for worker in server.workerPids():
            self.assertEqual(childProcesses(worker, "twisted_mail.stores.spool.indexer"), [])
        return indexers

    def test_deliveriesIndexedWithoutASearch(self):
        """
        The workers hand their deliveries to the supervisor's indexing process, as a single server hands its own to its process: the index holds them within seconds though nobody searched (a search after a burst does not index the burst first), and SIGTERM on the supervisor ends that process too.
        """
        server = self.startServer()
        indexers = self.deliverAndWaitForIndex(server)
        pids = server.workerPids()
        self.assertEqual(server.stop(), -signal.SIGTERM)
        waitUntilGone(pids + indexers, 10)
        self.assertNotIn("Traceback", server.log())

    def test_killedSupervisorLeavesNoIndexer(self):
        """
        With the supervisor killed (SIGKILL), the workers stop and so does the indexing process: none is left running.
        """
        server = self.startServer()
        indexers = self.deliverAndWaitForIndex(server)
        pids = server.workerPids()
        os.kill(server.pid, signal.SIGKILL)
        waitUntilGone(pids + indexers, 15)

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

        from twisted_mail.logins.portal import PasswordFile

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
            workerPids = childProcesses(pid, "twisted_mail.service.worker")
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
        Mail delivered through either worker is announced to a subscriber in another process sharing the spool.
        """
        from twisted.internet import reactor
        from twisted.internet.threads import deferToThread

        from twisted_mail.stores.spool.store import SpoolStore

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
            reply = yield deferToThread(
                clients[number].command, b"SEND bob through worker %d" % (number,)
            )
            self.assertEqual(reply, b"+OK message delivered to bob")
            # Wait for the event itself; the limit only ends a hung test
            # (how soon the poll runs is checked with a fake clock in
            # tests/test_mailboxview.py).
            deadline = reactor.seconds() + 120
            while len(heard) == before and reactor.seconds() < deadline:
                yield deferLater(reactor, 0.05, lambda: None)
            self.assertEqual(len(heard), before + 1, "worker {}".format(number))
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
