"""
Tests for L{twisted_mail.doors.line}: the protocol as a client sees it on the
wire, driven through an in-memory transport, a fake clock and the in-memory
store of L{twisted_mail.stores.memory}.

Expected replies come from the protocol contract (PROTOCOL.md /
docs/protocol.rst).  Where the contract fixes a reply's text (C{+OK bob has 3
messages}, C{-ERR No More Mail}, C{-ERR line too long}, ...) the tests check
the text; elsewhere they check the status only.
"""

import gc
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_mail.doors import line as server
from twisted_mail import errors, wire
from twisted_mail.interfaces import IMailboxSession, IMailStore
from twisted_mail.mail.message import buildMessage
from twisted_mail.doors.line import MailServerFactory
from twisted_mail.stores.memory import MemoryStore

ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)

#: A fixed delivery time, so stored message sizes are predictable.
WHEN = 1709211909

#: The longest line the protocol accepts, without its line ending.
LIMIT = 64 * 1024


class Connection:
    """
    A server protocol on a L{StringTransport}, and a reader of the replies
    it writes, one line at a time.
    """

    def __init__(self, factory, lenient=False):
        self.factory = factory
        self.protocol = factory.buildProtocol(ADDRESS)
        self.transport = StringTransport(peerAddress=ADDRESS, lenient=lenient)
        self.protocol.makeConnection(self.transport)
        self._read = 0

    def send(self, *lines, end=b"\r\n"):
        """
        Deliver C{lines}, each with C{end}, in one C{dataReceived} call.
        """
        self.protocol.dataReceived(b"".join(line + end for line in lines))

    def unread(self):
        """
        The bytes written by the server and not read yet.
        """
        return self.transport.value()[self._read :]

    def line(self):
        """
        Read one CRLF-terminated line written by the server.
        """
        data = self.transport.value()
        end = data.find(b"\r\n", self._read)
        if end == -1:
            raise AssertionError(
                "no complete reply line; unread: {!r}".format(data[self._read :])
            )
        line = data[self._read : end]
        self._read = end + 2
        return line

    def multiline(self):
        """
        Read a multi-line reply as a client does.

        @return: the status line and the unstuffed data lines (L{None} if
            the status is not C{+OK}).
        """
        status = self.line()
        if not status.startswith(b"+OK"):
            return status, None
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return status, lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def message(self):
        """
        Read a C{READM} reply.

        @return: the status line and the message (L{bytes}, LF endings), or
            L{None} for a failure.
        """
        status, lines = self.multiline()
        if lines is None:
            return status, None
        return status, b"".join(line + b"\n" for line in lines)

    def lose(self):
        """
        Tell the protocol its connection has ended.
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))


def _body(message):
    """
    The body of RFC 5322 text (after the first blank line).
    """
    return message.partition(b"\n\n")[2]


def _headers(message):
    """
    The headers of RFC 5322 text, as a dict of name -> value.
    """
    block = message.partition(b"\n\n")[0]
    return dict(line.split(b": ", 1) for line in block.split(b"\n"))


@implementer(IMailStore)
class DeferringStore:
    """
    An L{IMailStore} that answers later: every call is queued, and runs
    against a L{MemoryStore} only when the test calls L{release}.  So a test
    decides when each of the store's answers arrives.

    @ivar calls: the queued calls' names, oldest first.
    """

    def __init__(self, store):
        self._store = store
        self._queue = []

    @property
    def calls(self):
        return [name for name, _, _ in self._queue]

    def _later(self, name, call):
        d = Deferred()
        self._queue.append((name, call, d))
        return d

    def release(self):
        """
        Run the oldest queued call and fire its Deferred with the answer.

        @return: the call's name.
        """
        name, call, d = self._queue.pop(0)
        call().chainDeferred(d)
        return name

    def listUsers(self):
        return self._later("listUsers", self._store.listUsers)

    def addUser(self, userid):
        return self._later("addUser", lambda: self._store.addUser(userid))

    def hasUser(self, userid):
        return self._later("hasUser", lambda: self._store.hasUser(userid))

    def openMailbox(self, userid):
        return self._later(
            "openMailbox",
            lambda: self._store.openMailbox(userid).addCallback(
                lambda session: _DeferringSession(self, session)
            ),
        )

    def deliver(self, sender, receiver, body):
        return self._later(
            "deliver", lambda: self._store.deliver(sender, receiver, body)
        )

    def deliverMessage(self, envelopeSender, receiver, message):
        return self._later(
            "deliverMessage",
            lambda: self._store.deliverMessage(envelopeSender, receiver, message),
        )

    def subscribe(self, userid, listener):
        return self._store.subscribe(userid, listener)

    def watch(self, userid, listener):
        return self._store.watch(userid, listener)

    def _queued(name):
        def call(self, *args, **kwargs):
            return self._later(
                name, lambda: getattr(self._store, name)(*args, **kwargs))

        call.__name__ = name
        return call

    # The mailbox model (MAILBOX.md), queued like the rest.
    listFolders = _queued("listFolders")
    createFolder = _queued("createFolder")
    renameFolder = _queued("renameFolder")
    deleteFolder = _queued("deleteFolder")
    openFolder = _queued("openFolder")
    appendMessage = _queued("appendMessage")
    search = _queued("search")
    del _queued


@implementer(IMailboxSession)
class _DeferringSession:
    def __init__(self, store, session):
        self._store = store
        self._session = session
        self.userid = session.userid
        self.count = session.count

    @property
    def currentId(self):
        return self._session.currentId

    def readMessage(self):
        return self._store._later("readMessage", self._session.readMessage)

    def deleteMessage(self):
        return self._store._later("deleteMessage", self._session.deleteMessage)

    def listMessages(self, start=0, limit=None, newestFirst=False):
        return self._store._later(
            "listMessages",
            lambda: self._session.listMessages(start, limit, newestFirst))

    def fetchMessage(self, msgid):
        return self._store._later(
            "fetchMessage", lambda: self._session.fetchMessage(msgid))

    def selectMessage(self, msgid):
        return self._store._later(
            "selectMessage", lambda: self._session.selectMessage(msgid))

    def deleteMessages(self, msgids):
        return self._store._later(
            "deleteMessages", lambda: self._session.deleteMessages(msgids))

    def close(self):
        return self._store._later("close", self._session.close)

    def _queued(name):
        def call(self, *args, **kwargs):
            return self._store._later(
                name, lambda: getattr(self._session, name)(*args, **kwargs))

        call.__name__ = name
        return call

    setFlags = _queued("setFlags")
    markSeen = _queued("markSeen")
    moveMessages = _queued("moveMessages")
    copyMessages = _queued("copyMessages")
    summary = _queued("summary")
    flagsOf = _queued("flagsOf")
    fetchMessages = _queued("fetchMessages")
    listEntries = _queued("listEntries")
    del _queued

    @property
    def folder(self):
        return self._session.folder

    @property
    def uidValidity(self):
        return self._session.uidValidity


class ServerTestCase(SynchronousTestCase):
    """
    Helpers shared by the server tests.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.store = MemoryStore(clock=lambda: WHEN)

    def factory(self, store=None, **kwargs):
        kwargs.setdefault("reactor", self.clock)
        return MailServerFactory(self.store if store is None else store, **kwargs)

    def connect(self, store=None, lenient=False, **kwargs):
        """
        Connect to a new server and read its greeting.
        """
        connection = Connection(self.factory(store, **kwargs), lenient=lenient)
        self.assertTrue(connection.line().startswith(b"+OK simplemail ready"))
        return connection

    def addUsers(self, *userids):
        for userid in userids:
            self.successResultOf(self.store.addUser(userid))

    def deliver(self, sender, receiver, body):
        # It fires with the new message's id (issue 23 item 10).
        self.assertIsInstance(self.successResultOf(self.store.deliver(sender, receiver, body)),
                              str)

    def assertOK(self, line):
        self.assertTrue(line == b"+OK" or line.startswith(b"+OK "), line)

    def assertERR(self, line):
        self.assertTrue(line == b"-ERR" or line.startswith(b"-ERR "), line)

    def assertNothingMore(self, connection):
        self.assertEqual(connection.unread(), b"")

    def assertOpen(self, connection):
        self.assertFalse(connection.transport.disconnecting)


class GreetingAndListTests(ServerTestCase):
    """
    The greeting, LSTU and ADDU.
    """

    def test_greeting(self):
        """
        A client is greeted with C{+OK simplemail ready} as soon as it
        connects.
        """
        connection = Connection(self.factory())
        self.assertTrue(connection.line().startswith(b"+OK simplemail ready"))
        self.assertNothingMore(connection)

    def test_lstuEmpty(self):
        """
        LSTU on a server without users is a multi-line reply with no lines.
        """
        connection = self.connect()
        connection.send(b"LSTU")
        status, lines = connection.multiline()
        self.assertOK(status)
        self.assertEqual(lines, [])
        self.assertNothingMore(connection)

    def test_lstuSorted(self):
        """
        LSTU lists one user id a line, sorted, in lower case.
        """
        connection = self.connect()
        connection.send(b"ADDU carol", b"ADDU Alice", b"ADDU bob", b"LSTU")
        for _ in range(3):
            self.assertOK(connection.line())
        status, lines = connection.multiline()
        self.assertOK(status)
        self.assertEqual(lines, [b"alice", b"bob", b"carol"])

    def test_lstuWithUserSelected(self):
        """
        LSTU works while a user is selected.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob", b"LSTU")
        self.assertOK(connection.line())
        self.assertEqual(connection.multiline()[1], [b"bob"])

    def test_capa(self):
        """
        CAPA is a multi-line list of capabilities, without AUTH when
        passwords are off, and works with or without a selected user.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"CAPA", b"USER bob", b"CAPA")
        status, capabilities = connection.multiline()
        self.assertOK(status)
        self.assertTrue(capabilities)
        self.assertNotIn(b"AUTH", capabilities)
        self.assertOK(connection.line())
        self.assertEqual(connection.multiline(), (status, capabilities))

    def test_adduCreatesUser(self):
        """
        ADDU creates a user with an empty mailbox.
        """
        connection = self.connect()
        connection.send(b"ADDU bob")
        self.assertOK(connection.line())
        self.assertEqual(self.store.messages("bob"), [])
        connection.send(b"USER bob")
        self.assertEqual(connection.line(), b"+OK bob has 0 messages")

    def test_adduExists(self):
        """
        Adding a user twice, in any case, fails the second time.
        """
        connection = self.connect()
        connection.send(b"ADDU Bob", b"ADDU bob", b"ADDU BOB", b"LSTU")
        self.assertOK(connection.line())
        self.assertERR(connection.line())
        self.assertERR(connection.line())
        self.assertEqual(connection.multiline()[1], [b"bob"])

    def test_adduInvalid(self):
        """
        ADDU with an id breaking the rules fails and creates nothing.
        """
        connection = self.connect()
        bad = [
            b"..",
            b"a/b",
            b"a" * 65,
            b".bob",
            b"-bob",
            b"_bob",
            b"bob.lock",
            "caf\u00e9".encode("utf-8"),
            "\u212a".encode("utf-8"),
            b"a\x00b",
        ]
        connection.send(*[b"ADDU " + userid for userid in bad])
        for userid in bad:
            line = connection.line()
            self.assertERR(line)
            self.assertNotIn(b"\x00", line)
        connection.send(b"LSTU")
        self.assertEqual(connection.multiline()[1], [])

    def test_adduLongestId(self):
        """
        A 64-character id is accepted.
        """
        connection = self.connect()
        connection.send(b"ADDU " + b"a" * 64)
        self.assertOK(connection.line())


class UserTests(ServerTestCase):
    """
    USER: selecting a user.
    """

    def test_counts(self):
        """
        USER answers with the number of messages: C{bob has 0 messages},
        C{1 message}, C{3 messages}.
        """
        self.addUsers("alice", "bob")
        connection = self.connect()
        connection.send(b"USER bob")
        self.assertEqual(connection.line(), b"+OK bob has 0 messages")
        self.deliver("alice", "bob", b"one\n")
        connection.send(b"USER bob")
        self.assertEqual(connection.line(), b"+OK bob has 1 message")
        self.deliver("alice", "bob", b"two\n")
        self.deliver("alice", "bob", b"three\n")
        connection.send(b"USER bob")
        self.assertEqual(connection.line(), b"+OK bob has 3 messages")

    def test_caseInsensitiveId(self):
        """
        USER BOB selects bob.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER BOB")
        self.assertEqual(connection.line(), b"+OK bob has 0 messages")

    def test_noSuchUser(self):
        """
        USER of an unknown user fails and selects nobody.
        """
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        self.assertERR(connection.line())
        self.assertERR(connection.line())

    def test_invalidId(self):
        """
        USER with an id breaking the rules fails.
        """
        connection = self.connect()
        connection.send(b"USER a/b", b"USER ..")
        self.assertERR(connection.line())
        self.assertERR(connection.line())

    def test_switchUsers(self):
        """
        USER while another user is selected switches to the new user.
        """
        self.addUsers("alice", "bob")
        self.deliver("bob", "alice", b"for alice\n")
        self.deliver("alice", "bob", b"for bob\n")
        connection = self.connect()
        connection.send(b"USER alice", b"USER bob", b"READM")
        self.assertEqual(connection.line(), b"+OK alice has 1 message")
        self.assertEqual(connection.line(), b"+OK bob has 1 message")
        status, message = connection.message()
        self.assertOK(status)
        self.assertEqual(_body(message), b"for bob\n")

    def test_cursorAtFirstMessage(self):
        """
        Selecting a user again puts the cursor back at the first message.
        """
        self.addUsers("alice", "bob")
        self.deliver("alice", "bob", b"first\n")
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"USER bob", b"READM")
        self.assertOK(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"first\n")
        self.assertOK(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"first\n")


class ReadTests(ServerTestCase):
    """
    READM.
    """

    def test_message(self):
        """
        READM sends the message as RFC 5322 text: From:, To:, Date: and
        Message-ID: headers with the domain, a blank line and the body, with
        no mbox separator.
        """
        self.addUsers("alice", "bob")
        self.deliver("alice", "bob", b"Hello Bob,\nFrom the desk of alice\n")
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        self.assertOK(connection.line())
        status, message = connection.message()
        self.assertOK(status)
        self.assertTrue(message.startswith(b"From: "), message)
        headers = _headers(message)
        self.assertEqual(headers[b"From"], b"alice@localhost")
        self.assertEqual(headers[b"To"], b"bob@localhost")
        self.assertIn(b"Date", headers)
        self.assertTrue(headers[b"Message-ID"].endswith(b"@localhost>"))
        self.assertEqual(_body(message), b"Hello Bob,\nFrom the desk of alice\n")
        self.assertNothingMore(connection)

    def drain(self, connection):
        """
        Let the transport take what a pull producer offers, as a real one
        does when its buffer empties.

        @return: how many pieces it took.
        """
        pieces = 0
        while connection.transport.producer is not None:
            connection.transport.producer.resumeProducing()
            pieces += 1
        return pieces

    def test_largeMessageInPieces(self):
        """
        A large message is sent a piece at a time as the transport takes
        them, the same bytes as in one piece; commands sent meanwhile are
        answered after it, in order.
        """
        self.addUsers("alice", "bob")
        body = b"".join(b"%05d .line\n.dot %05d\n" % (i, i) for i in range(20000))
        self.deliver("alice", "bob", body)
        (text,) = self.store.messages("bob")
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"LSTU")
        self.assertOK(connection.line())
        self.assertEqual(connection.unread(), b"+OK message follows (%d bytes)\r\n" % len(text))
        self.assertGreater(self.drain(connection), 5)
        expected = wire.formatMessageReply("message follows (%d bytes)" % len(text), text)
        status, message = connection.message()
        self.assertEqual(message, text)
        self.assertEqual(connection.transport.value().count(expected), 1)
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])
        self.assertNothingMore(connection)

    def test_largeMessageConnectionLost(self):
        """
        When the connection is lost while a large message is being sent,
        the sending stops and nothing more is answered.
        """
        self.addUsers("bob")
        self.deliver("bob", "bob", b"x" * 100 + b"\n" * 3000 + b"y\n" * 40000)
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"LSTU")
        producer = connection.transport.producer
        producer.resumeProducing()
        sent = len(connection.transport.value())
        connection.protocol.connectionLost(Failure(ConnectionDone()))
        producer.stopProducing()
        producer.resumeProducing()
        self.assertEqual(len(connection.transport.value()), sent)

    def test_dotStuffed(self):
        """
        Message lines starting with C{.} are sent with one more C{.}, so a
        body line C{.} never ends the reply early.
        """
        self.addUsers("alice", "bob")
        self.deliver("alice", "bob", b".\n.x\n..y\nz.\n")
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        connection.line()
        raw = connection.unread()
        self.assertIn(b"\r\n\r\n..\r\n..x\r\n...y\r\nz.\r\n.\r\n", raw)
        status, message = connection.message()
        self.assertEqual(_body(message), b".\n.x\n..y\nz.\n")

    def test_inOrderThenNoMoreMail(self):
        """
        READM shows the messages in order, then answers C{-ERR No More Mail}.
        """
        self.addUsers("alice", "bob")
        for body in [b"one\n", b"two\n", b"three\n"]:
            self.deliver("alice", "bob", body)
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"READM", b"READM", b"READM", b"READM")
        self.assertOK(connection.line())
        for body in [b"one\n", b"two\n", b"three\n"]:
            self.assertEqual(_body(connection.message()[1]), body)
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        self.assertNothingMore(connection)

    def test_emptyMailbox(self):
        """
        READM on an empty mailbox answers C{-ERR No More Mail}.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"-ERR No More Mail")

    def test_noMoreMailKeepsCurrent(self):
        """
        After C{-ERR No More Mail} the current message is still the last one
        shown, so DELM deletes it.
        """
        self.addUsers("alice", "bob")
        self.deliver("alice", "bob", b"only\n")
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"READM", b"DELM", b"USER bob")
        self.assertOK(connection.line())
        self.assertOK(connection.message()[0])
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"+OK bob has 0 messages")
        self.assertEqual(self.store.messages("bob"), [])

    def test_newMailReadableInSession(self):
        """
        Mail that arrives during a session can be read in it, even after
        C{-ERR No More Mail}.
        """
        self.addUsers("alice", "bob")
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        connection.line()
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        self.deliver("alice", "bob", b"late\n")
        connection.send(b"READM")
        self.assertEqual(_body(connection.message()[1]), b"late\n")


class DeleteTests(ServerTestCase):
    """
    DELM.
    """

    def setUp(self):
        super().setUp()
        self.addUsers("alice", "bob")
        for body in [b"one\n", b"two\n", b"three\n"]:
            self.deliver("alice", "bob", body)

    def test_withoutCurrentMessage(self):
        """
        DELM before any READM fails and deletes nothing.
        """
        connection = self.connect()
        connection.send(b"USER bob", b"DELM", b"READM")
        self.assertOK(connection.line())
        self.assertERR(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"one\n")
        self.assertEqual(len(self.store.messages("bob")), 3)

    def test_deleteThenReadFollowing(self):
        """
        After DELM, the next READM shows the message that followed the
        deleted one, and the deleted one is gone for good.
        """
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"READM", b"DELM", b"READM", b"READM")
        self.assertOK(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"one\n")
        self.assertEqual(_body(connection.message()[1]), b"two\n")
        self.assertOK(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"three\n")
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        self.assertEqual(
            [_body(m) for m in self.store.messages("bob")], [b"one\n", b"three\n"]
        )
        connection.send(b"USER bob", b"READM", b"READM")
        self.assertEqual(connection.line(), b"+OK bob has 2 messages")
        self.assertEqual(_body(connection.message()[1]), b"one\n")
        self.assertEqual(_body(connection.message()[1]), b"three\n")

    def test_deleteTwice(self):
        """
        A second DELM of the same message fails: it is already deleted.
        """
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"DELM", b"DELM")
        self.assertOK(connection.line())
        self.assertOK(connection.message()[0])
        self.assertOK(connection.line())
        self.assertERR(connection.line())
        self.assertEqual(len(self.store.messages("bob")), 2)

    def test_deletedMessageGoneAfterSession(self):
        """
        Once the session that deleted a message ends, the message is
        removed from the store.
        """
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"DELM", b"DONEU")
        self.assertOK(connection.line())
        self.assertOK(connection.message()[0])
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(self.store.expunged, 1)


class SendTests(ServerTestCase):
    """
    SEND, in its one-line and multi-line forms.
    """

    def setUp(self):
        super().setUp()
        self.addUsers("alice", "bob")

    def test_oneLine(self):
        """
        The one-line form stores the text as the whole body, from the
        selected user, with one reply.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob hello world")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertNothingMore(connection)
        [message] = self.store.messages("bob")
        self.assertEqual(_headers(message)[b"From"], b"alice@localhost")
        self.assertEqual(_headers(message)[b"To"], b"bob@localhost")
        self.assertEqual(_body(message), b"hello world\n")

    def test_oneLineTextAsSent(self):
        """
        The one-line body is everything after the space that follows the
        id, spaces included.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob   two  spaces ")
        connection.line()
        self.assertOK(connection.line())
        self.assertEqual(_body(self.store.messages("bob")[0]), b"  two  spaces \n")

    def test_oneLineReceiverCaseInsensitive(self):
        """
        SEND BOB delivers to bob.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND BOB hi")
        connection.line()
        self.assertOK(connection.line())
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_toSelf(self):
        """
        A user may send a message to itself.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND alice note to self", b"USER alice")
        connection.line()
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"+OK alice has 1 message")

    def test_multiLine(self):
        """
        The multi-line form asks for the body, reads dot-stuffed lines up to
        a line C{.}, and then answers once the message is stored.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        connection.send(b"first line", b"..", b"..leading dot", b"", b"last")
        self.assertNothingMore(connection)
        self.assertEqual(self.store.messages("bob"), [])
        connection.send(b".")
        self.assertOK(connection.line())
        self.assertNothingMore(connection)
        [message] = self.store.messages("bob")
        self.assertEqual(_body(message), b"first line\n.\n.leading dot\n\nlast\n")

    def test_multiLineTrailingSpaces(self):
        """
        C{SEND bob} followed by nothing but spaces is the multi-line form.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob   ", b"body", b".")
        connection.line()
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertNothingMore(connection)
        self.assertEqual(_body(self.store.messages("bob")[0]), b"body\n")

    def test_multiLineRoundTrip(self):
        """
        Body lines come back from READM byte for byte, dot-stuffed on the
        wire: dots, 8-bit bytes, invalid UTF-8, a lone CR and C{From } lines.
        """
        lines = [
            b".",
            b"..",
            b".x",
            b"From alice, with love",
            b">From quoted",
            b"caf\xc3\xa9 \xff\xfe\x00",
            b"a\rb",
            b"",
            b"  indented",
            b"end",
        ]
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob")
        connection.line()
        connection.line()
        connection.send(*[b"." + line if line.startswith(b".") else line for line in lines])
        connection.send(b".", b"USER bob", b"READM")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        status, wireLines = connection.multiline()
        self.assertOK(status)
        self.assertEqual(wireLines[wireLines.index(b"") + 1 :], lines)

    def test_emptyBody(self):
        """
        A message with an empty body (only the C{.} line) is stored.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob", b".")
        for _ in range(3):
            self.assertOK(connection.line())
        [message] = self.store.messages("bob")
        self.assertEqual(_body(message), b"")

    def test_bareLineFeeds(self):
        """
        A body sent with bare LF line endings is received like one with
        CRLF.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob", b"x", b"..y", b".", end=b"\n")
        for _ in range(3):
            self.assertOK(connection.line())
        self.assertEqual(_body(self.store.messages("bob")[0]), b"x\n.y\n")

    def test_unknownReceiverAnsweredAtOnce(self):
        """
        SEND to an unknown receiver fails at once, and no body is read: the
        following lines are commands.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND nobody", b"LSTU", b".")
        self.assertOK(connection.line())
        self.assertERR(connection.line())
        status, users = connection.multiline()
        self.assertOK(status)
        self.assertEqual(users, [b"alice", b"bob"])
        self.assertERR(connection.line())
        self.assertNothingMore(connection)

    def test_unknownReceiverOneLine(self):
        """
        The one-line form to an unknown receiver fails and stores nothing.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND nobody hi")
        connection.line()
        self.assertERR(connection.line())
        self.assertEqual(self.store.messages("alice"), [])
        self.assertEqual(self.store.messages("bob"), [])

    def test_invalidReceiver(self):
        """
        SEND to an id breaking the rules fails at once and reads no body.
        """
        connection = self.connect()
        connection.send(b"USER alice", b"SEND a/b", b"LSTU")
        connection.line()
        self.assertERR(connection.line())
        self.assertOK(connection.multiline()[0])

    def test_unknownReceiverOversizedText(self):
        """
        A one-line SEND that is both too large and for an unknown receiver
        is refused without leaving an unhandled error in the server's log.
        """
        connection = self.connect(maxMessageSize=100)
        connection.send(b"USER alice", b"SEND nobody " + b"x" * 200)
        connection.line()
        self.assertERR(connection.line())
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])


class SessionTests(ServerTestCase):
    """
    DONEU, QUIT and commands that need a selected user.
    """

    def test_commandsNeedUser(self):
        """
        READM, DELM, SEND and DONEU before USER fail, and a refused
        multi-line SEND reads no body.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"READM", b"DELM", b"SEND bob hi", b"SEND bob", b"LSTU", b"DONEU")
        for _ in range(4):
            self.assertERR(connection.line())
        self.assertOK(connection.multiline()[0])
        self.assertERR(connection.line())
        self.assertNothingMore(connection)
        self.assertEqual(self.store.messages("bob"), [])

    def test_doneu(self):
        """
        DONEU ends the user session: afterwards no user is selected.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob", b"DONEU", b"READM", b"DONEU")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertERR(connection.line())
        self.assertERR(connection.line())

    def test_quit(self):
        """
        QUIT answers C{+OK} and closes the connection; lines after it are
        not answered.
        """
        connection = self.connect(lenient=True)
        connection.send(b"QUIT", b"LSTU", b"ADDU bob")
        self.assertOK(connection.line())
        self.assertTrue(connection.transport.disconnecting)
        self.assertNothingMore(connection)
        self.assertNotIn("bob", self.successResultOf(self.store.listUsers()))

    def test_quitEndsSession(self):
        """
        QUIT ends the user session, so the messages it deleted are removed.
        """
        self.addUsers("alice", "bob")
        self.deliver("alice", "bob", b"x\n")
        connection = self.connect(lenient=True)
        connection.send(b"USER bob", b"READM", b"DELM", b"QUIT")
        self.assertOK(connection.line())
        self.assertOK(connection.message()[0])
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(self.store.expunged, 1)

    def test_quitRespectsProducerContract(self):
        """
        QUIT works on a transport that refuses to be paused or resumed after
        it was told to close (as Twisted's StringTransport does).
        """
        connection = self.connect()
        connection.send(b"QUIT")
        self.assertOK(connection.line())
        self.assertTrue(connection.transport.disconnecting)

    def test_quitWhileStoreClosesSession(self):
        """
        QUIT ending a session on a store that answers later still answers
        C{+OK} and closes, without pausing or resuming the transport after
        it was told to close.
        """
        store = DeferringStore(self.store)
        self.addUsers("bob")
        connection = self.connect(store)
        connection.send(b"USER bob")
        store.release()
        connection.line()
        connection.send(b"QUIT", b"LSTU")
        self.assertEqual(store.calls, ["close"])
        store.release()
        self.assertOK(connection.line())
        self.assertTrue(connection.transport.disconnecting)
        self.assertNothingMore(connection)
        self.assertEqual(store.calls, [])
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_quitWithArgumentRefused(self):
        """
        C{QUIT now} is the wrong number of arguments: it fails and keeps the
        connection open.
        """
        connection = self.connect()
        connection.send(b"QUIT now", b"LSTU")
        self.assertERR(connection.line())
        self.assertOK(connection.multiline()[0])
        self.assertOpen(connection)

    def test_caseInsensitiveCommands(self):
        """
        Every command works in lower and mixed case.
        """
        connection = self.connect(lenient=True)
        connection.send(
            b"addu alice",
            b"Addu bob",
            b"lstu",
            b"user alice",
            b"send bob hi",
            b"Send bob",
            b"there",
            b".",
            b"doneu",
            b"uSeR bob",
            b"readm",
            b"DeLm",
            b"quit",
        )
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"+OK bob has 2 messages")
        self.assertEqual(_body(connection.message()[1]), b"hi\n")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertTrue(connection.transport.disconnecting)

    def test_wrongArityChangesNothing(self):
        """
        A command with the wrong number of arguments fails and changes
        nothing: no user added or switched, no cursor moved, nothing deleted
        or sent, the connection kept.
        """
        self.addUsers("alice", "bob", "carol")
        self.deliver("alice", "bob", b"one\n")
        self.deliver("alice", "bob", b"two\n")
        connection = self.connect()
        connection.send(b"ADDU", b"ADDU dave erin", b"USER bob", b"READM")
        self.assertERR(connection.line())
        self.assertERR(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"one\n")
        wrong = [
            b"READM now",
            b"DELM 1",
            b"USER carol alice",
            b"USER",
            b"DONEU bob",
            b"LSTU all",
            b"SEND",
            b"QUIT now",
        ]
        connection.send(*wrong)
        for _ in wrong:
            self.assertERR(connection.line())
        self.assertOpen(connection)
        connection.send(b"DELM", b"READM", b"LSTU")
        self.assertOK(connection.line())
        self.assertEqual(_body(connection.message()[1]), b"two\n")
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob", b"carol"])
        self.assertEqual([_body(m) for m in self.store.messages("bob")], [b"two\n"])
        self.assertEqual(self.store.messages("carol"), [])

    def test_unknownCommand(self):
        """
        A command the protocol does not define is answered
        C{-ERR unknown command} and the connection stays usable.
        """
        connection = self.connect()
        connection.send(b"HELO", b"Listusers", b"LSTU")
        self.assertEqual(connection.line(), b"-ERR unknown command")
        self.assertEqual(connection.line(), b"-ERR unknown command")
        self.assertOK(connection.multiline()[0])

    def test_emptyLine(self):
        """
        An empty line gets C{-ERR} and the connection stays usable.
        """
        connection = self.connect()
        connection.send(b"", b"   ", b"LSTU")
        self.assertERR(connection.line())
        self.assertERR(connection.line())
        self.assertOK(connection.multiline()[0])


class ServerStopTests(ServerTestCase):
    """
    What a client sees when the server stops while it is connected (SIGTERM,
    or a C{--workers} worker whose supervisor is gone).
    """

    def test_idleConnectionToldAndClosed(self):
        """
        A connection waiting for its next command is told the server is
        stopping and closed; a command sent afterwards is not answered as
        if no user had been chosen.
        """
        self.addUsers("alice")
        connection = self.connect()
        connection.send(b"USER alice")
        self.assertOK(connection.line())
        self.successResultOf(connection.factory.endSessions())
        self.assertEqual(connection.line(), b"-ERR server stopping, closing")
        self.assertTrue(connection.transport.disconnecting)
        connection.send(b"READM")
        self.assertNothingMore(connection)

    def test_commandUnderWayAnsweredFirst(self):
        """
        A command the store is still answering when the server stops gets
        its reply, then the stopping notice, then the connection closes;
        commands pipelined behind it are not run.
        """
        store = DeferringStore(self.store)
        self.addUsers("alice", "bob")
        connection = self.connect(store)
        connection.send(b"USER alice")
        store.release()
        self.assertOK(connection.line())
        connection.send(b"SEND bob hello", b"LSTU")
        self.assertEqual(len(store.calls), 1)
        ended = connection.factory.endSessions()
        self.assertNothingMore(connection)
        while store.calls:  # the SEND's calls, one after another
            store.release()
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"-ERR server stopping, closing")
        self.assertNothingMore(connection)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(store.calls, [])
        self.assertEqual(len(self.store.messages("bob")), 1)
        self.successResultOf(ended)


class FramingTests(ServerTestCase):
    """
    Line endings, UTF-8 and the line length limit.
    """

    def test_bareLineFeed(self):
        """
        Commands ending in a bare LF are accepted, mixed with CRLF ones.
        """
        connection = self.connect()
        connection.protocol.dataReceived(b"ADDU bob\nADDU alice\r\nLSTU\n")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])

    def test_splitAcrossPackets(self):
        """
        A command arriving in pieces is answered once its line is complete.
        """
        connection = self.connect()
        for piece in [b"AD", b"DU b", b"ob\r", b"\n"]:
            self.assertNothingMore(connection)
            connection.protocol.dataReceived(piece)
        self.assertOK(connection.line())

    def test_invalidUtf8(self):
        """
        A command line that is not UTF-8 gets C{-ERR}; the connection stays
        open and usable.
        """
        connection = self.connect()
        connection.send(b"USER \xff\xfe", b"\xc3(", b"LSTU")
        self.assertERR(connection.line())
        self.assertERR(connection.line())
        self.assertOK(connection.multiline()[0])
        self.assertOpen(connection)

    def sendLine(self, connection, length, end=b"\r\n"):
        """
        Send a one-line SEND to bob exactly C{length} bytes long.
        """
        prefix = b"SEND bob "
        connection.send(prefix + b"x" * (length - len(prefix)), end=end)

    def test_longestLineAccepted(self):
        """
        A command line of exactly 64 KiB is accepted, with CRLF or LF.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob")
        connection.line()
        self.sendLine(connection, LIMIT)
        self.assertOK(connection.line())
        self.sendLine(connection, LIMIT, end=b"\n")
        self.assertOK(connection.line())
        self.assertOpen(connection)
        bodies = [_body(m) for m in self.store.messages("bob")]
        self.assertEqual(bodies, [b"x" * (LIMIT - 9) + b"\n"] * 2)

    def test_lineTooLong(self):
        """
        A command line of 64 KiB + 1 gets C{-ERR line too long}, and the
        connection is closed without running what follows.
        """
        self.addUsers("bob")
        for end in [b"\r\n", b"\n"]:
            connection = self.connect()
            connection.send(b"USER bob")
            connection.line()
            connection.protocol.dataReceived(
                b"SEND bob " + b"x" * (LIMIT + 1 - 9) + end + b"ADDU evil" + end
            )
            self.assertEqual(connection.line(), b"-ERR line too long")
            self.assertNothingMore(connection)
            self.assertTrue(connection.transport.disconnecting)
            self.assertEqual(self.store.messages("bob"), [])
            self.assertNotIn("evil", self.successResultOf(self.store.listUsers()))

    def test_tooLongWithoutNewline(self):
        """
        More than 64 KiB without any line ending gets C{-ERR line too long}
        and the connection is closed.
        """
        connection = self.connect()
        connection.protocol.dataReceived(b"x" * (LIMIT + 2))
        self.assertEqual(connection.line(), b"-ERR line too long")
        self.assertTrue(connection.transport.disconnecting)

    def test_tooLongTrickled(self):
        """
        A line over 64 KiB arriving in small pieces, with no line ending, is
        refused once it passes the limit.
        """
        connection = self.connect()
        for _ in range(LIMIT // 4096):
            connection.protocol.dataReceived(b"x" * 4096)
        self.assertNothingMore(connection)
        self.assertOpen(connection)
        connection.protocol.dataReceived(b"xx")
        self.assertEqual(connection.line(), b"-ERR line too long")
        self.assertTrue(connection.transport.disconnecting)

    def test_longestLineInPieces(self):
        """
        A 64 KiB line arriving in pieces, its line ending last, is accepted.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob")
        connection.line()
        line = b"SEND bob " + b"y" * (LIMIT - 9)
        connection.protocol.dataReceived(line[:30000])
        connection.protocol.dataReceived(line[30000:])
        connection.protocol.dataReceived(b"\r")
        self.assertNothingMore(connection)
        connection.protocol.dataReceived(b"\n")
        self.assertOK(connection.line())

    def test_longestBodyLineAccepted(self):
        """
        A body line of exactly 64 KiB is accepted.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob", b"SEND bob", b"z" * LIMIT, b".")
        for _ in range(3):
            self.assertOK(connection.line())
        self.assertEqual(_body(self.store.messages("bob")[0]), b"z" * LIMIT + b"\n")

    def test_bodyLineTooLong(self):
        """
        A body line of 64 KiB + 1 gets C{-ERR line too long} and the
        connection is closed; nothing is stored and the text after it is
        never run as commands.
        """
        self.addUsers("bob")
        connection = self.connect()
        connection.send(b"USER bob", b"SEND bob")
        connection.line()
        connection.line()
        connection.send(b"z" * (LIMIT + 1), b".", b"ADDU evil", b"LSTU")
        self.assertEqual(connection.line(), b"-ERR line too long")
        self.assertNothingMore(connection)
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(self.store.messages("bob"), [])
        self.assertNotIn("evil", self.successResultOf(self.store.listUsers()))


class MessageSizeTests(ServerTestCase):
    """
    --max-message-size.
    """

    limit = 1000

    def setUp(self):
        super().setUp()
        self.store = MemoryStore(clock=lambda: WHEN, maxMessageSize=self.limit)
        self.addUsers("alice", "bob")

    def test_bodyOverLimit(self):
        """
        A body over the limit is refused after its C{.}, nothing is stored
        and the connection stays usable.
        """
        connection = self.connect(maxMessageSize=self.limit)
        connection.send(b"USER alice", b"SEND bob")
        connection.line()
        self.assertOK(connection.line())
        connection.send(*[b"w" * 99] * 20)
        self.assertNothingMore(connection)
        connection.send(b".")
        line = connection.line()
        self.assertERR(line)
        self.assertIn(b"too large", line)
        self.assertEqual(self.store.messages("bob"), [])
        connection.send(b"SEND bob small", b"LSTU")
        self.assertOK(connection.line())
        self.assertOK(connection.multiline()[0])
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_oneLineOverLimit(self):
        """
        A one-line message over the limit is refused and nothing is stored.
        """
        connection = self.connect(maxMessageSize=self.limit)
        connection.send(b"USER alice", b"SEND bob " + b"w" * 2000)
        connection.line()
        self.assertERR(connection.line())
        self.assertEqual(self.store.messages("bob"), [])
        self.assertOpen(connection)

    def test_limitCountsStoredSize(self):
        """
        A message whose stored size is exactly the limit is accepted; one
        byte more is refused.
        """
        headers = len(buildMessage("alice", "bob", b"", "localhost", WHEN))
        fits = b"v" * (self.limit - headers - 1)
        connection = self.connect(maxMessageSize=self.limit)
        connection.send(b"USER alice", b"SEND bob", fits, b".", b"SEND bob", fits + b"v", b".")
        for _ in range(3):
            self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertERR(connection.line())
        [message] = self.store.messages("bob")
        self.assertEqual(len(message), self.limit)


class StoreFailureTests(ServerTestCase):
    """
    Failures reported by the store.
    """

    def setUp(self):
        super().setUp()
        self.addUsers("alice", "bob")

    def test_temporaryFailure(self):
        """
        A temporary store failure is answered C{-ERR temporary failure...}
        with its reason; nothing is stored and a retry works.
        """
        connection = self.connect()
        connection.send(b"USER alice")
        connection.line()
        self.store.failNext = errors.TemporaryFailure("disk full")
        connection.send(b"SEND bob hi", b"SEND bob hi")
        line = connection.line()
        self.assertTrue(line.startswith(b"-ERR temporary failure"), line)
        self.assertIn(b"disk full", line)
        self.assertOK(connection.line())
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_temporaryFailureOnRead(self):
        """
        A temporary failure of READM leaves the cursor where it was.
        """
        self.deliver("alice", "bob", b"one\n")
        connection = self.connect()
        connection.send(b"USER bob")
        connection.line()
        self.store.failNext = errors.TemporaryFailure("disk full")
        connection.send(b"READM", b"READM")
        self.assertTrue(connection.line().startswith(b"-ERR temporary failure"))
        self.assertEqual(_body(connection.message()[1]), b"one\n")

    def test_unexpectedErrorLoggedNotShown(self):
        """
        An unexpected store error is logged and answered
        C{-ERR internal error}, with no class name, path or traceback sent
        to the client.
        """
        self.store.listUsers = lambda: fail(RuntimeError("/srv/secret/spool exploded"))
        connection = self.connect()
        connection.send(b"LSTU", b"ADDU carol")
        self.assertEqual(connection.line(), b"-ERR internal error")
        self.assertOK(connection.line())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        sent = connection.transport.value()
        for secret in [b"RuntimeError", b"Traceback", b"/srv/secret", b"exploded"]:
            self.assertNotIn(secret, sent)
        self.assertOpen(connection)

    def test_unexpectedSynchronousError(self):
        """
        A store method that raises instead of failing its Deferred is
        logged and answered C{-ERR internal error}.
        """

        def broken(userid):
            raise KeyError("/srv/secret")

        self.store.hasUser = broken
        connection = self.connect()
        connection.send(b"USER alice", b"SEND bob hi", b"LSTU")
        connection.line()
        self.assertEqual(connection.line(), b"-ERR internal error")
        self.assertOK(connection.multiline()[0])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertNotIn(b"KeyError", connection.transport.value())

    def test_unexpectedErrorOnDelivery(self):
        """
        An unexpected error while delivering is logged, answered
        C{-ERR internal error}, and the connection stays usable.
        """
        connection = self.connect()
        connection.send(b"USER alice")
        connection.line()
        self.store.failNext = ValueError("boom")
        connection.send(b"SEND bob", b"text", b".", b"LSTU")
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"-ERR internal error")
        self.assertOK(connection.multiline()[0])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class PipeliningTests(ServerTestCase):
    """
    Several commands in one packet are answered in order, one reply each.
    """

    def test_synchronousStore(self):
        """
        A whole session sent in one packet is answered command by command,
        in order, with exactly one reply each.
        """
        connection = self.connect()
        connection.send(
            b"ADDU alice",
            b"ADDU bob",
            b"USER alice",
            b"SEND bob",
            b"first",
            b"..dot",
            b".",
            b"SEND bob second",
            b"DONEU",
            b"USER bob",
            b"READM",
            b"READM",
            b"DELM",
            b"READM",
            b"HELO",
            b"LSTU",
        )
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"+OK alice has 0 messages")
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"+OK bob has 2 messages")
        self.assertEqual(_body(connection.message()[1]), b"first\n.dot\n")
        self.assertEqual(_body(connection.message()[1]), b"second\n")
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        self.assertEqual(connection.line(), b"-ERR unknown command")
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])
        self.assertNothingMore(connection)

    def test_floodWhileWaitingPausesTransport(self):
        """
        A client that keeps sending while its command waits for the store is
        stopped at the TCP level once more than a line's worth is buffered,
        and resumed after the reply.
        """
        store = DeferringStore(self.store)
        connection = self.connect(store)
        connection.send(b"ADDU bob")
        self.assertEqual(connection.transport.producerState, "producing")
        for _ in range(3):
            connection.protocol.dataReceived(b"LSTU\r\n" * 5000)
        self.assertEqual(connection.transport.producerState, "paused")
        store.release()
        self.assertOK(connection.line())
        self.assertEqual(connection.transport.producerState, "producing")

    def test_asynchronousStorePausesAndKeepsOrder(self):
        """
        While the store has not answered, the following commands wait; each
        answer releases exactly the next reply, in order.
        """
        store = DeferringStore(self.store)
        self.addUsers("alice")
        connection = self.connect(store)
        connection.send(b"ADDU bob", b"USER alice", b"SEND bob hi", b"LSTU", b"HELO")
        self.assertEqual(store.calls, ["addUser"])
        self.assertNothingMore(connection)
        self.assertTrue(connection.protocol.paused)

        self.assertEqual(store.release(), "addUser")
        self.assertOK(connection.line())
        self.assertNothingMore(connection)
        self.assertEqual(store.calls, ["openMailbox"])

        store.release()
        self.assertEqual(connection.line(), b"+OK alice has 0 messages")
        self.assertNothingMore(connection)
        self.assertEqual(store.calls, ["hasUser"])

        store.release()
        self.assertNothingMore(connection)
        self.assertEqual(store.calls, ["deliver"])

        store.release()
        self.assertOK(connection.line())
        self.assertEqual(len(self.store.messages("bob")), 1)
        self.assertNothingMore(connection)
        self.assertEqual(store.calls, ["listUsers"])

        store.release()
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])
        self.assertEqual(connection.line(), b"-ERR unknown command")
        self.assertNothingMore(connection)
        self.assertEqual(store.calls, [])
        self.assertEqual(connection.transport.producerState, "producing")

    def test_asynchronousMultiLineSend(self):
        """
        Body lines that arrive before the store has confirmed the receiver
        are kept as the body, not run as commands.
        """
        store = DeferringStore(self.store)
        self.addUsers("alice", "bob")
        connection = self.connect(store)
        connection.send(b"USER alice")
        store.release()
        connection.line()
        connection.send(b"SEND bob", b"LSTU", b"ADDU evil", b".", b"LSTU")
        self.assertEqual(store.calls, ["hasUser"])
        store.release()
        self.assertOK(connection.line())
        self.assertEqual(store.calls, ["deliver"])
        store.release()
        self.assertOK(connection.line())
        self.assertEqual(store.calls, ["listUsers"])
        store.release()
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])
        self.assertEqual(_body(self.store.messages("bob")[0]), b"LSTU\nADDU evil\n")

    def test_dataArrivingWhilePaused(self):
        """
        Commands arriving in later packets while the store is busy are
        answered after the earlier ones, in order.
        """
        store = DeferringStore(self.store)
        connection = self.connect(store)
        connection.send(b"ADDU alice")
        connection.send(b"ADDU bob", b"LSTU")
        connection.send(b"ADDU alice")
        self.assertEqual(store.calls, ["addUser"])
        while store.calls:
            store.release()
        self.assertOK(connection.line())
        self.assertOK(connection.line())
        self.assertEqual(connection.multiline()[1], [b"alice", b"bob"])
        self.assertERR(connection.line())
        self.assertNothingMore(connection)

    def test_connectionLostWhileStoreBusy(self):
        """
        A connection that goes away while the store is busy gets no reply
        written and ends its session.
        """
        store = DeferringStore(self.store)
        self.addUsers("bob")
        connection = self.connect(store)
        connection.send(b"USER bob", b"LSTU")
        store.release()
        connection.line()
        self.assertEqual(store.calls, ["listUsers"])
        connection.lose()
        self.assertEqual(store.calls, ["listUsers", "close"])
        store.release()
        store.release()
        self.assertNothingMore(connection)

    def test_overIOSim(self):
        """
        A raw line client pipelining a whole session over a simulated
        connection gets one reply per command, in order, and is
        disconnected after QUIT.
        """
        factory = self.factory()
        commands = [
            b"ADDU alice",
            b"ADDU bob",
            b"USER alice",
            b"SEND bob",
            b"..hidden",
            b"..",
            b".",
            b"DONEU",
            b"USER bob",
            b"READM",
            b"QUIT",
            b"LSTU",
        ]
        client, server, pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(ADDRESS), lambda: RawClient(commands)
        )
        pump.flush()
        lines = client.lines
        self.assertTrue(lines[0].startswith(b"+OK simplemail ready"))
        # ADDU, ADDU, USER, SEND (go ahead), SEND (stored), DONEU
        for line in lines[1:7]:
            self.assertOK(line)
        self.assertEqual(lines[7], b"+OK bob has 1 message")
        self.assertOK(lines[8])
        end = lines.index(b".", 9)
        body = lines[lines.index(b"", 9) + 1 : end]
        # The lines ".hidden" and "." as stored, dot-stuffed on the wire.
        self.assertEqual(body, [b"..hidden", b".."])
        self.assertOK(lines[end + 1])
        self.assertEqual(len(lines), end + 2)
        self.assertTrue(client.lost)
        self.assertEqual(factory.connections, 0)


class RawClient(LineReceiver):
    """
    A client that sends all its commands at once and records every line.
    """

    delimiter = b"\r\n"

    def __init__(self, commands):
        self.commands = commands
        self.lines = []
        self.lost = False

    def connectionMade(self):
        self.transport.write(b"".join(c + b"\r\n" for c in self.commands))

    def lineReceived(self, line):
        self.lines.append(line)

    def connectionLost(self, reason):
        self.lost = True


class IdleTimeoutTests(ServerTestCase):
    """
    --idle-timeout, with a fake clock.
    """

    def test_silentConnectionClosed(self):
        """
        A connection silent for the idle timeout gets an C{-ERR} line and is
        closed.
        """
        connection = self.connect(idleTimeout=10)
        self.clock.advance(9.9)
        self.assertNothingMore(connection)
        self.assertOpen(connection)
        self.clock.advance(0.1)
        self.assertERR(connection.line())
        self.assertTrue(connection.transport.disconnecting)

    def test_commandRestartsTimer(self):
        """
        Each command restarts the idle timer.
        """
        connection = self.connect(idleTimeout=10)
        for _ in range(3):
            self.clock.advance(9)
            connection.send(b"LSTU")
            connection.multiline()
        self.clock.advance(9)
        self.assertOpen(connection)
        self.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)

    def test_tricklingDoesNotKeepAlive(self):
        """
        Bytes that never complete a line do not keep a connection alive.
        """
        connection = self.connect(idleTimeout=10)
        self.clock.advance(4)
        connection.protocol.dataReceived(b"LS")
        self.clock.advance(4)
        connection.protocol.dataReceived(b"T")
        self.clock.advance(2)
        self.assertERR(connection.line())
        self.assertTrue(connection.transport.disconnecting)
        self.assertNothingMore(connection)

    def test_bodyLinesKeepAlive(self):
        """
        Lines of a message body being sent count as activity.
        """
        self.addUsers("bob")
        connection = self.connect(idleTimeout=10)
        connection.send(b"USER bob", b"SEND bob")
        for _ in range(3):
            self.clock.advance(9)
            connection.send(b"more")
        self.assertOpen(connection)
        connection.send(b".")
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_storeWaitDoesNotCount(self):
        """
        Time spent waiting for the store's reply does not count as idle;
        the timer starts again once the reply is sent.
        """
        store = DeferringStore(self.store)
        connection = self.connect(store, idleTimeout=10)
        connection.send(b"LSTU")
        self.clock.advance(100)
        self.assertOpen(connection)
        self.assertNothingMore(connection)
        store.release()
        self.assertOK(connection.multiline()[0])
        self.clock.advance(9)
        self.assertOpen(connection)
        self.clock.advance(1)
        self.assertERR(connection.line())
        self.assertTrue(connection.transport.disconnecting)

    def test_timerStoppedOnConnectionLost(self):
        """
        A closed connection leaves no idle timer behind.
        """
        connection = self.connect(idleTimeout=10)
        connection.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ConnectionLimitTests(ServerTestCase):
    """
    --max-connections.
    """

    def test_refusedPastCap(self):
        """
        Past the connection cap, a new client gets
        C{-ERR too many connections...} and is disconnected.
        """
        factory = self.factory(maxConnections=2)
        first = Connection(factory)
        Connection(factory)
        third = Connection(factory)
        self.assertTrue(third.line().startswith(b"-ERR too many connections"))
        self.assertTrue(third.transport.disconnecting)
        self.assertEqual(factory.connections, 2)
        third.lose()
        self.assertEqual(factory.connections, 2)
        first.lose()
        self.assertEqual(factory.connections, 1)
        fourth = Connection(factory)
        self.assertTrue(fourth.line().startswith(b"+OK simplemail ready"))

    def test_counterFollowsConnections(self):
        """
        The count of open connections rises with each connection and goes
        back to zero when they close.
        """
        factory = self.factory()
        connections = [Connection(factory) for _ in range(3)]
        self.assertEqual(factory.connections, 3)
        for connection in connections:
            connection.lose()
        self.assertEqual(factory.connections, 0)


class HelperTests(ServerTestCase):
    """
    The test doubles used here keep the store contract.
    """

    def test_deferringStoreProvidesInterface(self):
        """
        The deferring store and its sessions provide the store interfaces.
        """
        store = DeferringStore(self.store)
        self.assertTrue(verifyObject(IMailStore, store))
        self.addUsers("bob")
        d = store.openMailbox("bob")
        store.release()
        self.assertTrue(verifyObject(IMailboxSession, self.successResultOf(d)))


#: The user ids of the model test, one with capitals: ids are
#: case-insensitive.
USERS = ["alice", "Bob", "carol"]
TEXTS = ["hi", "From me", ".dot", "two  words"]

commands = st.one_of(
    st.tuples(st.just("ADDU"), st.sampled_from(USERS)),
    st.tuples(st.just("USER"), st.sampled_from(USERS)),
    st.tuples(st.just("READM")),
    st.tuples(st.just("DELM")),
    st.tuples(st.just("SEND"), st.sampled_from(USERS), st.sampled_from(TEXTS)),
    st.tuples(st.just("DONEU")),
)


class Model:
    """
    What the protocol says a single client sees: users and their messages,
    the selected user, its cursor and its current message.
    """

    def __init__(self):
        self.mailboxes = {}
        self.selected = None
        self.cursor = 0
        self.current = None
        self.serial = 0

    def run(self, command):
        """
        Apply C{command}; return the expected status (C{True} for C{+OK})
        and, for USER and READM, the expected text.
        """
        verb = command[0]
        if verb == "ADDU":
            userid = command[1].lower()
            if userid in self.mailboxes:
                return False, None
            self.mailboxes[userid] = []
            return True, None
        if verb == "USER":
            userid = command[1].lower()
            if userid not in self.mailboxes:
                return False, None
            self.selected, self.cursor, self.current = userid, 0, None
            count = sum(1 for m in self.mailboxes[userid] if not m["deleted"])
            return True, "{} has {} message{}".format(
                userid, count, "" if count == 1 else "s"
            )
        if self.selected is None:
            return False, None
        if verb == "READM":
            for message in self.mailboxes[self.selected]:
                if message["serial"] > self.cursor and not message["deleted"]:
                    self.cursor = message["serial"]
                    self.current = message
                    return True, message
            return False, None
        if verb == "DELM":
            if self.current is None or self.current["deleted"]:
                return False, None
            self.current["deleted"] = True
            return True, None
        if verb == "SEND":
            receiver = command[1].lower()
            if receiver not in self.mailboxes:
                return False, None
            self.serial += 1
            self.mailboxes[receiver].append(
                {
                    "serial": self.serial,
                    "sender": self.selected,
                    "text": command[2],
                    "deleted": False,
                }
            )
            return True, None
        if verb == "DONEU":
            self.selected = None
            return True, None
        raise AssertionError(verb)


class ModelTests(ServerTestCase):
    """
    The server against a model of the protocol.
    """

    @settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(commands, max_size=30))
    def test_repliesMatchModel(self, script):
        """
        For any sequence of commands sent in one packet, every reply's
        status (and USER's count, READM's message) is what the protocol
        says.
        """
        store = MemoryStore(clock=lambda: WHEN)
        connection = self.connect(store)
        connection.send(*[" ".join(command).encode("utf-8") for command in script])
        model = Model()
        for command in script:
            ok, expected = model.run(command)
            if command[0] == "READM":
                status, message = connection.message()
            else:
                status = connection.line()
            if ok:
                self.assertOK(status)
            else:
                self.assertERR(status)
            if ok and command[0] == "USER":
                self.assertEqual(status, b"+OK " + expected.encode("ascii"))
            if ok and command[0] == "READM":
                self.assertEqual(_body(message), expected["text"].encode("utf-8") + b"\n")
                self.assertEqual(
                    _headers(message)[b"From"],
                    expected["sender"].encode("ascii") + b"@localhost",
                )
        self.assertNothingMore(connection)


class WholeBodyTests(SynchronousTestCase):
    """
    A SEND body that arrives whole is taken in one piece, with exactly the
    result of taking it line by line.
    """

    def session(self, *chunks, maxMessageSize=None, bulk=True):
        """
        Feed C{chunks} to a server protocol; with C{bulk=False}, one that
        takes every body line by line.

        @return: the store, and the reply lines.
        """
        store = MemoryStore()
        store.addUser("bob")
        kwargs = {} if maxMessageSize is None else {"maxMessageSize": maxMessageSize}
        proto = MailServerFactory(store, reactor=task.Clock(), **kwargs).buildProtocol(None)
        if not bulk:
            proto._takeBodyLines = lambda buf, start: None
        transport = StringTransport()
        proto.makeConnection(transport)
        for chunk in chunks:
            proto.dataReceived(chunk)
        return store, transport.value().split(b"\r\n")

    def test_sameAsLineByLine(self):
        """
        Whole or a byte at a time, the stored message and the replies are
        the same, dot-stuffing and CRLF undone.
        """
        command = b"USER bob\r\nSEND bob\r\n"
        body = b"..dot\r\nplain\r\n...\r\nlast\r\r\n.\r\nLSTU\r\n"
        whole = self.session(command, body)
        trickled = self.session(command, *[body[i : i + 1] for i in range(len(body))],
                                bulk=False)
        self.assertEqual(whole[1], trickled[1])

        def bodies(store):
            return [m.split(b"\n\n", 1)[1] for m in store.messages("bob")]

        self.assertEqual(bodies(whole[0]), [b".dot\nplain\n..\nlast\n"])
        self.assertEqual(bodies(trickled[0]), bodies(whole[0]))
        self.assertIn(b"+OK 1 users", whole[1])

    def test_wholeBodyAfterTheReply(self):
        """
        A short body sent whole after the reply to SEND (as a client that
        waits for it does) is taken in one piece, not line by line.
        """
        lines = []
        realAdd = server.Body.add
        self.patch(server.Body, "add", lambda body, line: (lines.append(line),
                                                            realAdd(body, line)))
        store, replies = self.session(b"USER bob\r\n", b"SEND bob\r\n",
                                      b"one\r\n..two\r\nthree\r\n.\r\n")
        self.assertEqual(lines, [])
        self.assertEqual([m.split(b"\n\n", 1)[1] for m in store.messages("bob")],
                         [b"one\n.two\nthree\n"])

    def test_bigBodyInOneBurst(self):
        """
        A big body arriving in one burst, its "." line far away, is taken in
        time linear in its size: it is not searched again for its end at
        every line.  (2 MiB: a fraction of a second; searching at every
        line scans about 30 GB, tens of seconds.  The bound is far from
        both.)
        """
        lines = [b"%075d\r\n" % i for i in range(27500)]
        lines[100] = b".starts with a dot\r\n"
        burst = b"".join(lines) + b".\r\nLSTU\r\n"
        started = time.process_time()
        store, replies = self.session(b"USER bob\r\nSEND bob\r\n", burst)
        self.assertLess(time.process_time() - started, 5)
        (stored,) = store.messages("bob")
        body = stored.split(b"\n\n", 1)[1]
        self.assertEqual(len(body), len(burst) - len(b".\r\nLSTU\r\n") - 27500 - 1)
        self.assertIn(b"\nstarts with a dot\n", body)
        self.assertIn(b"+OK 1 users", replies)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([b"", b".", b"..", b"From ", b"x", b"\r", b".\r"]),
                st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
                st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]),
            ),
            max_size=15,
        ),
        st.lists(st.integers(min_value=0, max_value=400), max_size=6),
        st.sampled_from([None, 60]),
    )
    def test_anyChunksSameAsLineByLine(self, lines, cuts, limit):
        """
        However a body is cut into pieces as it arrives, what is stored,
        the replies and the size limit's verdict are those of taking it
        line by line.
        """
        body = b"".join(start + middle + end for start, middle, end in lines)
        stream = b"SEND bob\r\n" + body + b".\r\nLSTU\r\n"
        cuts = sorted({min(c, len(stream)) for c in cuts})
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
        inPieces = self.session(b"USER bob\r\n", *chunks, maxMessageSize=limit)
        trickled = self.session(b"USER bob\r\n", *[stream[i : i + 1] for i in range(len(stream))],
                                maxMessageSize=limit, bulk=False)

        def bodies(store):
            return [m.split(b"\n\n", 1)[1] for m in store.messages("bob")]

        self.assertEqual(bodies(inPieces[0]), bodies(trickled[0]))
        self.assertEqual(inPieces[1], trickled[1])

    def test_emptyBodyThenAnotherSend(self):
        """
        An empty body right before another pipelined SEND is not mistaken
        for the start of a longer one.
        """
        store, replies = self.session(
            b"USER bob\r\nSEND bob\r\n", b".\r\nSEND bob\r\nx\r\n.\r\n"
        )
        self.assertEqual(
            [m.split(b"\n\n", 1)[1] for m in store.messages("bob")], [b"", b"x\n"]
        )
