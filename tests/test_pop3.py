"""
Tests for L{twisted_mail.doors.pop3.server}: POP3 as a client sees it on the wire, driven
through an in-memory transport, a fake clock and the in-memory store.
"""

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.doors import connections
from twisted_mail.doors.pop3 import server as pop3
from twisted_mail.doors.pop3 import mailbox as pop3mailbox
from twisted_mail import errors, wire
from twisted_mail.logins.portal import LoginAttempt, MailRealm
from twisted_mail.mail.mime import popSize
from twisted_mail.stores.memory import MemoryStore

ADDRESS = IPv4Address("TCP", "192.0.2.7", 40000)
WHEN = 1709211909
LOGIN_FAILED = b"-ERR [AUTH] invalid user name or password\r\n"


class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} that records C{startTLS}.
    """

    tlsStarted = None

    def startTLS(self, contextFactory):
        self.tlsStarted = contextFactory

    def abortConnection(self):
        self.loseConnection()
        self.aborted = True


class TLSClosingTransport(TLSStringTransport):
    """
    A L{TLSStringTransport} that, once TLS is started, closes as Twisted's
    TCP transport does then: C{loseConnection} hands the close to the TLS
    layer (close_notify) and the transport's C{disconnecting} stays False
    until the connection is really gone; C{abortConnection} ends it.
    """

    closeRequested = False

    def loseConnection(self):
        if self.tlsStarted is None:
            return TLSStringTransport.loseConnection(self)
        self.closeRequested = True

    def abortConnection(self):
        TLSStringTransport.loseConnection(self)
        self.aborted = True


class Connection:
    """
    A POP3 server protocol on a transport in memory; the replies it writes
    are read with L{output}, pulling any reply being sent to its end.
    """

    def __init__(self, factory, transportFactory=TLSStringTransport):
        self.factory = factory
        self.protocol = factory.buildProtocol(ADDRESS)
        self.transport = transportFactory(peerAddress=ADDRESS)
        self.protocol.makeConnection(self.transport)
        self._read = 0

    def pump(self, limit=100000):
        for _ in range(limit):
            producer = self.transport.producer
            if producer is None:
                return
            producer.resumeProducing()
        raise AssertionError("reply never ended")

    def send(self, *lines):
        self.protocol.dataReceived(b"".join(line + b"\r\n" for line in lines))
        self.pump()

    def output(self):
        self.pump()
        data = self.transport.value()[self._read:]
        self._read += len(data)
        return data

    def command(self, *lines):
        """
        Send C{lines} in one packet and return everything answered.
        """
        self.send(*lines)
        return self.output()

    def lose(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))


class _RecordingSession:
    """
    Wraps a mailbox session, recording the calls that matter and letting a
    test hold QUIT's delete.
    """

    def __init__(self, session, log):
        self._session = session
        self._log = log
        self.holdDelete = None

    def __getattr__(self, name):
        return getattr(self._session, name)

    def deleteMessages(self, ids):
        self._log.append(("delete", list(ids)))
        if self.holdDelete is not None:
            d = self.holdDelete
            return d.addCallback(lambda _: self._session.deleteMessages(ids))
        return self._session.deleteMessages(ids)

    def close(self):
        self._log.append(("close",))
        return self._session.close()


class RecordingStore(MemoryStore):
    """
    A L{MemoryStore} whose sessions record their deletes and closes.
    """

    def __init__(self, **kw):
        MemoryStore.__init__(self, **kw)
        self.calls = []
        self.sessions = []

    def openMailbox(self, userid):
        def wrap(session):
            recorded = _RecordingSession(session, self.calls)
            self.sessions.append(recorded)
            return recorded

        return MemoryStore.openMailbox(self, userid).addCallback(wrap)


class POP3TestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.store = RecordingStore(clock=lambda: WHEN)
        self.store.addUser("bob")
        self.store.addUser("alice")

    def factory(self, **kw):
        kw.setdefault("idleTimeout", 600)
        kw.setdefault("maxConnections", 10)
        return pop3.POP3Factory(self.store, reactor=self.clock, **kw)

    def deliver(self, *bodies, to="bob"):
        for body in bodies:
            self.successResultOf(self.store.deliver("alice", to, body))

    def connect(self, **kw):
        connection = Connection(self.factory(**kw))
        connection.output()
        return connection

    def login(self, connection=None, user=b"bob", password=b"x"):
        connection = connection or self.connect()
        reply = connection.command(b"USER " + user, b"PASS " + password)
        self.assertTrue(reply.startswith(b"+OK send PASS\r\n+OK "), reply)
        return connection

    def texts(self, user="bob"):
        return self.store.messages(user)


class AuthorizationTests(POP3TestCase):
    def test_greeting(self):
        """
        A client is greeted with C{+OK} and no APOP timestamp.
        """
        c = Connection(self.factory())
        self.assertEqual(c.output(), b"+OK simplemail POP3 server ready\r\n")

    def test_capabilities(self):
        """
        CAPA lists TOP, UIDL, USER, PIPELINING and RESP-CODES, and no STLS
        without a certificate.
        """
        reply = self.connect().command(b"CAPA")
        lines = reply.split(b"\r\n")
        self.assertEqual(lines[0], b"+OK capability list follows")
        self.assertEqual(lines[-2:], [b".", b""])
        for capability in (b"TOP", b"UIDL", b"USER", b"PIPELINING", b"RESP-CODES"):
            self.assertIn(capability, lines)
        self.assertNotIn(b"STLS", lines)
        self.assertNotIn(b"SASL", b" ".join(lines))

    def test_loginWithoutPasswords(self):
        """
        Without passwords any password opens an existing user's mailbox, and
        the reply counts its messages and octets.
        """
        self.deliver(b"one\n", b"two\n")
        c = self.connect()
        reply = c.command(b"USER Bob", b"PASS anything at all")
        octets = sum(popSize(t) for t in self.texts())
        self.assertEqual(
            reply,
            b"+OK send PASS\r\n+OK bob has 2 messages (%d octets)\r\n" % octets,
        )

    def test_unknownUser(self):
        """
        A user that does not exist, or a malformed name, gets the one login
        failure text, and the connection keeps working.
        """
        c = self.connect()
        self.assertEqual(c.command(b"USER carol", b"PASS x")[15:], LOGIN_FAILED)
        self.assertEqual(c.command(b"USER ../etc", b"PASS x")[15:], LOGIN_FAILED)
        self.assertFalse(c.transport.disconnecting)
        c = self.connect()
        self.assertEqual(c.command(b"USER \xff\xfe", b"PASS x")[15:], LOGIN_FAILED)
        self.assertTrue(c.command(b"CAPA").startswith(b"+OK"))

    def test_passBeforeUser(self):
        """
        PASS before USER is refused and the connection keeps working.
        """
        c = self.connect()
        self.assertEqual(c.command(b"PASS secret"), b"-ERR send USER first\r\n")
        self.login(c)

    def test_userForgottenAfterFailedPass(self):
        """
        After a failed PASS, a new USER is needed.
        """
        c = self.connect()
        c.command(b"USER carol", b"PASS x")
        self.assertEqual(c.command(b"PASS x"), b"-ERR send USER first\r\n")

    def test_transactionCommandsBeforeLogin(self):
        """
        Transaction commands before the login get a clear C{-ERR}.
        """
        c = self.connect()
        for line in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"UIDL", b"TOP 1 1", b"RSET"):
            self.assertEqual(c.command(line), b"-ERR log in first (USER and PASS)\r\n")
        self.login(c)

    def test_unknownAndGarbage(self):
        """
        Unknown commands, empty lines and binary garbage get C{-ERR unknown
        command}; the connection keeps working.
        """
        c = self.connect()
        for line in (b"XYZZY", b"", b"\x00\xff\xfe garbage \x80", b"LAST", b"RPOP bob"):
            self.assertEqual(c.command(line), b"-ERR unknown command\r\n")
        self.login(c)

    def test_apopAndAuthNotOffered(self):
        """
        APOP and AUTH are refused with a pointer to USER and PASS.
        """
        c = self.connect()
        self.assertEqual(
            c.command(b"APOP bob 0123456789abcdef"),
            b"-ERR APOP is not offered: use USER and PASS\r\n",
        )
        self.assertEqual(
            c.command(b"AUTH PLAIN"), b"-ERR AUTH is not offered: use USER and PASS\r\n"
        )

    def test_wrongArgumentCount(self):
        """
        A command with the wrong number of arguments gets C{-ERR}.
        """
        c = self.connect()
        self.assertEqual(c.command(b"USER"), b"-ERR USER takes 1 argument\r\n")
        self.assertEqual(c.command(b"USER a b"), b"-ERR USER takes 1 argument\r\n")
        self.assertEqual(c.command(b"CAPA x"), b"-ERR CAPA takes 0 arguments\r\n")

    def test_quitBeforeLogin(self):
        """
        QUIT before the login says goodbye and closes the connection.
        """
        c = self.connect()
        self.assertEqual(c.command(b"QUIT"), b"+OK bye\r\n")
        self.assertTrue(c.transport.disconnecting)

    def test_commandsCaseInsensitive(self):
        """
        Commands are case-insensitive.
        """
        self.deliver(b"one\n")
        c = self.connect()
        self.assertTrue(c.command(b"user bob", b"pass x").endswith(b"1 message (%d octets)\r\n"
                                                                    % popSize(self.texts()[0])))
        self.assertTrue(c.command(b"stat").startswith(b"+OK 1 "))


class PasswordTests(POP3TestCase):
    def setUp(self):
        POP3TestCase.setUp(self)
        self.checker = InMemoryUsernamePasswordDatabaseDontUse(bob=b"secret")
        self.attempts = []
        original = self.checker.requestAvatarId

        def record(credentials):
            self.attempts.append(credentials)
            return original(credentials)

        self.checker.requestAvatarId = record
        self.portal = Portal(MailRealm(), [self.checker])

    def test_rightPassword(self):
        """
        The right password logs in, through the portal, with a
        L{LoginAttempt} carrying the client's address.
        """
        c = self.connect(portal=self.portal)
        self.assertEqual(
            c.command(b"USER bob", b"PASS secret"),
            b"+OK send PASS\r\n+OK bob has 0 messages (0 octets)\r\n",
        )
        [attempt] = self.attempts
        self.assertIsInstance(attempt, LoginAttempt)
        self.assertEqual(
            (attempt.username, attempt.password, attempt.peer),
            (b"bob", b"secret", "192.0.2.7"),
        )

    def test_passwordWithSpaces(self):
        """
        PASS takes the rest of the line: a password may hold spaces.
        """
        self.checker.addUser(b"alice", b"two words")
        c = self.connect(portal=self.portal)
        self.assertTrue(c.command(b"USER alice", b"PASS two words").endswith(b"(0 octets)\r\n"))

    def test_oneTextForEveryFailure(self):
        """
        A wrong password, an unknown user and a user with a password but no
        mailbox get the same C{-ERR}; the third failure closes the
        connection.
        """
        self.checker.addUser(b"ghost", b"boo")
        c = self.connect(portal=self.portal)
        self.assertEqual(c.command(b"USER bob", b"PASS wrong")[15:], LOGIN_FAILED)
        self.assertEqual(c.command(b"USER nobody", b"PASS x")[15:], LOGIN_FAILED)
        self.assertFalse(c.transport.disconnecting)
        self.assertEqual(
            c.command(b"USER ghost", b"PASS boo")[15:],
            LOGIN_FAILED[:-2] + b"; closing\r\n",
        )
        self.assertTrue(c.transport.disconnecting)

    def test_loginFailuresLogged(self):
        """
        With passwords, a failed login is logged once, by the login throttle
        in front of the checker, not again by POP3; without passwords, POP3
        logs an unknown user with the client address.
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        c = self.connect(portal=self.portal)
        c.command(b"USER bob", b"PASS wrong")
        self.assertEqual(
            [e for e in events if "login failed" in e.get("log_format", "")], [])
        c = self.connect()
        c.command(b"USER nobody", b"PASS x")
        failed = [e for e in events if "login failed" in e.get("log_format", "")]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["user"], "nobody")
        self.assertEqual(failed[0]["peer"], "192.0.2.7:40000")

    def test_loginInProgressHoldsPipelinedCommands(self):
        """
        Commands pipelined after PASS wait for the login and are answered
        after it, in order.
        """
        held = defer.Deferred()
        self.checker.requestAvatarId = lambda credentials: held
        self.deliver(b"one\n")
        c = self.connect(portal=self.portal)
        self.assertEqual(c.command(b"USER bob", b"PASS secret", b"STAT", b"NOOP"),
                         b"+OK send PASS\r\n")
        held.callback(b"bob")
        size = popSize(self.texts()[0])
        self.assertEqual(
            c.output(),
            b"+OK bob has 1 message (%d octets)\r\n+OK 1 %d\r\n+OK\r\n" % (size, size),
        )


class TransactionTests(POP3TestCase):
    def test_statListUidl(self):
        """
        STAT, LIST and UIDL agree with the mailbox view's sizes and ids.
        """
        self.deliver(b"one\n", b"two\n.dot\n", b"three")
        c = self.login()
        session = self.store.sessions[0]
        summaries = self.successResultOf(session.listMessages()).messages
        sizes = [s.size for s in summaries]
        self.assertEqual(c.command(b"STAT"), b"+OK 3 %d\r\n" % sum(sizes))
        self.assertEqual(
            c.command(b"LIST"),
            b"+OK 3 messages (%d octets)\r\n" % sum(sizes)
            + b"".join(b"%d %d\r\n" % (i + 1, s) for i, s in enumerate(sizes))
            + b".\r\n",
        )
        self.assertEqual(c.command(b"LIST 2"), b"+OK 2 %d\r\n" % sizes[1])
        self.assertEqual(
            c.command(b"UIDL"),
            b"+OK unique-id listing follows\r\n"
            + b"".join(
                b"%d %s\r\n" % (i + 1, s.id.encode()) for i, s in enumerate(summaries)
            )
            + b".\r\n",
        )
        self.assertEqual(c.command(b"UIDL 3"), b"+OK 3 %s\r\n" % summaries[2].id.encode())

    def test_retr(self):
        """
        RETR sends the message as READM shows it, CRLF line ends, dot-stuffed,
        and its octets before stuffing are the LIST size.
        """
        self.deliver(b".starts with a dot\nmiddle\n..two dots\n.\nlast")
        c = self.login()
        text = self.texts()[0]
        reply = c.command(b"RETR 1")
        head, _, rest = reply.partition(b"\r\n")
        self.assertEqual(head, b"+OK %d octets" % popSize(text))
        self.assertTrue(rest.endswith(b"\r\n.\r\n"))
        body = rest[: -len(b".\r\n")]
        unstuffed = b"\r\n".join(wire.unstuff(line) for line in body.split(b"\r\n"))
        self.assertTrue(text.endswith(b"last\n"))
        self.assertEqual(unstuffed, text.replace(b"\n", b"\r\n"))
        self.assertEqual(len(unstuffed), popSize(text))
        self.assertIn(b"\r\n..starts with a dot\r\n", body)
        self.assertIn(b"\r\n...two dots\r\n..\r\nlast\r\n", body)

    def test_retrStuffsDotsAtEveryChunkBoundary(self):
        """
        A line starting with a dot is stuffed wherever it falls in a large
        message (twisted's own RETR misses those at its 16 KiB chunk
        boundaries).
        """
        line = b"x" * 1023 + b"\n"
        body = (line * 15 + b"." + line[1:]) * 40
        self.deliver(body)
        c = self.login()
        text = self.texts()[0]
        reply = c.command(b"RETR 1")
        lines = reply.split(b"\r\n")[1:-1]
        self.assertEqual(lines[-1], b".")  # the end marker only
        data = lines[:-1]
        self.assertEqual([l for l in data if l.startswith(b".")],
                         [b".." + b"x" * 1022] * 40)
        self.assertEqual(len(b"\r\n".join(wire.unstuff(l) for l in data)) + 2,
                         popSize(text))

    def test_largeMessageSentAPieceAtATime(self):
        """
        A large message is written a batch at a time as the transport asks
        for more, not formatted whole.
        """
        self.deliver(b"y" * 999 + b"\n" * 1 + (b"z" * 999 + b"\n") * 3000)
        c = self.login()
        c.protocol.dataReceived(b"RETR 1\r\n")
        producer = c.transport.producer
        self.assertIsNotNone(producer)
        producer.resumeProducing()
        first = len(c.transport.value())
        self.assertLess(first, 3 * connections.BATCH_SIZE)
        c.pump()
        self.assertGreater(len(c.transport.value()), 3000 * 1000)

    def test_retrDoesNotCopyTheMessage(self):
        """
        Sending an 8 MiB message allocates a few batches, not a second copy
        of the message (the transport here discards what it is given).
        """
        import tracemalloc

        self.deliver((b"." + b"w" * 78 + b"\n") * (8 * 2**20 // 80))
        c = self.login()
        c.transport.write = c.transport.writeSequence = lambda data: None
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        c.protocol.dataReceived(b"RETR 1\r\n")
        c.pump()
        _, peak = tracemalloc.get_traced_memory()
        self.assertIsNone(c.transport.producer)
        self.assertLess(peak - before, 8 * connections.BATCH_SIZE)

    def test_retrReadsAhead(self):
        """
        RETR of every message in order asks the store a batch at a time,
        each message is sent as it is, and a RETR out of order reads only
        the message asked.
        """
        from twisted_mail.doors.pop3.server import READ_AHEAD_COUNT

        from .imaphelp import recordBatchedReads

        asked = recordBatchedReads(self)
        count = READ_AHEAD_COUNT + 8
        self.deliver(*[b"message %d\n" % n for n in range(count)])
        c = self.login()
        for n in range(count):
            reply = c.command(b"RETR %d" % (n + 1))
            self.assertTrue(reply.startswith(b"+OK"), reply)
            self.assertTrue(reply.endswith(b"\r\nmessage %d\r\n.\r\n" % n), reply[-40:])
        self.assertEqual(asked, [READ_AHEAD_COUNT, 8])
        del asked[:]
        c.command(b"RETR 5")
        c.command(b"TOP 3 0")
        self.assertEqual(asked, [1, 1])

    def test_top(self):
        """
        TOP n k sends the headers, the blank line and k lines of the body.
        """
        self.deliver(b"line 1\n.line 2\nline 3\n")
        c = self.login()
        text = self.texts()[0]
        headers = text.split(b"\n\n")[0].replace(b"\n", b"\r\n")
        self.assertEqual(
            c.command(b"TOP 1 0"),
            b"+OK top of message follows\r\n" + headers + b"\r\n\r\n.\r\n",
        )
        self.assertEqual(
            c.command(b"TOP 1 2"),
            b"+OK top of message follows\r\n"
            + headers
            + b"\r\n\r\nline 1\r\n..line 2\r\n.\r\n",
        )
        self.assertTrue(c.command(b"TOP 1 99").endswith(b"line 3\r\n.\r\n"))
        self.assertEqual(c.command(b"TOP 1 x"), b"-ERR bad line count: x\r\n")
        self.assertEqual(c.command(b"TOP 1 -1"), b"-ERR bad line count: -1\r\n")

    def test_badMessageNumbers(self):
        """
        Unknown or malformed message numbers get C{-ERR}; the connection
        keeps working.
        """
        self.deliver(b"one\n")
        c = self.login()
        for line in (b"RETR 2", b"LIST 99", b"UIDL 2", b"DELE 2", b"TOP 5 1"):
            self.assertEqual(c.command(line), b"-ERR no such message\r\n")
        for line, arg in ((b"RETR 0", b"0"), (b"LIST -1", b"-1"), (b"DELE abc", b"abc"),
                          (b"RETR 9999999999", b"9999999999")):
            self.assertEqual(c.command(line), b"-ERR bad message number: %s\r\n" % arg)
        self.assertEqual(c.command(b"RETR"), b"-ERR RETR takes 1 argument\r\n")
        self.assertTrue(c.command(b"STAT").startswith(b"+OK 1 "))

    def test_noopAndLoginCommandsAfterLogin(self):
        """
        NOOP answers C{+OK} once logged in, and before only C{-ERR} (RFC
        1939 allows it in the transaction state, as Dovecot does); USER,
        PASS and STLS after the login are refused.
        """
        self.assertEqual(self.connect().command(b"NOOP"),
                         b"-ERR log in first (USER and PASS)\r\n")
        c = self.login()
        self.assertEqual(c.command(b"NOOP"), b"+OK\r\n")
        for line in (b"USER alice", b"PASS x", b"STLS"):
            self.assertEqual(c.command(line), b"-ERR already logged in\r\n")

    def test_pipelined(self):
        """
        Commands sent in one packet are answered in order.
        """
        self.deliver(b"one\n", b"two\n")
        c = self.connect()
        reply = c.command(b"USER bob", b"PASS x", b"STAT", b"RETR 2", b"DELE 1",
                          b"LIST", b"QUIT")
        t1, t2 = self.texts() if len(self.texts()) == 2 else (None, None)
        lines = reply.split(b"\r\n")
        self.assertEqual(lines[0], b"+OK send PASS")
        self.assertTrue(lines[1].startswith(b"+OK bob has 2 messages"))
        self.assertTrue(lines[2].startswith(b"+OK 2 "))
        self.assertTrue(lines[3].endswith(b" octets"))
        self.assertIn(b"+OK message 1 deleted", lines)
        self.assertIn(b"+OK 1 message deleted, bye", lines)
        self.assertEqual(lines[-2:], [b"+OK 1 message deleted, bye", b""])
        self.assertEqual(self.texts(), [t2] if t2 else self.texts())
        self.assertEqual(len(self.texts()), 1)


class DeleteTests(POP3TestCase):
    def test_quitAfterIdleNoticeUnderTLSDeletesNothing(self):
        """
        After STLS, a QUIT that arrives once the server has said it is
        closing for idleness is ignored: the marked message stays, and the
        connection is aborted if TLS does not close it within the grace.
        """
        self.deliver(b"one\n")
        c = Connection(self.factory(tlsContextFactory=object()),
                       transportFactory=TLSClosingTransport)
        c.output()
        self.assertEqual(c.command(b"STLS"), b"+OK begin TLS negotiation\r\n")
        self.login(c)
        self.assertEqual(c.command(b"DELE 1"), b"+OK message 1 deleted\r\n")
        self.clock.advance(600)
        self.assertEqual(c.output(), b"-ERR idle for too long, closing\r\n")
        self.assertTrue(c.transport.closeRequested)
        self.assertEqual(c.command(b"QUIT"), b"")
        self.assertEqual(len(self.texts()), 1)
        self.assertNotIn("delete", [call[0] for call in self.store.calls])
        self.assertFalse(getattr(c.transport, "aborted", False))
        self.clock.advance(pop3.POP3Server.closeGrace)
        self.assertTrue(c.transport.aborted)
        c.lose()
        self.assertEqual(len(self.texts()), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deleMarksOnly(self):
        """
        DELE marks a message: STAT, LIST and UIDL leave it out, RETR and a
        second DELE refuse it, and the store still holds it.
        """
        self.deliver(b"one\n", b"two\n")
        c = self.login()
        size2 = popSize(self.texts()[1])
        self.assertEqual(c.command(b"DELE 1"), b"+OK message 1 deleted\r\n")
        self.assertEqual(c.command(b"STAT"), b"+OK 1 %d\r\n" % size2)
        self.assertEqual(c.command(b"LIST"),
                         b"+OK 1 message (%d octets)\r\n2 %d\r\n.\r\n" % (size2, size2))
        self.assertEqual(c.command(b"UIDL").count(b"\r\n"), 3)
        self.assertEqual(c.command(b"RETR 1"), b"-ERR message 1 already deleted\r\n")
        self.assertEqual(c.command(b"DELE 1"), b"-ERR message 1 already deleted\r\n")
        self.assertEqual(len(self.texts()), 2)
        self.assertNotIn("delete", [call[0] for call in self.store.calls])

    def test_rsetUnmarks(self):
        """
        RSET unmarks every message, and QUIT then deletes nothing.
        """
        self.deliver(b"one\n", b"two\n")
        c = self.login()
        c.command(b"DELE 1", b"DELE 2")
        octets = sum(popSize(t) for t in self.texts())
        self.assertEqual(c.command(b"RSET"),
                         b"+OK maildrop has 2 messages (%d octets)\r\n" % octets)
        self.assertEqual(c.command(b"QUIT"), b"+OK 0 messages deleted, bye\r\n")
        self.assertEqual(len(self.texts()), 2)

    def test_quitDeletesMarked(self):
        """
        QUIT deletes the marked messages, then ends the session, then says
        C{+OK}; the unmarked ones stay.
        """
        self.deliver(b"one\n", b"two\n", b"three\n")
        c = self.login()
        keep = self.texts()[1]
        c.command(b"DELE 1", b"DELE 3")
        self.assertEqual(c.command(b"QUIT"), b"+OK 2 messages deleted, bye\r\n")
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(self.texts(), [keep])
        self.assertEqual([call[0] for call in self.store.calls], ["delete", "close"])

    def test_quitAnswersOnlyWhenDurable(self):
        """
        QUIT's C{+OK} waits until the store's delete has fired.
        """
        self.deliver(b"one\n")
        c = self.login()
        held = self.store.sessions[0].holdDelete = defer.Deferred()
        c.command(b"DELE 1")
        self.assertEqual(c.command(b"QUIT", b"NOOP"), b"")
        self.assertEqual(len(self.texts()), 1)
        held.callback(None)
        self.assertEqual(c.output(), b"+OK 1 message deleted, bye\r\n")
        self.assertEqual(self.texts(), [])

    def test_quitDeleteFails(self):
        """
        When the store cannot delete, QUIT answers C{-ERR}, nothing is
        deleted, and the session still ends.
        """
        self.deliver(b"one\n")
        c = self.login()
        c.command(b"DELE 1")
        self.store.failNext = errors.TemporaryFailure()
        self.assertEqual(
            c.command(b"QUIT"),
            b"-ERR [SYS/TEMP] could not delete the messages; none deleted\r\n",
        )
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(len(self.texts()), 1)
        self.assertEqual(self.store.calls[-1], ("close",))

    def test_lostConnectionDeletesNothing(self):
        """
        A connection lost before QUIT deletes nothing and ends the session.
        """
        self.deliver(b"one\n", b"two\n")
        c = self.login()
        c.command(b"DELE 1", b"DELE 2")
        c.lose()
        self.assertEqual(len(self.texts()), 2)
        self.assertEqual(self.store.calls, [("close",)])
        self.assertEqual(c.factory.connections, 0)

    def test_lostDuringQuitStillDeletes(self):
        """
        QUIT begun is finished even if the connection is lost before its
        reply: the session ends once, after the delete.
        """
        self.deliver(b"one\n")
        c = self.login()
        held = self.store.sessions[0].holdDelete = defer.Deferred()
        c.command(b"DELE 1", b"QUIT")
        c.lose()
        held.callback(None)
        self.assertEqual(self.texts(), [])
        self.assertEqual([call[0] for call in self.store.calls], ["delete", "close"])

    def test_deletedByAnotherDoor(self):
        """
        A message deleted by another session after the login gets a clean
        C{-ERR} on RETR, and QUIT still deletes what it marked.
        """
        self.deliver(b"one\n", b"two\n")
        c = self.login()
        other = self.successResultOf(self.store.openMailbox("bob"))
        first = self.successResultOf(other.listMessages()).messages[0].id
        self.successResultOf(other.deleteMessages([first]))
        self.successResultOf(other.close())
        self.assertEqual(
            c.command(b"RETR 1"),
            b"-ERR no such message: deleted by another session\r\n",
        )
        self.assertTrue(c.command(b"RETR 2").startswith(b"+OK"))
        c.command(b"DELE 1", b"DELE 2")
        self.assertEqual(c.command(b"QUIT"), b"+OK 1 message deleted, bye\r\n")
        self.assertEqual(self.texts(), [])

    def test_endSessionsAtStop(self):
        """
        When the server stops, open sessions end without deleting, and the
        client is told and closed.
        """
        self.deliver(b"one\n")
        c = self.login()
        c.command(b"DELE 1")
        self.successResultOf(c.factory.endSessions())
        self.assertEqual(self.store.calls, [("close",)])
        self.assertEqual(len(self.texts()), 1)
        self.assertEqual(
            c.command(), b"-ERR [SYS/TEMP] server stopping, closing\r\n")
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(c.command(b"STAT"), b"")


class PureTests(SynchronousTestCase):
    def test_topOfMessage(self):
        """
        topOfMessage keeps the headers, the blank line and k body lines.
        """
        text = b"A: 1\nB: 2\n\nl1\nl2\nl3\n"
        self.assertEqual(pop3mailbox.topOfMessage(text, 0), b"A: 1\nB: 2\n\n")
        self.assertEqual(pop3mailbox.topOfMessage(text, 2), b"A: 1\nB: 2\n\nl1\nl2\n")
        self.assertEqual(pop3mailbox.topOfMessage(text, 9), text)
        self.assertEqual(pop3mailbox.topOfMessage(b"\nbody\nmore\n", 1), b"\nbody\n")
        self.assertEqual(pop3mailbox.topOfMessage(b"A: 1\n", 3), b"A: 1\n")

    def test_checkOptions(self):
        """
        The TLS options need --pop3, and the key needs the certificate.
        """
        with self.assertRaises(ValueError):
            pop3.checkPOP3Options([], "cert.pem")
        with self.assertRaises(ValueError):
            pop3.checkPOP3Options(["tcp:110"], None, "key.pem")
        with self.assertRaises(ValueError) as e:
            pop3.checkPOP3Options(["tcp:110"], "/nonexistent/cert.pem")
        self.assertIn("cannot read /nonexistent/cert.pem", str(e.exception))


class ReadMarksSeenTests(POP3TestCase):
    """
    RETR marks a message C{\\Seen} (MAILBOX.md); TOP does not.
    """

    def flags(self):
        self.clock.advance(1)
        view = self.successResultOf(MemoryStore.openMailbox(self.store, "bob"))
        return [sorted(m.flags) for m in self.successResultOf(view.listMessages()).messages]

    def test_retrMarksSeenTopDoesNot(self):
        """After TOP 1 and RETR 2 only the second message is read."""
        self.deliver(b"one\n", b"two\n")
        c = self.login()
        self.assertTrue(c.command(b"TOP 1 0").startswith(b"+OK"))
        self.assertTrue(c.command(b"RETR 2").startswith(b"+OK"))
        self.assertEqual(self.flags(), [[], ["\\Seen"]])
        self.assertTrue(c.command(b"QUIT").startswith(b"+OK"))
        self.assertEqual(self.flags(), [[], ["\\Seen"]])
