"""
End-to-end tests: a real C{twistd -n simplemail} process, driven over a raw
loopback socket with the exact replies of the protocol, and its spool files
read with the stdlib L{mailbox.mbox}.
"""

import email.utils
import mailbox
import os
import re
import signal
import stat
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.serverprocess import (
    ServerProcess,
    runTwistd,
    stuffBody,
)

#: A body that exercises every transformation: mbox From-quoting (which must
#: not show through READM), dot-stuffing, 8-bit bytes, empty lines, trailing
#: white space.
TRICKY_BODY = (
    b"From me\n"
    b".leading dot\n"
    b".\n"
    b"..two dots\n"
    b">From already quoted\n"
    b"\n"
    b"caf\xc3\xa9 and raw 8-bit \xff\xfe\x80\n"
    b"trailing white space \t \n"
    b"last line\n"
)

_CTIME = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[ \d]\d \d\d:\d\d:\d\d \d{4}\Z"
)


def splitMessage(text):
    """
    C{(headers, body)} of RFC 5322 text with LF line endings.
    """
    headers, sep, body = text.partition(b"\n\n")
    return headers + b"\n", body


def headerValues(headers):
    """
    A L{dict} of header name (lower case) to L{list} of values.
    """
    values = {}
    for line in headers.decode("utf-8").split("\n"):
        if line:
            name, _, value = line.partition(":")
            values.setdefault(name.strip().lower(), []).append(value.strip())
    return values


def mboxMessages(path):
    """
    The messages of an mbox file as C{(From_ line, raw bytes)} pairs.
    """
    box = mailbox.mbox(path, create=False)
    try:
        return [(box.get_message(k).get_from(), box.get_bytes(k)) for k in box.keys()]
    finally:
        box.close()


class ServerTestCase(SynchronousTestCase):
    """
    Starts servers and clients that are always cleaned up.
    """

    def startServer(self, *extraArgs, spool="", **kwargs):
        """
        Start a server (on a new spool directory unless C{spool} is given;
        C{spool=None} gives no --spool option at all).
        """
        if spool == "":
            spool = self.mktemp()
        server = ServerProcess(spool, extraArgs, **kwargs)
        self.addCleanup(server.close)
        server.start()
        return server

    def connect(self, server):
        client = server.connect()
        self.addCleanup(client.close)
        return client

    def assertCleanLog(self, server):
        """
        Nothing in the server's log is a traceback or an unhandled error.
        """
        log = server.log()
        for needle in ("Traceback", "Unhandled error", "CRITICAL", "#critical"):
            self.assertNotIn(needle, log, "server log:\n" + log[-4000:])

    def addUsers(self, client, *users):
        for user in users:
            self.assertEqual(
                client.command(b"ADDU " + user), b"+OK user " + user.lower() + b" created"
            )

    def bodies(self, client, user):
        self.assertTrue(client.command(b"USER " + user).startswith(b"+OK"))
        return [splitMessage(m)[1] for m in client.readAll()]

    def waitFor(self, condition, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail("timed out after {}s waiting for {}".format(timeout, what))
            time.sleep(0.02)


class CommandTests(ServerTestCase):
    """
    Every command of the protocol, with the replies it specifies.
    """

    def setUp(self):
        self.server = self.startServer()
        self.client = self.connect(self.server)

    def test_greeting(self):
        """
        A client that connects is greeted with +OK simplemail ready.
        """
        self.assertTrue(self.client.greeting.startswith(b"+OK simplemail ready"))

    def test_addAndListUsers(self):
        """
        ADDU creates users (kept in lower case) and LSTU lists them sorted, one a line.
        """
        c = self.client
        status, users = c.multiline(b"LSTU")
        self.assertTrue(status.startswith(b"+OK"), status)
        self.assertEqual(users, [])
        self.addUsers(c, b"carol", b"Bob", b"alice", b"zed-9", b"a.b_c")
        status, users = c.multiline(b"LSTU")
        self.assertTrue(status.startswith(b"+OK"), status)
        self.assertEqual(users, [b"a.b_c", b"alice", b"bob", b"carol", b"zed-9"])
        self.assertTrue(c.command(b"ADDU bob").startswith(b"-ERR"))
        self.assertTrue(c.command(b"ADDU BOB").startswith(b"-ERR"))
        for name in sorted(os.listdir(self.server.spool)):
            if not name.startswith("."):
                self.assertIn(name.encode(), users)

    def test_invalidUserIds(self):
        """
        ADDU of an id that breaks the rules gets -ERR and creates no file.
        """
        c = self.client
        before = sorted(os.listdir(self.server.spool))
        for bad in [
            b"..",
            b"a/b",
            b"a\x00b",
            b"x" * 65,
            b"bob.lock",
            b"-bob",
            b".bob",
            b"caf\xc3\xa9",
            b"a*b",
        ]:
            self.assertTrue(c.command(b"ADDU " + bad).startswith(b"-ERR"), bad)
        self.assertEqual(sorted(os.listdir(self.server.spool)), before)
        self.addUsers(c, b"x" * 64)

    def test_wrongArguments(self):
        """
        A command with the wrong number of arguments gets -ERR and changes nothing.
        """
        c = self.client
        self.addUsers(c, b"bob")
        self.assertTrue(c.command(b"ADDU").startswith(b"-ERR"))
        self.assertTrue(c.command(b"USER").startswith(b"-ERR"))
        self.assertTrue(c.command(b"USER bob alice").startswith(b"-ERR"))
        self.assertTrue(c.command(b"LSTU extra").startswith(b"-ERR"))
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 0 messages")
        self.assertTrue(c.command(b"SEND").startswith(b"-ERR"))
        self.assertEqual(c.command(b"SEND bob first"), b"+OK message delivered to bob")
        self.assertTrue(c.command(b"READM now").startswith(b"-ERR"))
        self.assertTrue(c.command(b"DELM it").startswith(b"-ERR"))
        self.assertTrue(c.command(b"DONEU please").startswith(b"-ERR"))
        # The cursor did not move and nothing was deleted.
        self.assertEqual(splitMessage(c.readMessage())[1], b"first\n")

    def test_unknownCommand(self):
        """
        An unknown command, an empty line or a non-UTF-8 line gets -ERR and the connection stays usable.
        """
        c = self.client
        self.assertEqual(c.command(b"FOO"), b"-ERR unknown command")
        self.assertEqual(c.command(b"HELO there"), b"-ERR unknown command")
        self.assertTrue(c.command(b"").startswith(b"-ERR"))
        self.assertTrue(c.command(b"USER \xff\xfe").startswith(b"-ERR"))
        self.assertTrue(c.command(b"\xc3\x28").startswith(b"-ERR"))
        self.assertTrue(c.multiline(b"LSTU")[0].startswith(b"+OK"))

    def test_userCount(self):
        """
        USER answers with the number of messages, e.g. +OK bob has 3 messages; an unknown user gets -ERR.
        """
        c = self.client
        self.assertTrue(c.command(b"USER nobody").startswith(b"-ERR"))
        self.assertTrue(c.command(b"USER a/b").startswith(b"-ERR"))
        self.addUsers(c, b"bob")
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 0 messages")
        self.assertEqual(c.command(b"SEND bob one"), b"+OK message delivered to bob")
        self.assertIn(c.command(b"USER bob"), (b"+OK bob has 1 message", b"+OK bob has 1 messages"))
        c.command(b"SEND bob two")
        c.command(b"SEND bob three")
        self.assertEqual(c.command(b"user BOB"), b"+OK bob has 3 messages")

    def test_commandsNeedUser(self):
        """
        READM, DELM, SEND and DONEU without a selected user get -ERR.
        """
        c = self.client
        self.addUsers(c, b"bob")
        for command in [b"READM", b"DELM", b"SEND bob hello", b"SEND bob", b"DONEU"]:
            self.assertTrue(c.command(command).startswith(b"-ERR"), command)
        c.command(b"USER bob")
        self.assertEqual(c.command(b"DONEU"), b"+OK goodbye bob")
        for command in [b"READM", b"DELM", b"SEND bob hello", b"DONEU"]:
            self.assertTrue(c.command(command).startswith(b"-ERR"), command)
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 0 messages")

    def test_sendAndRead(self):
        """
        A message sent in either SEND form is read back by READM with its headers and its exact body.
        """
        c = self.client
        self.addUsers(c, b"bob", b"alice")
        self.assertEqual(c.command(b"USER alice"), b"+OK alice has 0 messages")
        self.assertEqual(c.command(b"SEND bob hello  there "), b"+OK message delivered to bob")
        self.assertTrue(c.command(b"SEND Bob").startswith(b"+OK"))
        c.sendall(stuffBody(TRICKY_BODY) + b".\r\n")
        self.assertEqual(c.readReply(), b"+OK message delivered to bob")
        # One space after the id; the text is the rest of the line, as sent.
        self.assertEqual(c.command(b"SEND bob  leading space"), b"+OK message delivered to bob")
        # SEND <id> followed by nothing but spaces is the multi-line form.
        self.assertTrue(c.command(b"SEND bob   ").startswith(b"+OK"))
        c.sendall(b"multi\r\n.\r\n")
        self.assertEqual(c.readReply(), b"+OK message delivered to bob")
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 4 messages")
        messages = c.readAll()
        self.assertEqual(
            [splitMessage(m)[1] for m in messages],
            [b"hello  there \n", TRICKY_BODY, b" leading space\n", b"multi\n"],
        )
        ids = set()
        for text in messages:
            headers = headerValues(splitMessage(text)[0])
            self.assertEqual(headers["from"], ["alice@localhost"])
            self.assertEqual(headers["to"], ["bob@localhost"])
            when = email.utils.parsedate_to_datetime(headers["date"][0])
            self.assertLess(abs(time.time() - when.timestamp()), 300)
            self.assertEqual(len(headers["message-id"]), 1)
            self.assertRegex(headers["message-id"][0], r"\A<[^<>@\s]+@localhost>\Z")
            ids.add(headers["message-id"][0])
        self.assertEqual(len(ids), 4)

    def test_bigMessageReadBack(self):
        """
        A 3 MiB message (sent in pieces over a real socket) reads back
        exactly, and a command pipelined behind its READM is answered after
        it.
        """
        c = self.client
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        body = b"".join(b"%06d .dot\n.From %06d\n" % (i, i) for i in range(90000))
        self.assertEqual(c.send("bob", body), b"+OK message delivered to bob")
        c.command(b"USER bob")
        c.sendall(b"READM\r\nCAPA\r\n")
        status = c.readReply()
        self.assertTrue(status.startswith(b"+OK message follows"), status)
        lines = c.readMultiline()
        self.assertEqual(splitMessage(b"".join(line + b"\n" for line in lines))[1], body)
        self.assertEqual(c.readReply(), b"+OK capabilities follow")
        self.assertIn(b"PIPELINING", c.readMultiline())

    def test_readDeleteCursor(self):
        """
        DELM deletes the message READM showed last; READM then shows the one after; at the end -ERR No More Mail.
        """
        c = self.client
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        for text in [b"one", b"two", b"three"]:
            c.command(b"SEND bob " + text)
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 3 messages")
        self.assertTrue(c.command(b"DELM").startswith(b"-ERR"))  # nothing read yet
        self.assertEqual(splitMessage(c.readMessage())[1], b"one\n")
        self.assertEqual(splitMessage(c.readMessage())[1], b"two\n")
        self.assertEqual(c.command(b"DELM"), b"+OK message deleted")
        self.assertTrue(c.command(b"DELM").startswith(b"-ERR"))  # already deleted
        self.assertEqual(splitMessage(c.readMessage())[1], b"three\n")
        self.assertIsNone(c.readMessage())
        self.assertEqual(c.lastStatus, b"-ERR No More Mail")
        # The current message stays what it was: DELM deletes "three".
        self.assertEqual(c.command(b"DELM"), b"+OK message deleted")
        self.assertIsNone(c.readMessage())
        self.assertEqual(c.command(b"DONEU"), b"+OK goodbye bob")
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 1 message")
        self.assertEqual([splitMessage(m)[1] for m in c.readAll()], [b"one\n"])

    def test_sendToUnknownUser(self):
        """
        SEND to an unknown user is refused at once, and the lines after it are read as commands, not as a body.
        """
        c = self.client
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        c.sendall(b"SEND nobody\r\nLSTU\r\n")
        self.assertTrue(c.readReply().startswith(b"-ERR"))
        status = c.readReply()
        self.assertTrue(status.startswith(b"+OK"), status)
        self.assertEqual(c.readMultiline(), [b"bob"])
        self.assertTrue(c.command(b"SEND nobody hello").startswith(b"-ERR"))
        self.assertEqual(os.path.getsize(os.path.join(self.server.spool, "bob")), 0)

    def test_caseInsensitive(self):
        """
        Commands and user ids are case-insensitive.
        """
        c = self.client
        self.assertEqual(c.command(b"addu Bob"), b"+OK user bob created")
        self.assertEqual(c.command(b"uSeR BOB"), b"+OK bob has 0 messages")
        self.assertEqual(c.command(b"send BoB hi"), b"+OK message delivered to bob")
        self.assertEqual(splitMessage(c.readMessage())[1].upper(), b"HI\n")
        c.sendall(b"readm\r\n")
        self.assertEqual(c.readReply(), b"-ERR No More Mail")
        self.assertEqual(c.command(b"delm"), b"+OK message deleted")
        self.assertEqual(c.command(b"doneu"), b"+OK goodbye bob")

    def test_quit(self):
        """
        QUIT answers +OK and the server closes the connection.
        """
        c = self.client
        c.sendLine(b"QUIT")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertEqual(c.readUntilClosed(), b"")

    def test_pipelining(self):
        """
        Commands sent in one packet, a multi-line SEND among them, are all answered, in order.
        """
        c = self.client
        c.sendall(
            b"ADDU pipe\r\n"
            b"USER pipe\r\n"
            b"SEND pipe one\r\n"
            b"SEND pipe\r\n"
            b"line a\r\n"
            b"..dotted\r\n"
            b".\r\n"
            b"BOGUS\r\n"
            b"USER pipe\r\n"
            b"READM\r\n"
            b"READM\r\n"
            b"DELM\r\n"
            b"READM\r\n"
            b"LSTU\r\n"
            b"DONEU\r\n"
            b"QUIT\r\n"
        )
        self.assertEqual(c.readReply(), b"+OK user pipe created")
        self.assertEqual(c.readReply(), b"+OK pipe has 0 messages")
        self.assertEqual(c.readReply(), b"+OK message delivered to pipe")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertEqual(c.readReply(), b"+OK message delivered to pipe")
        self.assertEqual(c.readReply(), b"-ERR unknown command")
        self.assertEqual(c.readReply(), b"+OK pipe has 2 messages")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertEqual(splitMessage(b"\n".join(c.readMultiline()) + b"\n")[1], b"one\n")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertEqual(
            splitMessage(b"\n".join(c.readMultiline()) + b"\n")[1], b"line a\n.dotted\n"
        )
        self.assertEqual(c.readReply(), b"+OK message deleted")
        self.assertEqual(c.readReply(), b"-ERR No More Mail")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertEqual(c.readMultiline(), [b"pipe"])
        self.assertEqual(c.readReply(), b"+OK goodbye pipe")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertEqual(c.readUntilClosed(), b"")
        self.assertEqual(
            [b for b in self.bodies(self.connect(self.server), b"pipe")], [b"one\n"]
        )

    def test_lineTooLong(self):
        """
        A line over 64 KiB gets -ERR line too long and the server closes the connection.
        """
        c = self.client
        self.addUsers(c, b"bob")
        c.sendall(b"SEND bob " + b"x" * (70 * 1024) + b"\r\n")
        self.assertEqual(c.readLine(), b"-ERR line too long")
        self.assertEqual(c.readUntilClosed(), b"")
        self.assertEqual(os.path.getsize(os.path.join(self.server.spool, "bob")), 0)

    def test_twoSessionsFollowMessages(self):
        """
        Two sessions on one user never skip or repeat a message when the other deletes, and see mail that arrives.
        """
        a = self.client
        self.addUsers(a, b"bob")
        a.command(b"USER bob")
        for text in [b"m1", b"m2", b"m3"]:
            a.command(b"SEND bob " + text)
        b = self.connect(self.server)
        self.assertEqual(a.command(b"USER bob"), b"+OK bob has 3 messages")
        self.assertEqual(b.command(b"USER bob"), b"+OK bob has 3 messages")
        self.assertEqual(splitMessage(a.readMessage())[1], b"m1\n")
        self.assertEqual(splitMessage(b.readMessage())[1], b"m1\n")
        self.assertEqual(splitMessage(b.readMessage())[1], b"m2\n")
        self.assertEqual(b.command(b"DELM"), b"+OK message deleted")
        self.assertEqual(splitMessage(a.readMessage())[1], b"m3\n")
        b.command(b"SEND bob m4")
        self.assertEqual(b.command(b"DONEU"), b"+OK goodbye bob")  # expunges m2
        self.assertEqual(splitMessage(a.readMessage())[1], b"m4\n")
        self.assertIsNone(a.readMessage())
        self.assertEqual(a.command(b"DELM"), b"+OK message deleted")
        self.assertEqual(a.command(b"DONEU"), b"+OK goodbye bob")
        self.assertEqual(self.bodies(b, b"bob"), [b"m1\n", b"m3\n"])
        self.assertCleanLog(self.server)


class SpoolFileTests(ServerTestCase):
    """
    The spool files, read with the stdlib mailbox module.
    """

    def test_fileFormat(self):
        """
        Each message is an mboxrd record with From/To/Date/Message-ID headers, body quoted in the file and unquoted by READM.
        """
        server = self.startServer()
        c = self.connect(server)
        self.addUsers(c, b"bob", b"alice")
        c.command(b"USER alice")
        self.assertEqual(c.send("bob", TRICKY_BODY), b"+OK message delivered to bob")
        self.assertEqual(c.command(b"SEND bob second"), b"+OK message delivered to bob")
        path = os.path.join(server.spool, "bob")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(
            stat.S_IMODE(os.stat(os.path.join(server.spool, "alice")).st_mode), 0o600
        )
        messages = mboxMessages(path)
        self.assertEqual(len(messages), 2)
        for fromLine, raw in messages:
            self.assertTrue(fromLine.startswith("alice@localhost "), fromLine)
            self.assertRegex(fromLine[len("alice@localhost ") :], _CTIME)
            headers = headerValues(splitMessage(raw)[0])
            self.assertEqual(headers["from"], ["alice@localhost"])
            self.assertEqual(headers["to"], ["bob@localhost"])
            email.utils.parsedate_to_datetime(headers["date"][0])
            self.assertRegex(headers["message-id"][0], r"\A<[^<>@\s]+@localhost>\Z")
        body = splitMessage(messages[0][1])[1]
        self.assertEqual(
            body, TRICKY_BODY.replace(b"From me", b">From me").replace(b">From already", b">>From already")
        )
        self.assertIn(b"\n>From me\n", open(path, "rb").read())
        self.assertEqual(splitMessage(messages[1][1])[1], b"second\n")
        self.assertEqual(self.bodies(c, b"bob"), [TRICKY_BODY, b"second\n"])
        # The raw file: separator, headers, blank line, body, blank line.
        raw = open(path, "rb").read()
        self.assertTrue(raw.startswith(b"From alice@localhost "))
        self.assertTrue(raw.endswith(b"\nsecond\n\n"))

    def test_domain(self):
        """
        With --domain example.org the addresses in headers and separators use that domain.
        """
        server = self.startServer("--domain", "example.org")
        c = self.connect(server)
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        c.command(b"SEND bob hi")
        [(fromLine, raw)] = mboxMessages(os.path.join(server.spool, "bob"))
        self.assertTrue(fromLine.startswith("bob@example.org "), fromLine)
        headers = headerValues(splitMessage(raw)[0])
        self.assertEqual(headers["from"], ["bob@example.org"])
        self.assertEqual(headers["to"], ["bob@example.org"])
        self.assertRegex(headers["message-id"][0], r"\A<[^<>@\s]+@example\.org>\Z")
        text = c.readMessage()
        self.assertIn(b"From: bob@example.org\n", text)
        self.assertIn(b"To: bob@example.org\n", text)

    def test_restartKeepsEverything(self):
        """
        A server restarted on the same spool shows the same users and the same messages, byte for byte.
        """
        server = self.startServer()
        c = self.connect(server)
        self.addUsers(c, b"bob", b"alice")
        c.command(b"USER alice")
        c.send("bob", TRICKY_BODY)
        c.command(b"SEND alice note to self")
        before = {u: self.readUser(c, u) for u in (b"alice", b"bob")}
        c.command(b"QUIT")
        c.close()
        self.assertIn(server.stop(), (0, -signal.SIGTERM))
        server.start()
        c = self.connect(server)
        self.assertEqual(c.multiline(b"LSTU")[1], [b"alice", b"bob"])
        self.assertEqual(c.command(b"USER bob"), b"+OK bob has 1 message")
        after = {u: self.readUser(c, u) for u in (b"alice", b"bob")}
        self.assertEqual(after, before)
        self.assertEqual(splitMessage(after[b"bob"][0])[1], TRICKY_BODY)
        self.assertCleanLog(server)

    def readUser(self, client, user):
        self.assertTrue(client.command(b"USER " + user).startswith(b"+OK"))
        return client.readAll()

    def assertFileHolds(self, path, bodies):
        self.assertEqual([splitMessage(raw)[1] for _, raw in mboxMessages(path)], bodies)

    def test_fileExpungedAtSessionEnd(self):
        """
        Once the session that deleted ends (DONEU, USER, QUIT or a dropped connection), the file holds exactly the messages left.
        """
        server = self.startServer()
        c = self.connect(server)
        self.addUsers(c, b"bob", b"other")
        c.command(b"USER bob")
        for i in range(8):
            c.command(b"SEND bob m%d" % (i,))
        path = os.path.join(server.spool, "bob")
        left = [b"m%d\n" % (i,) for i in range(8)]

        def deleteNext(client, body):
            client.command(b"USER bob")
            for _ in range(10):
                if splitMessage(client.readMessage())[1] == body:
                    break
            self.assertEqual(client.command(b"DELM"), b"+OK message deleted")
            left.remove(body)

        deleteNext(c, b"m0\n")
        self.assertEqual(c.command(b"DONEU"), b"+OK goodbye bob")
        self.assertFileHolds(path, left)

        deleteNext(c, b"m3\n")
        self.assertTrue(c.command(b"USER other").startswith(b"+OK"))
        self.assertFileHolds(path, left)

        deleteNext(c, b"m5\n")
        c.sendLine(b"QUIT")
        self.assertTrue(c.readReply().startswith(b"+OK"))
        self.assertFileHolds(path, left)
        c.close()

        d = self.connect(server)
        deleteNext(d, b"m7\n")
        d.close()  # no QUIT: the connection just goes away
        self.waitFor(
            lambda: [splitMessage(r)[1] for _, r in mboxMessages(path)] == left,
            "the file to hold exactly {}".format(left),
        )
        self.assertEqual(self.bodies(self.connect(server), b"bob"), left)
        self.assertCleanLog(server)

    def test_shutdownEndsSessions(self):
        """
        Stopping the server (SIGTERM) with a session that deleted open leaves the file holding exactly the messages left.
        """
        server = self.startServer()
        c = self.connect(server)
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        for i in range(3):
            c.command(b"SEND bob m%d" % (i,))
        c.command(b"USER bob")
        c.readMessage()
        c.readMessage()
        self.assertEqual(c.command(b"DELM"), b"+OK message deleted")
        self.assertIn(server.stop(), (0, -signal.SIGTERM))
        self.assertFileHolds(os.path.join(server.spool, "bob"), [b"m0\n", b"m2\n"])
        # Nothing of the stopped server is left beside the mailboxes: no
        # dot-lock, and not the file its dot-locks were linked from.
        self.assertEqual(
            [n for n in os.listdir(server.spool) if n.endswith(".lock") or
             n.startswith(".simplemail-")],
            [],
        )

    def test_defaultSpool(self):
        """
        Without --spool the server keeps its spool in ./MAILSERVER, created at start.
        """
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        server = self.startServer(spool=None, cwd=cwd)
        spool = os.path.join(cwd, "MAILSERVER")
        self.assertTrue(os.path.isdir(spool))
        c = self.connect(server)
        self.addUsers(c, b"bob")
        self.assertTrue(os.path.isfile(os.path.join(spool, "bob")))


class LimitTests(ServerTestCase):
    """
    --max-message-size.
    """

    def test_tooLarge(self):
        """
        A message over --max-message-size is refused after its final dot, nothing is stored, and the session goes on.
        """
        server = self.startServer("--max-message-size", "2000")
        c = self.connect(server)
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        reply = c.send("bob", b"x" * 100 + b"\n" + b"y" * 5000 + b"\n" + b"z\n" * 1000)
        self.assertTrue(reply.startswith(b"-ERR"), reply)
        self.assertIn(b"too large", reply)
        self.assertTrue(c.command(b"SEND bob " + b"w" * 3000).startswith(b"-ERR"))
        self.assertEqual(c.send("bob", b"small\n"), b"+OK message delivered to bob")
        self.assertEqual(self.bodies(c, b"bob"), [b"small\n"])
        self.assertEqual(len(mboxMessages(os.path.join(server.spool, "bob"))), 1)
        self.assertCleanLog(server)

    def test_tooLargeOneLineToUnknownUser(self):
        """
        A one-line SEND to an unknown user with text over the size limit gets one -ERR and leaves no error in the log.
        """
        server = self.startServer("--max-message-size", "100")
        c = self.connect(server)
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        reply = c.command(b"SEND nobody " + b"x" * 200)
        self.assertTrue(reply.startswith(b"-ERR"), reply)
        self.assertTrue(c.multiline(b"LSTU")[0].startswith(b"+OK"))
        c.command(b"QUIT")
        server.stop()
        self.assertCleanLog(server)


class ProcessTests(ServerTestCase):
    """
    The twistd process: options, ports, logs.
    """

    def test_portInUse(self):
        """
        A second server on a port already in use exits non-zero, and the first one keeps serving.
        """
        first = self.startServer()
        second = ServerProcess(self.mktemp(), port=first.port)
        code, output = runTwistd(second.args(first.port), timeout=30)
        self.assertNotEqual(code, 0, output)
        self.assertIn("Address already in use", output)
        c = self.connect(first)
        self.assertTrue(c.multiline(b"LSTU")[0].startswith(b"+OK"))

    def assertUsageError(self, args, message):
        spool = os.path.abspath(self.mktemp())
        code, output = runTwistd(["-n", "--pidfile=", "simplemail"] + args + ["--spool", spool])
        self.assertNotEqual(code, 0, output)
        self.assertNotIn("Traceback", output)
        lines = [line for line in output.splitlines() if line.strip()]
        # twistd prints the options' help, then the error on one last line.
        self.assertIn(message, lines[-1], output)
        self.assertFalse(os.path.exists(spool))
        return output

    def test_badListen(self):
        """
        --listen nonsense:1 gets a one-line usage error and a non-zero exit, no traceback.
        """
        self.assertUsageError(["--listen", "nonsense:1"], "'nonsense:1'")

    def test_badMaxMessageSize(self):
        """
        --max-message-size x gets a one-line usage error and a non-zero exit, no traceback.
        """
        self.assertUsageError(["--max-message-size", "x"], "--max-message-size")
        self.assertUsageError(["--max-message-size", "x"], "'x'")

    def test_logSaysWhatHappened(self):
        """
        The log tells of connections, users added, deliveries and deletes.
        """
        server = self.startServer()
        c = self.connect(server)
        self.addUsers(c, b"bob")
        c.command(b"USER bob")
        c.command(b"SEND bob hello")
        c.readMessage()
        c.command(b"DELM")
        c.command(b"QUIT")
        log = server.waitForLog("closed")
        log = server.waitForLog("deleted")
        self.assertRegex(log, r"connection from 127\.0\.0\.1:\d+")
        self.assertRegex(log, r"added user bob")
        self.assertRegex(log, r"delivered \d+ bytes from bob to bob")
        self.assertRegex(log, r"deleted a message of bob")
        self.assertCleanLog(server)
