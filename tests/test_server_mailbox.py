"""
Tests for the mailbox-view commands of L{twisted_mail.doors.line}: C{LSTM},
C{READM <id>} and C{SENDM}, as a client sees them on the wire.
"""

from tests.test_server import WHEN, DeferringStore, ServerTestCase, _headers
from tests.test_store import makeSpoolStore
from twisted_mail import errors
from twisted_mail.stores.memory import MemoryStore


def _listing(connection):
    """
    Send C{LSTM} and read its reply as C{(id, size, time, from, subject)}
    tuples.
    """
    connection.send(b"LSTM")
    status, lines = connection.multiline()
    assert status.startswith(b"+OK"), status
    rows = []
    for line in lines:
        head, sender, subject = line.decode("utf-8").split("\t")
        msgid, size, arrived = head.split(" ")
        rows.append((msgid, int(size), int(arrived), sender, subject))
    return rows


class MailboxViewTestsMixin:
    """
    LSTM, READM <id> and SENDM against one store (C{makeStore}).
    """

    def setUp(self):
        ServerTestCase.setUp(self)
        self.store = self.makeStore()
        self.addUsers("alice", "bob")

    def selected(self, userid="bob"):
        connection = self.connect()
        connection.send(b"USER " + userid.encode("ascii"))
        self.assertOK(connection.line())
        return connection

    def stored(self, userid):
        """
        The texts of the messages in C{userid}'s mailbox, through the store
        contract.
        """
        session = self.successResultOf(self.store.openMailbox(userid))
        texts = []
        ended = []
        while not ended:
            d = session.readMessage()
            d.addErrback(lambda f: ended.append(f.trap(errors.NoMoreMail)))
            text = self.successResultOf(d)
            if not ended:
                texts.append(text)
        self.successResultOf(session.close())
        return texts

    def deliverWhole(self, text, receiver="bob"):
        self.successResultOf(self.store.deliverMessage("x@example.org", receiver, text))

    # -- LSTM

    def test_lstmListsInOrder(self):
        """
        LSTM gives one line per message in mailbox order: id, POP3 size,
        arrival time, then the decoded From and Subject, tab-separated.
        """
        self.deliver("alice", "bob", b"first\n")
        self.deliverWhole(
            b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>\n"
            b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\n\nhi\n"
        )
        rows = _listing(self.selected())
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows[0][3], "alice@localhost")
        self.assertEqual(rows[1][3:], ("J\u00fcrgen M\u00fcller <j@example.org>", "Gr\u00fc\u00dfe"))
        self.assertNotEqual(rows[0][0], rows[1][0])
        for msgid, size, arrived, _, _ in rows:
            self.assertRegex(msgid, r"\A[A-Za-z0-9_-]{1,64}\Z")
            self.assertGreater(size, 0)
            self.assertGreater(arrived, 0)

    def test_lstmSizeIsPopSize(self):
        """
        The size LSTM gives is the message's octets with CRLF line ends, as
        READM <id> sends it, before dot-stuffing.
        """
        self.deliver("alice", "bob", b"one\n.two\n")
        connection = self.selected()
        [(msgid, size, _, _, _)] = _listing(connection)
        connection.send(b"READM " + msgid.encode("ascii"))
        _, message = connection.message()
        self.assertEqual(size, len(message.replace(b"\n", b"\r\n")))

    def test_lstmControlCharacters(self):
        """
        Tabs and control characters in From and Subject become spaces, so
        a line always has exactly three tab-separated fields.
        """
        self.deliverWhole(b"From: a\tb <a@b>\nSubject: x\x1b[2J\ty\x07\n\nbody\n")
        connection = self.selected()
        connection.send(b"LSTM")
        _, lines = connection.multiline()
        self.assertEqual(lines[0].count(b"\t"), 2)
        self.assertNotIn(b"\x1b", lines[0])
        self.assertTrue(lines[0].endswith(b"\tx [2J y "), lines[0])

    def test_lstmEmpty(self):
        """
        LSTM on an empty mailbox is a multi-line reply with no lines.
        """
        self.assertEqual(_listing(self.selected("alice")), [])

    def test_lstmNeedsUser(self):
        """
        LSTM without a selected user is refused.
        """
        connection = self.connect()
        connection.send(b"LSTM")
        self.assertERR(connection.line())
        self.assertNothingMore(connection)

    def test_capa(self):
        """
        CAPA lists LSTM and SENDM.
        """
        connection = self.connect()
        connection.send(b"CAPA")
        _, lines = connection.multiline()
        self.assertIn(b"LSTM", lines)
        self.assertIn(b"SENDM", lines)

    # -- READM <id>

    def test_readmById(self):
        """
        READM <id> shows that message; it becomes the current message (DELM
        deletes it) and the cursor moves just after it.
        """
        for body in (b"one\n", b"two\n", b"three\n"):
            self.deliver("alice", "bob", body)
        connection = self.selected()
        ids = [row[0] for row in _listing(connection)]
        connection.send(b"READM " + ids[1].encode("ascii"))
        status, message = connection.message()
        self.assertOK(status)
        self.assertTrue(message.endswith(b"\n\ntwo\n"))
        connection.send(b"DELM")
        self.assertOK(connection.line())
        connection.send(b"READM")
        self.assertTrue(connection.message()[1].endswith(b"\n\nthree\n"))
        self.assertEqual([row[0] for row in _listing(connection)], [ids[0], ids[2]])

    def test_readmNoSuchMessage(self):
        """
        READM with an id no message has, or one that is not an id at all,
        gets C{-ERR no such message}; the current message does not change.
        """
        self.deliver("alice", "bob", b"one\n")
        connection = self.selected()
        for msgid in (b"nosuch", b"../x", b"a" * 65, "\u00e9".encode("utf-8")):
            connection.send(b"READM " + msgid)
            self.assertEqual(connection.line(), b"-ERR no such message")
        connection.send(b"DELM")
        self.assertERR(connection.line())

    def test_readmDeletedMessage(self):
        """
        READM <id> of a message this session deleted is no such message.
        """
        self.deliver("alice", "bob", b"one\n")
        connection = self.selected()
        [msgid] = [row[0].encode("ascii") for row in _listing(connection)]
        connection.send(b"READM " + msgid, b"DELM", b"READM " + msgid)
        self.assertOK(connection.message()[0])
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"-ERR no such message")

    def test_idsAfterDeleteByAnotherSession(self):
        """
        A delete made by another session (and expunged when it ends) leaves
        every other message's id unchanged: the first session's listing ids
        still read the same messages.
        """
        for body in (b"one\n", b"two\n", b"three\n"):
            self.deliver("alice", "bob", body)
        first = self.selected()
        before = _listing(first)
        other = self.selected()
        other.send(b"READM", b"DELM", b"DONEU")
        self.assertOK(other.message()[0])
        self.assertOK(other.line())
        self.assertOK(other.line())
        first.send(b"READM " + before[2][0].encode("ascii"))
        self.assertTrue(first.message()[1].endswith(b"\n\nthree\n"))
        first.send(b"READM " + before[0][0].encode("ascii"))
        self.assertEqual(first.line(), b"-ERR no such message")
        self.assertEqual(_listing(first), before[1:])
        self.assertEqual(_listing(self.selected()), before[1:])

    # -- SENDM

    def sendm(self, connection, receiver, *lines):
        connection.send(b"SENDM " + receiver, *lines, b".")
        self.assertOK(connection.line())
        return connection.line()

    def test_sendmHeaders(self):
        """
        The server sets From, To, Date and Message-ID itself and keeps
        Subject, MIME-Version, Content-*, In-Reply-To and References; any
        other header is dropped; the body is kept.
        """
        connection = self.selected("alice")
        reply = self.sendm(
            connection,
            b"bob",
            b"From: mallory@evil.example",
            b"To: someone@else",
            b"Date: Mon, 1 Jan 2001 00:00:00 +0000",
            b"Message-ID: <forged@evil.example>",
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=",
            b"MIME-Version: 1.0",
            b"Content-Type: text/plain;",
            b" charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
            b"In-Reply-To: <a@b>",
            b"References: <a@b>",
            b"X-Mailer: spam",
            b"Received: from nowhere",
            b"",
            b"Hello \xc3\xbc",
            b"..dot",
        )
        self.assertEqual(reply, b"+OK message delivered to bob")
        [message] = self.stored("bob")
        head, _, body = message.partition(b"\n\n")
        self.assertEqual(body, b"Hello \xc3\xbc\n.dot\n")
        names = [line.split(b":")[0] for line in head.split(b"\n") if line[:1] != b" "]
        self.assertEqual(
            names,
            [b"From", b"To", b"Date", b"Message-ID", b"Subject", b"MIME-Version",
             b"Content-Type", b"Content-Transfer-Encoding", b"In-Reply-To",
             b"References"],
        )
        headers = _headers(message.replace(b"\n charset", b" charset"))
        self.assertEqual(headers[b"From"], b"alice@localhost")
        self.assertEqual(headers[b"To"], b"bob@localhost")
        self.assertNotIn(b"evil", message)
        self.assertNotIn(b"2001", message)
        self.assertIn(b"Content-Type: text/plain;\n charset=utf-8\n", message)

    def test_sendmBadHeaders(self):
        """
        A header section that does not parse gets C{-ERR} after the C{.};
        nothing is stored and the connection goes on.
        """
        connection = self.selected("alice")
        for lines in (
            [b"just a body line"],
            [b" folded first", b"", b"x"],
            [b"Subject: hi", b"not a header", b"", b"x"],
            [b"Bad Name: x", b"", b"x"],
        ):
            reply = self.sendm(connection, b"bob", *lines)
            self.assertTrue(reply.startswith(b"-ERR the message's header section"), reply)
        self.assertEqual(self.stored("bob"), [])
        connection.send(b"LSTM")
        self.assertOK(connection.multiline()[0])

    def test_sendmBareCRInHeaders(self):
        """
        A bare CR in a header line cannot smuggle a From: or Reply-To: past
        the header filter: the message is refused with C{-ERR}, nothing is
        stored; a CR in the body is kept as text.
        """
        connection = self.selected("alice")
        reply = self.sendm(
            connection, b"bob",
            b"Subject: hello\rFrom: The CEO <ceo@x>\rReply-To: x@evil", b"", b"x")
        self.assertEqual(
            reply, b"-ERR the message's header section does not parse: "
            b"a header line holds a bare CR")
        self.assertEqual(self.stored("bob"), [])
        reply = self.sendm(connection, b"bob", b"Subject: hi", b"", b"a\rb")
        self.assertOK(reply)
        [message] = self.stored("bob")
        self.assertIn(b"\na\rb\n", message)
        self.assertNotIn(b"evil", message)

    def test_sendmHugeHeaderSection(self):
        """
        A header section longer than 256 KiB is refused after the C{.},
        quickly; nothing is stored.
        """
        connection = self.selected("alice")
        lines = [b"X-H%06d: some value" % i for i in range(20000)] + [b"", b"body"]
        reply = self.sendm(connection, b"bob", *lines)
        self.assertTrue(reply.startswith(b"-ERR the message's header section"), reply)
        self.assertIn(b"longer than 262144 bytes", reply)
        self.assertEqual(self.stored("bob"), [])

    def test_sendmEmptyHeaderSection(self):
        """
        A message that starts with the empty line is all body.
        """
        connection = self.selected("alice")
        reply = self.sendm(connection, b"bob", b"", b"only a body")
        self.assertOK(reply)
        [message] = self.stored("bob")
        self.assertTrue(message.endswith(b"\n\nonly a body\n"))

    def test_sendmUnknownReceiver(self):
        """
        SENDM to a user that does not exist is refused at once; the lines
        that follow are read as commands.
        """
        connection = self.selected("alice")
        connection.send(b"SENDM carol", b"LSTM")
        self.assertEqual(connection.line(), b"-ERR no such user: carol")
        self.assertOK(connection.multiline()[0])

    def test_sendmNeedsUser(self):
        """
        SENDM without a selected user is refused and reads no body.
        """
        connection = self.connect()
        connection.send(b"SENDM bob")
        self.assertERR(connection.line())
        self.assertNothingMore(connection)

    def test_sendmTooLarge(self):
        """
        A message over --max-message-size is refused after its C{.};
        nothing is stored.
        """
        connection = self.connect(maxMessageSize=1000)
        connection.send(b"USER alice")
        self.assertOK(connection.line())
        reply = self.sendm(connection, b"bob", b"Subject: big", b"", b"x" * 2000)
        self.assertTrue(reply.startswith(b"-ERR message too large"), reply)
        self.assertEqual(self.stored("bob"), [])

    def test_sendmBulk(self):
        """
        A large message sent in one burst (taken in bulk) is stored byte
        for byte, dot-stuffing undone.
        """
        connection = self.selected("alice")
        lines = [b"Subject: bulk", b""] + [b"..line %d" % i for i in range(20000)]
        self.assertOK(self.sendm(connection, b"bob", *lines))
        [message] = self.stored("bob")
        self.assertTrue(
            message.endswith(b"\n\n" + b"".join(b".line %d\n" % i for i in range(20000)))
        )
        self.assertIn(b"\nSubject: bulk\n", message)


class MemoryStoreMailboxViewTests(MailboxViewTestsMixin, ServerTestCase):
    def makeStore(self):
        return MemoryStore(clock=lambda: WHEN)


class SpoolStoreMailboxViewTests(MailboxViewTestsMixin, ServerTestCase):
    def makeStore(self):
        return makeSpoolStore(self)


class PipeliningTests(ServerTestCase):
    def test_pipelined(self):
        """
        LSTM, READM <id>, a SENDM with its body and another LSTM sent in one
        packet, against a store that answers later, are answered one at a
        time, in order.
        """
        self.addUsers("alice", "bob")
        self.deliver("alice", "bob", b"one\n")
        store = DeferringStore(self.store)
        connection = self.connect(store)
        connection.send(b"USER bob")
        store.release()
        self.assertOK(connection.line())
        msgid = self.successResultOf(self.successResultOf(self.store.openMailbox("bob"))
                                     .listMessages()).messages[0].id.encode("ascii")
        connection.send(
            b"LSTM", b"READM " + msgid, b"SENDM bob", b"Subject: s", b"", b"two", b".",
            b"LSTM",
        )
        while store.calls:
            store.release()
        rows = []
        status, lines = connection.multiline()
        self.assertOK(status)
        self.assertEqual(len(lines), 1)
        status, message = connection.message()
        self.assertTrue(message.endswith(b"\n\none\n"))
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"+OK message delivered to bob")
        status, lines = connection.multiline()
        self.assertEqual(len(lines), 2, rows)
        self.assertNothingMore(connection)
