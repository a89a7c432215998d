"""
Tests for L{twisted_mail.console.client}: the client protocol against an in-memory
transport, bytes sent and replies fed by hand.
"""

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.console.client import (
    MailClientProtocol,
    MessageLine,
    NoSendInProgress,
    ServerConnectionLost,
)
from twisted_mail.errors import ProtocolError, ServerError


class ClientTestsMixin:
    """
    A connected L{MailClientProtocol} and helpers to talk to it.
    """

    def connect(self, greet=True):
        self.client = MailClientProtocol()
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)
        if greet:
            self.receive(b"+OK simplemail ready\r\n")
            self.successResultOf(self.client.greeting)

    def receive(self, data):
        self.client.dataReceived(data)

    def sent(self):
        """
        The bytes sent since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self, reason=ConnectionDone):
        self.client.connectionLost(Failure(reason()))


class GreetingTests(ClientTestsMixin, SynchronousTestCase):
    def test_greetingText(self):
        """
        The greeting fires with the server's text after C{+OK}.
        """
        self.connect(greet=False)
        self.receive(b"+OK simplemail ready, hello\r\n")
        self.assertEqual(
            self.successResultOf(self.client.greeting), "simplemail ready, hello"
        )

    def test_commandsWaitForGreeting(self):
        """
        A command issued before the greeting is sent only once the greeting
        has come.
        """
        self.connect(greet=False)
        d = self.client.listUsers()
        self.assertEqual(self.sent(), b"")
        self.receive(b"+OK simplemail ready\r\n")
        self.assertEqual(self.sent(), b"LSTU\r\n")
        self.assertNoResult(d)

    def test_refusedGreeting(self):
        """
        A C{-ERR} greeting fails with L{ServerError} holding the server's
        text, and the client hangs up.
        """
        self.connect(greet=False)
        self.receive(b"-ERR too many connections\r\n")
        failure = self.failureResultOf(self.client.greeting, ServerError)
        self.assertEqual(str(failure.value), "too many connections")
        self.assertTrue(self.transport.disconnecting)

    def test_garbageGreeting(self):
        """
        A greeting that is not C{+OK}/C{-ERR} (another service on the port)
        fails with L{ProtocolError} and the client hangs up.
        """
        self.connect(greet=False)
        self.receive(b"SSH-2.0-OpenSSH_9.6\r\n")
        self.failureResultOf(self.client.greeting, ProtocolError)
        self.assertTrue(self.transport.disconnecting)

    def test_lostBeforeGreeting(self):
        """
        A connection that ends before the greeting fails the greeting and
        every queued command with L{ServerConnectionLost}.
        """
        self.connect(greet=False)
        d = self.client.listUsers()
        self.lose()
        self.failureResultOf(self.client.greeting, ServerConnectionLost)
        self.failureResultOf(d, ServerConnectionLost)


class CommandTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.connect()

    def test_listUsers(self):
        """
        C{listUsers} sends C{LSTU} and fires with the user ids as strings.
        """
        d = self.client.listUsers()
        self.assertEqual(self.sent(), b"LSTU\r\n")
        self.receive(b"+OK 2 users\r\nalice\r\nbob\r\n.\r\n")
        self.assertEqual(self.successResultOf(d), ["alice", "bob"])

    def test_listUsersEmpty(self):
        """
        An empty user list is an empty list.
        """
        d = self.client.listUsers()
        self.receive(b"+OK\r\n.\r\n")
        self.assertEqual(self.successResultOf(d), [])

    def test_multilineInPieces(self):
        """
        A multi-line reply split across reads, at any byte, is put together.
        """
        d = self.client.listUsers()
        for byte in b"+OK\r\nalice\r\nbob\r\n.\r\n":
            self.assertNoResult(d)
            self.receive(bytes([byte]))
        self.assertEqual(self.successResultOf(d), ["alice", "bob"])

    def test_bareLineFeeds(self):
        """
        Replies ending with a bare LF are read like CRLF ones.
        """
        d = self.client.listUsers()
        self.receive(b"+OK\nalice\nbob\n.\n")
        self.assertEqual(self.successResultOf(d), ["alice", "bob"])

    def test_addUser(self):
        """
        C{addUser} sends C{ADDU <id>} and fires with the server's text.
        """
        d = self.client.addUser("bob")
        self.assertEqual(self.sent(), b"ADDU bob\r\n")
        self.receive(b"+OK user bob created\r\n")
        self.assertEqual(self.successResultOf(d), "user bob created")

    def test_serverError(self):
        """
        C{-ERR <text>} fails the command with L{ServerError} whose text is
        the server's.
        """
        d = self.client.selectUser("carol")
        self.assertEqual(self.sent(), b"USER carol\r\n")
        self.receive(b"-ERR no such user: carol\r\n")
        failure = self.failureResultOf(d, ServerError)
        self.assertEqual(str(failure.value), "no such user: carol")

    def test_selectUser(self):
        """
        C{selectUser} fires with the server's text, message count included.
        """
        d = self.client.selectUser("bob")
        self.receive(b"+OK bob has 3 messages\r\n")
        self.assertEqual(self.successResultOf(d), "bob has 3 messages")

    def test_badUserIdNotSent(self):
        """
        A user id that is empty or holds a space or a line break fails with
        L{ValueError} and nothing is sent, so it cannot inject a command.
        """
        for userid in ["", "a b", "bob\r\nDELM", "bob\n"]:
            self.failureResultOf(self.client.addUser(userid), ValueError)
            self.failureResultOf(self.client.selectUser(userid), ValueError)
            self.failureResultOf(self.client.startSend(userid), ValueError)
        self.assertEqual(self.sent(), b"")

    def test_readMessage(self):
        """
        C{readMessage} sends C{READM} and fires with the message bytes,
        dot-unstuffed, with LF line endings.
        """
        d = self.client.readMessage()
        self.assertEqual(self.sent(), b"READM\r\n")
        self.receive(
            b"+OK message follows\r\n"
            b"From: alice@localhost\r\n"
            b"\r\n"
            b"..leading dot\r\n"
            b"...\r\n"
            b"..\r\n"
            b"last\r\n"
            b".\r\n"
        )
        self.assertEqual(
            self.successResultOf(d),
            b"From: alice@localhost\n\n.leading dot\n..\n.\nlast\n",
        )

    def test_readMessageBinary(self):
        """
        A message body that is not UTF-8 comes back byte for byte.
        """
        d = self.client.readMessage()
        self.receive(b"+OK\r\nSubject: x\r\n\r\n\xff\xfe caf\xe9\r\n.\r\n")
        self.assertEqual(self.successResultOf(d), b"Subject: x\n\n\xff\xfe caf\xe9\n")

    def test_noMoreMail(self):
        """
        C{-ERR No More Mail} to C{READM} is a L{ServerError}, not a message.
        """
        d = self.client.readMessage()
        self.receive(b"-ERR No More Mail\r\n")
        self.assertEqual(str(self.failureResultOf(d, ServerError).value), "No More Mail")

    def test_deleteAndDone(self):
        """
        C{deleteMessage} sends C{DELM} and C{done} sends C{DONEU}, each firing
        with the server's text.
        """
        d = self.client.deleteMessage()
        self.assertEqual(self.sent(), b"DELM\r\n")
        self.receive(b"+OK message deleted\r\n")
        self.assertEqual(self.successResultOf(d), "message deleted")
        d = self.client.done()
        self.assertEqual(self.sent(), b"DONEU\r\n")
        self.receive(b"+OK\r\n")
        self.assertEqual(self.successResultOf(d), "")

    def test_capabilities(self):
        """
        C{capabilities} sends C{CAPA} and fires with the listed names.
        """
        d = self.client.capabilities()
        self.assertEqual(self.sent(), b"CAPA\r\n")
        self.receive(b"+OK\r\nAUTH\r\nSIZE 10485760\r\n.\r\n")
        self.assertEqual(self.successResultOf(d), ["AUTH", "SIZE 10485760"])

    def test_capabilitiesUnknown(self):
        """
        A server that does not know C{CAPA} has no capabilities.
        """
        d = self.client.capabilities()
        self.receive(b"-ERR unknown command\r\n")
        self.assertEqual(self.successResultOf(d), [])

    def test_capabilitiesOtherError(self):
        """
        Any other C{-ERR} to C{CAPA} is a L{ServerError}.
        """
        d = self.client.capabilities()
        self.receive(b"-ERR internal error\r\n")
        self.failureResultOf(d, ServerError)

    def test_quit(self):
        """
        C{quit} sends C{QUIT}, fires with the reply and closes the
        connection.
        """
        d = self.client.quit()
        self.assertEqual(self.sent(), b"QUIT\r\n")
        self.assertFalse(self.transport.disconnecting)
        self.receive(b"+OK bye\r\n")
        self.assertEqual(self.successResultOf(d), "bye")
        self.assertTrue(self.transport.disconnecting)

    def test_nothingSentAfterQuit(self):
        """
        A command issued after C{quit} is never sent; it fails when the
        connection closes.
        """
        quit = self.client.quit()
        later = self.client.listUsers()
        self.receive(b"+OK bye\r\n")
        self.assertEqual(self.sent(), b"QUIT\r\n")
        self.successResultOf(quit)
        self.lose()
        self.failureResultOf(later, ServerConnectionLost)


class QueueTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.connect()

    def test_oneAtATime(self):
        """
        Commands issued together are sent one at a time, each after the
        previous reply, and each gets its own reply.
        """
        first = self.client.selectUser("bob")
        second = self.client.readMessage()
        third = self.client.done()
        self.assertEqual(self.sent(), b"USER bob\r\n")
        self.receive(b"+OK bob has 1 messages\r\n")
        self.assertEqual(self.successResultOf(first), "bob has 1 messages")
        self.assertEqual(self.sent(), b"READM\r\n")
        self.receive(b"+OK\r\nhi\r\n.\r\n")
        self.assertEqual(self.successResultOf(second), b"hi\n")
        self.assertEqual(self.sent(), b"DONEU\r\n")
        self.receive(b"-ERR no user selected\r\n")
        self.failureResultOf(third, ServerError)
        self.assertEqual(self.sent(), b"")

    def test_repliesInOnePacket(self):
        """
        Queued commands are answered in order even when a reply arrives in
        the same read as the end of the one before it.
        """
        first = self.client.listUsers()
        second = self.client.addUser("carol")
        self.sent()
        self.receive(b"+OK\r\nbob\r\n.\r\n+OK created\r\n")
        self.assertEqual(self.successResultOf(first), ["bob"])
        self.assertEqual(self.successResultOf(second), "created")
        self.assertEqual(self.sent(), b"ADDU carol\r\n")

    def test_commandFromCallback(self):
        """
        A command issued from a reply's callback goes after the commands
        already queued.
        """
        order = []
        first = self.client.listUsers()
        first.addCallback(lambda _: order.append(self.client.done()))
        self.client.deleteMessage()
        self.sent()
        self.receive(b"+OK\r\n.\r\n")
        self.assertEqual(self.sent(), b"DELM\r\n")
        self.receive(b"+OK\r\n")
        self.assertEqual(self.sent(), b"DONEU\r\n")

    def test_connectionLostFailsAll(self):
        """
        When the connection is lost, the command in flight and every queued
        one fail with L{ServerConnectionLost}, a L{ConnectionLost}.
        """
        inFlight = self.client.readMessage()
        queued = [self.client.listUsers(), self.client.done()]
        self.receive(b"+OK\r\nhalf a mess")
        self.lose(ConnectionLost)
        for d in [inFlight] + queued:
            failure = self.failureResultOf(d, ServerConnectionLost)
            self.assertIsInstance(failure.value, ConnectionLost)
            self.assertEqual(str(failure.value), "connection to the server lost")

    def test_commandAfterLoss(self):
        """
        A command issued after the connection is gone fails at once.
        """
        self.lose()
        self.failureResultOf(self.client.listUsers(), ServerConnectionLost)
        self.failureResultOf(self.client.sendBody(b"x"), ServerConnectionLost)

    def test_whenDisconnected(self):
        """
        C{whenDisconnected} fires, not fails, with a one-line description
        once the server hangs up, including when asked afterwards.
        """
        d = self.client.whenDisconnected()
        self.assertNoResult(d)
        self.lose()
        self.assertEqual(str(self.successResultOf(d)), "the server closed the connection")
        later = self.client.whenDisconnected()
        self.assertIsInstance(self.successResultOf(later), ServerConnectionLost)

    def test_unsolicitedReplyExplainsClose(self):
        """
        A line the server sends unasked just before hanging up (say, an idle
        timeout) becomes part of the disconnection message.
        """
        d = self.client.whenDisconnected()
        self.receive(b"-ERR idle timeout\r\n")
        self.lose()
        self.assertEqual(
            str(self.successResultOf(d)),
            "the server closed the connection: idle timeout",
        )

    def test_garbageReply(self):
        """
        A reply that is neither C{+OK} nor C{-ERR} fails the command with
        L{ProtocolError}, and the client hangs up; queued commands then fail
        with L{ServerConnectionLost}.
        """
        d = self.client.listUsers()
        queued = self.client.done()
        self.receive(b"HTTP/1.1 400 Bad Request\r\n")
        self.failureResultOf(d, ProtocolError)
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.failureResultOf(queued, ServerConnectionLost)

    def test_replyLineTooLong(self):
        """
        An endless reply line fails the command instead of eating memory.
        """
        d = self.client.readMessage()
        self.receive(b"+OK\r\n")
        self.receive(b"x" * (MailClientProtocol.MAX_LENGTH + 10))
        self.failureResultOf(d, ProtocolError)
        self.assertTrue(self.transport.disconnecting)

    def test_disconnect(self):
        """
        C{disconnect} closes the connection; nothing more is sent, and the
        commands still waiting fail with L{ServerConnectionLost}.
        """
        d = self.client.listUsers()
        self.client.disconnect()
        self.assertTrue(self.transport.disconnecting)
        later = self.client.done()
        self.assertEqual(self.sent(), b"LSTU\r\n")
        self.lose()
        self.failureResultOf(d, ServerConnectionLost)
        self.failureResultOf(later, ServerConnectionLost)


class SendTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.connect()

    def test_send(self):
        """
        C{send} sends C{SEND <id>}, waits for the intermediate C{+OK}, then
        sends the body dot-stuffed with CRLF endings and a final C{.}, and
        fires with the final reply.
        """
        d = self.client.send("bob", b"Hello\n.hidden\n..two\nend")
        self.assertEqual(self.sent(), b"SEND bob\r\n")
        self.receive(b"+OK send the message, end with .\r\n")
        self.assertEqual(
            self.sent(),
            b"Hello\r\n..hidden\r\n...two\r\nend\r\n.\r\n",
        )
        self.assertNoResult(d)
        self.receive(b"+OK message delivered\r\n")
        self.assertEqual(self.successResultOf(d), "message delivered")

    def test_sendLineEndings(self):
        """
        A body with CRLF line endings is sent as the same lines, not with
        doubled line breaks.
        """
        self.client.send("bob", b"one\r\ntwo\nthree\r\n")
        self.sent()
        self.receive(b"+OK\r\n")
        self.assertEqual(self.sent(), b"one\r\ntwo\r\nthree\r\n.\r\n")

    def test_sendEmpty(self):
        """
        An empty body is just the terminating C{.}.
        """
        self.client.send("bob", b"")
        self.sent()
        self.receive(b"+OK\r\n")
        self.assertEqual(self.sent(), b".\r\n")

    def test_sendRefused(self):
        """
        When the server refuses C{SEND <id>}, no body is sent, the call fails
        with L{ServerError} and the next command goes out.
        """
        d = self.client.send("carol", b"Delete\nQUIT\n")
        after = self.client.listUsers()
        self.assertEqual(self.sent(), b"SEND carol\r\n")
        self.receive(b"-ERR no such user: carol\r\n")
        self.assertEqual(str(self.failureResultOf(d, ServerError).value), "no such user: carol")
        self.assertEqual(self.sent(), b"LSTU\r\n")
        self.assertNoResult(after)

    def test_sendTooLarge(self):
        """
        A final C{-ERR} after the body fails the call with L{ServerError}.
        """
        d = self.client.send("bob", b"big")
        self.receive(b"+OK\r\n")
        self.receive(b"-ERR message too large\r\n")
        self.failureResultOf(d, ServerError)

    def test_startSendThenBody(self):
        """
        C{startSend} fires on the intermediate C{+OK}; commands issued before
        the body is given wait, so they are never taken for body lines.
        """
        d = self.client.startSend("bob")
        self.sent()
        self.receive(b"+OK go ahead\r\n")
        self.assertEqual(self.successResultOf(d), "go ahead")
        waiting = self.client.listUsers()
        self.assertEqual(self.sent(), b"")
        body = self.client.sendBody(b"hi\n")
        self.assertEqual(self.sent(), b"hi\r\n.\r\n")
        self.receive(b"+OK sent\r\n")
        self.assertEqual(self.successResultOf(body), "sent")
        self.assertEqual(self.sent(), b"LSTU\r\n")
        self.assertNoResult(waiting)

    def test_sendBodyWithoutStart(self):
        """
        C{sendBody} when the server is not waiting for a body fails with
        L{NoSendInProgress} and sends nothing.
        """
        self.failureResultOf(self.client.sendBody(b"x\n"), NoSendInProgress)
        d = self.client.startSend("carol")
        self.failureResultOf(self.client.sendBody(b"x\n"), NoSendInProgress)
        self.receive(b"-ERR no such user: carol\r\n")
        self.failureResultOf(d, ServerError)
        self.failureResultOf(self.client.sendBody(b"x\n"), NoSendInProgress)
        self.assertEqual(self.sent(), b"SEND carol\r\n")

    def test_abandonSend(self):
        """
        Disconnecting while the server waits for a body sends no C{.}, so no
        half message is delivered, and queued commands fail.
        """
        self.client.startSend("bob")
        self.receive(b"+OK\r\n")
        queued = self.client.listUsers()
        self.sent()
        self.client.disconnect()
        self.lose()
        self.assertEqual(self.sent(), b"")
        self.failureResultOf(queued, ServerConnectionLost)


class MailboxViewTests(ClientTestsMixin, SynchronousTestCase):
    def setUp(self):
        self.connect()

    def test_listMessages(self):
        """
        listMessages sends LSTM and fires with one L{MessageLine} per data
        line, from and subject decoded from UTF-8.
        """
        d = self.client.listMessages()
        self.assertEqual(self.sent(), b"LSTM\r\n")
        self.receive(
            b"+OK 2 messages\r\n"
            b"m1 120 1700000000\talice@localhost\t\r\n"
            b"m2 9 1700000001\tJ\xc3\xbcrgen <j@x>\tHi there\r\n.\r\n"
        )
        self.assertEqual(
            self.successResultOf(d),
            [
                MessageLine("m1", 120, 1700000000, "alice@localhost", ""),
                MessageLine("m2", 9, 1700000001, "J\u00fcrgen <j@x>", "Hi there"),
            ],
        )

    def test_listMessagesGarbage(self):
        """
        A listing line that is not C{<id> <size> <time>\\t<from>\\t<subject>}
        fails the call with L{ProtocolError}.
        """
        d = self.client.listMessages()
        self.receive(b"+OK 1 messages\r\nnonsense\r\n.\r\n")
        self.failureResultOf(d, ProtocolError)

    def test_readMessageById(self):
        """
        readMessageById sends C{READM <id>} and fires with the message.
        """
        d = self.client.readMessageById("m7")
        self.assertEqual(self.sent(), b"READM m7\r\n")
        self.receive(b"+OK message follows\r\nSubject: x\r\n\r\n..dot\r\n.\r\n")
        self.assertEqual(self.successResultOf(d), b"Subject: x\n\n.dot\n")

    def test_readMessageByIdRefused(self):
        """
        C{-ERR no such message} fails the call with L{ServerError}; an id
        with a space is refused without sending anything.
        """
        d = self.client.readMessageById("m7")
        self.receive(b"-ERR no such message\r\n")
        self.assertEqual(str(self.failureResultOf(d, ServerError).value), "no such message")
        self.sent()
        self.failureResultOf(self.client.readMessageById("a b"), ValueError)
        self.assertEqual(self.sent(), b"")

    def test_sendMessage(self):
        """
        sendMessage sends C{SENDM}, then, once accepted, a whole message with
        the subject (RFC 2047 encoded when not ASCII) and the text, as UTF-8
        plain text.
        """
        d = self.client.sendMessage("bob", "Gr\u00fc\u00dfe", "Hallo\n.x\n".encode())
        self.assertEqual(self.sent(), b"SENDM bob\r\n")
        self.receive(b"+OK send the message\r\n")
        self.assertEqual(
            self.sent(),
            b"Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n"
            b"\r\n"
            b"Hallo\r\n..x\r\n.\r\n",
        )
        self.receive(b"+OK message delivered to bob\r\n")
        self.assertEqual(self.successResultOf(d), "message delivered to bob")

    def test_sendMessageControlSubject(self):
        """
        A subject with a control character (a line break would start a new
        header) is refused before anything is sent.
        """
        self.failureResultOf(self.client.sendMessage("bob", "a\nBcc: x", b"x"), ValueError)
        self.assertEqual(self.sent(), b"")
