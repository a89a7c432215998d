"""
End-to-end tests of the web API over real sockets against C{twistd -n
simplemail --web ...} on a spool: ids stable across a restart, mail sent by
the line protocol seen by the API and announced on the event stream within
2 seconds, mail sent by the API read by the line protocol.
"""

import http.client
import json
import signal
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail.mime import decodeHeader

from tests.serverprocess import ServerProcess, freePort

#: How long to wait for an event before calling the server broken: a bound
#: for a hung server only, never a measure of speed.
EVENT_LIMIT = 120


class WebServerTests(SynchronousTestCase):
    """
    The web API of a real server process.
    """

    def setUp(self):
        self.webPort = freePort()
        self.server = ServerProcess(
            self.mktemp(),
            extraArgs=["--web", "tcp:{}:interface=127.0.0.1".format(self.webPort)])
        self.addCleanup(self.server.close)
        self.server.start()
        with self.server.connect() as client:
            for user in (b"alice", b"bob"):
                self.assertTrue(client.command(b"ADDU " + user).startswith(b"+OK"))

    def http(self, method, path, body=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.webPort, timeout=10)
        try:
            headers = {}
            if body is not None:
                body = json.dumps(body).encode("utf-8")
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def sendByLine(self, sender, receiver, body):
        with self.server.connect() as client:
            client.command(b"USER " + sender)
            reply = client.send(receiver, body)
            self.assertTrue(reply.startswith(b"+OK"), reply)

    def listing(self, user="alice"):
        status, body = self.http("GET", "/api/v1/users/{}/messages".format(user))
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def test_idsStableAcrossRestart(self):
        """Ids listed by the API are the same after a restart and name the same messages."""
        for n in range(3):
            self.sendByLine(b"bob", b"alice", b"message %d\n" % n)
        before = self.listing()
        self.assertEqual([m["snippet"] for m in before["messages"]],
                         ["message 2", "message 1", "message 0"])
        self.assertIn(self.server.stop(), (0, -signal.SIGTERM))
        self.server.start()
        after = self.listing()
        self.assertEqual(after, before)
        msgid = after["messages"][1]["id"]
        status, raw = self.http("GET", "/api/v1/users/alice/messages/{}/raw".format(msgid))
        self.assertEqual(status, 200)
        self.assertTrue(raw.endswith(b"\n\nmessage 1\n"), raw)
        status, _ = self.http("DELETE", "/api/v1/users/alice/messages/" + msgid)
        self.assertEqual(status, 204)
        with self.server.connect() as client:
            client.command(b"USER alice")
            texts = [client.readMessage(), client.readMessage(), client.readMessage()]
        self.assertTrue(texts[0].endswith(b"message 0\n"))
        self.assertTrue(texts[1].endswith(b"message 2\n"))
        self.assertIsNone(texts[2])

    def test_sendReadByLine(self):
        """A message sent through the API is durable at 201 and read by READM."""
        status, body = self.http("POST", "/api/v1/users/alice/messages", {
            "from": "bob", "subject": "Grüße", "text": "Hallo Alice\n"})
        self.assertEqual(status, 201, body)
        msgid = json.loads(body)["id"]
        self.assertEqual([m["id"] for m in self.listing()["messages"]], [msgid])
        with self.server.connect() as client:
            client.command(b"USER alice")
            text = client.readMessage()
        subject = [line for line in text.split(b"\n") if line.startswith(b"Subject: ")]
        self.assertEqual(decodeHeader(subject[0][9:]), "Grüße")
        self.assertTrue(text.startswith(b"From: bob@localhost\n"))
        self.assertTrue(text.endswith(b"\n\nHallo Alice\n"))

    def openEvents(self, user=b"alice"):
        stream = socket.create_connection(("127.0.0.1", self.webPort), timeout=5)
        self.addCleanup(stream.close)
        stream.sendall(b"GET /api/v1/users/" + user + b"/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        deadline = time.monotonic() + 10
        while b": connected" not in received and time.monotonic() < deadline:
            received += stream.recv(65536)
        self.assertIn(b"200 OK", received)
        return stream, received

    def waitForEvent(self, stream, received, limit=EVENT_LIMIT):
        """
        Read the event stream until an event comes; C{limit} seconds bound
        only a broken server (how soon events come is the store's poll,
        checked with a fake clock in tests/test_mailboxview.py).
        """
        deadline = time.monotonic() + limit
        while b"event: message" not in received and time.monotonic() < deadline:
            stream.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                received += stream.recv(65536)
            except socket.timeout:
                break
        return received

    def test_eventsFromThisProcess(self):
        """A message SENT over the line protocol is announced on the event stream."""
        stream, received = self.openEvents()
        self.sendByLine(b"bob", b"alice", b"live news\n")
        received = self.waitForEvent(stream, received)
        self.assertIn(b"event: message", received)
        self.assertIn(b'"snippet": "live news"', received)

    def test_eventsFromAnotherProcess(self):
        """A message SENT through another server process on the same spool is announced."""
        other = ServerProcess(self.server.spool)
        self.addCleanup(other.close)
        other.start()
        stream, received = self.openEvents()
        with other.connect() as client:
            client.command(b"USER bob")
            self.assertTrue(client.send("alice", b"from elsewhere\n").startswith(b"+OK"))
        received = self.waitForEvent(stream, received)
        self.assertIn(b'"snippet": "from elsewhere"', received)


class FolderFlowTests(SynchronousTestCase):
    """
    Folders, flags and moves through the API of a real server on a spool,
    seen by the line protocol, kept across a restart.
    """

    setUp = WebServerTests.setUp
    http = WebServerTests.http
    sendByLine = WebServerTests.sendByLine
    listing = WebServerTests.listing

    def json(self, method, path, body=None, expected=200):
        status, data = self.http(method, "/api/v1/users/alice" + path, body)
        self.assertEqual(status, expected, data)
        return json.loads(data) if data else None

    def test_folderFlagMoveFlow(self):
        """Make a folder, flag, read and move a message; every door and a restart agree."""
        self.sendByLine(b"bob", b"alice", b"keep me\n")
        self.sendByLine(b"bob", b"alice", b"file me\n")
        keep, move = [m["id"] for m in reversed(self.listing()["messages"])]
        self.assertEqual(self.json("POST", "/folders", {"name": "Work/2026"}, 201),
                         {"name": "Work/2026"})
        self.json("POST", "/folders", {"name": "Work/2026"}, 409)
        summary = self.json("PATCH", "/messages/" + move,
                            {"flags": {"add": ["\\Flagged", "$Later"]}, "folder": "Work/2026"})
        self.assertEqual((summary["id"], summary["folder"], summary["flags"]),
                         (move, "Work/2026", ["$Later", "\\Flagged"]))
        self.assertEqual(self.json("GET", "/messages/" + keep)["flags"], [])
        self.assertEqual(self.json("GET", "/messages/" + keep + "?seen=1")["flags"],
                         ["\\Seen"])
        folders = {f["name"]: (f["total"], f["unseen"]) for f in self.json("GET", "/folders")["folders"]}
        self.assertEqual((folders["INBOX"], folders["Work/2026"]), ((1, 0), (1, 1)))

        # The line protocol: INBOX as before, the folder with FOLDER.
        with self.server.connect() as client:
            client.command(b"USER alice")
            status, lines = client.multiline(b"LSTM")
            self.assertEqual([line.split(b" ")[0] for line in lines], [keep.encode()])
            self.assertTrue(client.command(b"FOLDER Work/2026").startswith(b"+OK Work/2026: 1"))
            status, lines = client.multiline(b"LSTMF")
            self.assertEqual([line.split(b"\t")[-1] for line in lines], [b"$Later \\Flagged"])
            self.assertEqual(client.command(b"MOVE " + move.encode() + b" INBOX"),
                             b"+OK moved to INBOX")

        self.assertIn(self.server.stop(), (0, -signal.SIGTERM))
        self.server.start()
        inbox = {m["id"]: m["flags"] for m in self.listing()["messages"]}
        self.assertEqual(inbox, {keep: ["\\Seen"], move: ["$Later", "\\Flagged"]})
        self.json("DELETE", "/folders/" + "Work%2F2026", None, 204)
        self.assertNotIn("Work/2026", [f["name"] for f in self.json("GET", "/folders")["folders"]])
