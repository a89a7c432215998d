"""
Two real C{twistd -n simplemail --database URL} servers on one PostgreSQL
database (tests/pgserver.py): every command across them, a server killed
with SIGKILL under load, and the database restarted under load.
"""

import http.client
import json
import poplib
import signal
import smtplib
import socket
import threading
import time

from tests import pgserver
from tests.serverprocess import (
    ClientError,
    DatabaseServerProcess,
    freePort,
    runTwistd,
)
from tests.test_integration import ServerTestCase, splitMessage

skip = pgserver.skipReason()

if skip is None:
    import psycopg

#: Bounds of the load loops.
#: A bound for a hung load only (seconds), never a measure of speed.
LOAD_LIMIT = 300.0
LOAD_MESSAGES = 3000


class _Load:
    """
    Clients sending one-line messages with unique bodies to C{bob} through
    some servers until told to stop (bounded in count and time), recording
    what each reply said.
    """

    def __init__(self, servers, clients=2):
        self.servers = servers
        self.clients = clients
        self.acked = []
        self.failed = []
        self.temporary = 0
        self.lost = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []

    def start(self):
        for n in range(self.clients):
            server = self.servers[n % len(self.servers)]
            thread = threading.Thread(target=self._run, args=(server, n), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, server, n):
        # Runs until finish() (or LOAD_MESSAGES each): never cut short by
        # the clock, so that a slow machine makes the test slower, not red.
        client = None
        for i in range(LOAD_MESSAGES):
            if self.stop.is_set():
                break
            token = b"token-%d-%d" % (n, i)
            try:
                if client is None:
                    client = server.connect(timeout=10)
                    if not client.command(b"USER alice").startswith(b"+OK"):
                        raise ClientError("USER refused")
                reply = client.command(b"SEND bob " + token)
            except (ClientError, OSError):
                with self._lock:
                    self.lost += 1
                    self.failed.append(token)
                if client is not None:
                    client.close()
                    client = None
                if not server.running():
                    break
                time.sleep(0.05)
                continue
            with self._lock:
                if reply.startswith(b"+OK"):
                    self.acked.append(token)
                else:
                    self.failed.append(token)
                    if b"temporary failure" in reply:
                        self.temporary += 1
                        time.sleep(0.02)
        if client is not None:
            client.close()

    def waitForAcks(self, n, timeout=LOAD_LIMIT):
        """
        Wait until C{n} deliveries are acknowledged; C{timeout} only ends a
        hung test.
        """
        deadline = time.monotonic() + timeout
        while len(self.acked) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    "only {} of {} deliveries acknowledged after {} s".format(
                        len(self.acked), n, timeout))
            time.sleep(0.02)

    def finish(self):
        self.stop.set()
        for thread in self._threads:
            thread.join(LOAD_LIMIT)


class PostgresServersTests(ServerTestCase):
    """
    Two servers sharing one database behave as one server.
    """

    skip = skip

    def setUp(self):
        self.url = pgserver.freshDatabase()

    def startDatabaseServer(self, *extra):
        server = DatabaseServerProcess(self.url, self.mktempDir(), extra)
        self.addCleanup(server.close)
        server.start()
        return server

    def mktempDir(self):
        import os

        path = self.mktemp()
        os.makedirs(path)
        return path

    def storedBodies(self, user):
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute("SELECT body FROM messages WHERE userid = %s ORDER BY id",
                                [user]).fetchall()
        return [splitMessage(bytes(body))[1] for (body,) in rows]

    def test_unreachableAtStart(self):
        """
        A database that cannot be reached at start: twistd says why in one
        line, with no traceback, and exits 1.
        """
        code, output = runTwistd(["-n", "--pidfile=", "simplemail", "--database",
                                  "host=/nonexistent port=1 dbname=mail"],
                                 cwd=self.mktempDir())
        self.assertEqual(code, 1)
        self.assertNotIn("Traceback", output)
        lines = [line for line in output.splitlines() if "cannot use database" in line]
        self.assertEqual(len(lines), 1, output)

    def test_everyCommandAcrossServers(self):
        """
        Users, deliveries (line protocol and SMTP), reads and deletes made
        through one server are seen through the other, and each session's
        cursor follows messages across them.
        """
        smtpPort = freePort()
        a = self.startDatabaseServer(
            "--smtp", "tcp:{}:interface=127.0.0.1".format(smtpPort))
        b = self.startDatabaseServer()
        ca, cb = self.connect(a), self.connect(b)
        self.addUsers(ca, b"alice", b"bob")
        self.assertEqual(cb.command(b"ADDU BOB"), b"-ERR user already exists: bob")
        self.assertEqual(cb.multiline(b"LSTU")[1], [b"alice", b"bob"])
        self.assertEqual(ca.multiline(b"LSTU")[1], [b"alice", b"bob"])
        self.assertEqual(ca.command(b"USER alice"), b"+OK alice has 0 messages")
        self.assertEqual(cb.command(b"USER bob"), b"+OK bob has 0 messages")
        self.assertEqual(ca.send(b"bob", b"one\n"), b"+OK message delivered to bob")
        # The session on the other server reads mail that arrived in it.
        self.assertEqual(splitMessage(cb.readMessage())[1], b"one\n")
        self.assertEqual(ca.send(b"bob", b"two\n"), b"+OK message delivered to bob")
        with smtplib.SMTP("127.0.0.1", smtpPort, timeout=10) as smtp:
            smtp.sendmail("ann@example.org", ["bob@localhost"],
                          b"Subject: three\r\n\r\nthree\r\n")
        # A second session on server A, then B deletes "two": A never shows it.
        cc = self.connect(a)
        self.assertEqual(cc.command(b"USER bob"), b"+OK bob has 3 messages")
        self.assertEqual(splitMessage(cc.readMessage())[1], b"one\n")
        self.assertEqual(splitMessage(cb.readMessage())[1], b"two\n")
        self.assertEqual(cb.command(b"DELM"), b"+OK message deleted")
        self.assertEqual(splitMessage(cc.readMessage())[1], b"three\r\n".replace(b"\r", b""))
        self.assertIsNone(cc.readMessage())
        # A deletes what B is on: B's DELM finds no current message.
        self.assertEqual(splitMessage(cb.readMessage())[1], b"three\n")
        self.assertEqual(cc.command(b"DELM"), b"+OK message deleted")
        self.assertTrue(cb.command(b"DELM").startswith(b"-ERR no current message"))
        self.assertIsNone(cb.readMessage())
        self.assertEqual(cb.command(b"DONEU"), b"+OK goodbye bob")
        self.assertEqual(cc.command(b"DONEU"), b"+OK goodbye bob")
        self.assertEqual(cb.command(b"USER bob"), b"+OK bob has 1 message")
        self.assertEqual(self.storedBodies("bob"), [b"one\n"])
        # LSTM on one server, READM <id> of it on the other.
        status, lines = cb.multiline(b"LSTM")
        self.assertTrue(status.startswith(b"+OK"))
        (line,) = lines
        msgid = line.split(b" ", 1)[0]
        self.assertTrue(line.endswith(b"\talice@localhost\t"), line)
        self.assertEqual(ca.command(b"USER bob"), b"+OK bob has 1 message")
        status, lines = ca.multiline(b"READM " + msgid)
        self.assertTrue(status.startswith(b"+OK"))
        self.assertEqual(lines[-1], b"one")
        self.assertEqual(ca.command(b"QUIT"), b"+OK bye")
        for server in (a, b):
            self.assertIn(server.stop(), (0, -signal.SIGTERM))
            self.assertCleanLog(server)

    def test_pop3AcrossServers(self):
        """
        POP3 on one server lists, reads and deletes mail that came through
        the other; the deletes are seen there at once; the ids are the same
        through every door.
        """
        popPort = freePort()
        self.startDatabaseServer("--pop3", "tcp:{}:interface=127.0.0.1".format(popPort))
        b = self.startDatabaseServer()
        cb = self.connect(b)
        self.addUsers(cb, b"alice", b"bob")
        self.assertEqual(cb.command(b"USER alice"), b"+OK alice has 0 messages")
        for body in (b"one\n", b"two\n"):
            self.assertTrue(cb.send(b"bob", body).startswith(b"+OK"))
        pop = poplib.POP3("127.0.0.1", popPort, timeout=10)
        self.addCleanup(pop.close)
        pop.user("bob")
        pop.pass_("anything")
        self.assertEqual(pop.stat()[0], 2)
        uidls = [line.split()[1].decode() for line in pop.uidl()[1]]
        with psycopg.connect(self.url, autocommit=True) as conn:
            ids = [str(r) for (r,) in conn.execute(
                "SELECT id FROM messages WHERE userid = 'bob' ORDER BY id")]
        self.assertEqual(uidls, ids)
        lines = pop.retr(1)[1]
        self.assertEqual(lines[-1], b"one")
        pop.dele(1)
        self.assertTrue(pop.quit().startswith(b"+OK"))
        self.assertEqual(cb.command(b"USER bob"), b"+OK bob has 1 message")
        self.assertEqual(splitMessage(cb.readMessage())[1], b"two\n")

    def test_webEventsAcrossServers(self):
        """
        A message sent through one server is announced on the other's web
        event stream (LISTEN/NOTIFY), and listed by its
        API with the id the line protocol gives it.
        """
        webPort = freePort()
        self.startDatabaseServer("--web", "tcp:{}:interface=127.0.0.1".format(webPort))
        b = self.startDatabaseServer()
        cb = self.connect(b)
        self.addUsers(cb, b"alice", b"bob")
        stream = socket.create_connection(("127.0.0.1", webPort), timeout=5)
        self.addCleanup(stream.close)
        stream.sendall(b"GET /api/v1/users/alice/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        deadline = time.monotonic() + 10
        while b": connected" not in received and time.monotonic() < deadline:
            received += stream.recv(65536)
        self.assertIn(b"200 OK", received)
        self.assertEqual(cb.command(b"USER bob"), b"+OK bob has 0 messages")
        self.assertTrue(cb.send(b"alice", b"from afar\n").startswith(b"+OK"))
        # Wait for the event; the limit only ends a hung test.
        deadline = time.monotonic() + 120
        while b"event: message" not in received and time.monotonic() < deadline:
            stream.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                received += stream.recv(65536)
            except socket.timeout:
                break
        self.assertIn(b'"snippet": "from afar"', received)
        api = http.client.HTTPConnection("127.0.0.1", webPort, timeout=10)
        self.addCleanup(api.close)
        api.request("GET", "/api/v1/users/alice/messages")
        (summary,) = json.loads(api.getresponse().read())["messages"]
        self.assertEqual(cb.command(b"USER alice"), b"+OK alice has 1 message")
        status, lines = cb.multiline(b"LSTM")
        self.assertEqual(lines[0].split(b" ", 1)[0].decode(), summary["id"])

    def test_killedServerLosesNothingAcknowledged(self):
        """
        A server killed with SIGKILL in the middle of a load loses no
        acknowledged message, and the other server goes on serving.
        """
        a = self.startDatabaseServer()
        b = self.startDatabaseServer()
        self.addUsers(self.connect(a), b"alice", b"bob")
        load = _Load([a, b], clients=4)
        load.start()
        load.waitForAcks(200)
        a.kill()
        # The other server goes on serving: more acknowledgements come.
        load.waitForAcks(len(load.acked) + 20)
        load.finish()
        stored = self.storedBodies("bob")
        counts = {}
        for body in stored:
            counts[body] = counts.get(body, 0) + 1
        self.assertGreater(len(load.acked), 200)
        for token in load.acked:
            self.assertEqual(counts.get(token + b"\n"), 1, token)
        self.assertTrue(all(n == 1 for n in counts.values()))
        client = self.connect(b)
        self.assertEqual(client.command(b"USER bob"),
                         b"+OK bob has %d messages" % len(stored))

    def test_databaseRestartUnderLoad(self):
        """
        A database restart (pg_ctl restart -m immediate) under load gives
        temporary failures, then both servers recover by themselves; every
        acknowledged message is there exactly once.
        """
        cluster = pgserver.cluster()
        if cluster is None:
            raise self.skipTest("SIMPLEMAIL_TEST_DATABASE is not ours to restart")
        a = self.startDatabaseServer()
        b = self.startDatabaseServer()
        self.addUsers(self.connect(a), b"alice", b"bob")
        load = _Load([a, b], clients=4)
        load.start()
        load.waitForAcks(200)
        cluster.restart("immediate")
        before = len(load.acked)
        load.waitForAcks(before + 200)
        load.finish()
        self.assertGreater(len(load.acked), before + 100, "no recovery")
        # The calls cut off by the restart were answered "temporary failure".
        self.assertGreater(load.temporary, 0)
        stored = self.storedBodies("bob")
        counts = {}
        for body in stored:
            counts[body] = counts.get(body, 0) + 1
        for token in load.acked:
            self.assertEqual(counts.get(token + b"\n"), 1, token)
        self.assertTrue(all(n == 1 for n in counts.values()))
        for server in (a, b):
            self.assertTrue(server.running())
            client = self.connect(server)
            self.assertEqual(client.command(b"USER bob"),
                             b"+OK bob has %d messages" % len(stored))
            self.assertNotIn("Traceback", server.log())
