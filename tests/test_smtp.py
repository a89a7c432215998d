"""
Tests for L{twisted_mail.doors.smtp}: SMTP ingress.

The protocol is driven through a L{StringTransport} with the memory store
and a L{Clock}; then a real C{twistd -n simplemail --smtp ...} process is
fed by the standard library's C{smtplib}, and what it stored is read back
with C{READM} over our own protocol and with C{mailbox.mbox}.
"""

import mailbox
import os
import re
import smtplib
import ssl
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import capturedLogs
from twisted.mail import smtp as tsmtp
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests import certs
from tests.serverprocess import ServerProcess, freePort
from twisted_mail.service import tap
from twisted_mail import errors
from twisted_mail.doors.smtp import (
    MAX_COMMAND_LINE,
    MAX_TEXT_LINE,
    SMTPFactory,
    StoreDelivery,
    StoreMessage,
    makeSMTPFactory,
)
from twisted_mail.doors.connections import loadTLSContextFactory
from twisted_mail.mail.mime import parseMessage
from twisted_mail.stores.memory import MemoryStore

DOMAIN = "example.org"
PEER = IPv4Address("TCP", "192.0.2.7", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 25)
IDLE = 60
LIMIT = 4000

#: Seconds any one network step of the end-to-end tests may take.
WAIT = 30


# -- helpers


class RecordingStore(MemoryStore):
    """
    A memory store that records every C{deliverMessage} call.
    """

    def __init__(self, **kw):
        MemoryStore.__init__(self, **kw)
        self.deliveries = []

    def deliverMessage(self, envelopeSender, receiver, message):
        self.deliveries.append((envelopeSender, receiver, message))
        return MemoryStore.deliverMessage(self, envelopeSender, receiver, message)


class HeldStore(RecordingStore):
    """
    A store whose answers wait until the test calls L{release}, like a disk
    store working in a thread.
    """

    def __init__(self, **kw):
        RecordingStore.__init__(self, **kw)
        self.held = []

    def _hold(self, d):
        out = defer.Deferred()
        self.held.append((d, out))
        return out

    def hasUser(self, userid):
        return self._hold(RecordingStore.hasUser(self, userid))

    def deliverMessage(self, envelopeSender, receiver, message):
        return self._hold(
            RecordingStore.deliverMessage(self, envelopeSender, receiver, message)
        )

    def release(self):
        held, self.held = self.held, []
        for d, out in held:
            d.chainDeferred(out)


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """
    A string transport that can start TLS (it only records that it did).
    """

    tlsContext = None

    def startTLS(self, contextFactory, normal=True):
        self.tlsContext = contextFactory


class Client:
    """
    One SMTP connection to a protocol on a string transport.
    """

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport
        self._seen = 0

    def output(self):
        """
        The bytes written since the last call.
        """
        data = self.transport.value()
        new, self._seen = data[self._seen :], len(data)
        return new

    def replies(self):
        """
        The reply lines written since the last call, as C{(code, text)}
        (a multi-line reply gives one pair a line).
        """
        data = self.output()
        assert data == b"" or data.endswith(b"\r\n"), data
        return [(int(line[:3]), line[4:]) for line in data.split(b"\r\n")[:-1]]

    def send(self, data):
        self.protocol.dataReceived(data)
        return self.replies()

    def command(self, line):
        return self.send(line + b"\r\n")

    def codes(self, data):
        return [code for code, _ in self.send(data)]

    def mail(self, sender, recipients, text, hello=True):
        """
        A whole transaction: C{text} (bytes, LF line endings) is sent
        dot-stuffed with CRLF line endings.

        @return: the reply codes.
        """
        data = b""
        if hello:
            data += b"EHLO client.example\r\n"
        data += b"MAIL FROM:<" + sender + b">\r\n"
        for recipient in recipients:
            data += b"RCPT TO:<" + recipient + b">\r\n"
        data += b"DATA\r\n" + stuff(text) + b".\r\n"
        return [code for code, _ in self.send(data)]

    @property
    def closed(self):
        return self.transport.disconnecting


def stuff(text):
    """
    C{text} (LF line endings) as dot-stuffed CRLF lines.
    """
    if not text:
        return b""
    if text.endswith(b"\n"):
        text = text[:-1]
    return b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n"
        for line in text.split(b"\n")
    )


def headerAndBody(stored):
    head, _, body = stored.partition(b"\n\n")
    return head.split(b"\n"), body


class SMTPTestCase(SynchronousTestCase):
    """
    Set-up shared by the protocol tests: a store with bob and carol.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1785000000)  # Sat, 25 Jul 2026 17:20:00 UTC
        self.store = RecordingStore(domain=DOMAIN, maxMessageSize=LIMIT * 2)
        for userid in ("bob", "carol"):
            self.store.addUser(userid)

    def connect(
        self, transport=None, peer=PEER, tls=None, maxMessageSize=LIMIT, store=None
    ):
        factory = makeSMTPFactory(
            store or self.store,
            DOMAIN,
            maxMessageSize,
            IDLE,
            reactor=self.clock,
            tlsContextFactory=tls,
        )
        protocol = factory.buildProtocol(peer)
        if transport is None:
            transport = StringTransport(peerAddress=peer, hostAddress=HOST)
        protocol.makeConnection(transport)
        client = Client(protocol, transport)
        self.greeting = client.replies()
        return client


# -- the protocol


class GreetingTests(SMTPTestCase):
    """
    Greeting, EHLO and the commands around a transaction.
    """

    def test_greetingAndExtensions(self):
        """
        The server greets with 220 and its domain, and EHLO advertises SIZE
        with the maximum message size, 8BITMIME and PIPELINING, but neither
        AUTH nor (without a certificate) STARTTLS.
        """
        client = self.connect()
        self.assertEqual(self.greeting, [(220, b"example.org ESMTP simplemail")])
        replies = client.command(b"EHLO client.example")
        self.assertEqual({code for code, _ in replies}, {250})
        lines = [text for _, text in replies]
        self.assertEqual(lines[0], b"example.org hello [192.0.2.7]")
        self.assertEqual(lines[1:], [b"SIZE %d" % LIMIT, b"8BITMIME", b"PIPELINING"])

    def test_helloNeedsName(self):
        """
        HELO and EHLO without a host name are answered 501.
        """
        client = self.connect()
        self.assertEqual(client.codes(b"HELO\r\nEHLO   \r\n"), [501, 501])
        self.assertEqual(client.codes(b"HELO client.example\r\n"), [250])

    def test_unixSocketPeer(self):
        """
        A client on a Unix socket can say EHLO (Twisted's own EHLO raises
        there) and its mail says it came from a local connection.
        """
        peer = UNIXAddress("/run/simplemail-smtp.sock")
        client = self.connect(peer=peer, transport=StringTransport(peerAddress=peer))
        self.assertEqual(client.codes(b"EHLO client.example\r\n"), [250] * 4)
        codes = client.mail(
            b"alice@elsewhere.example",
            [b"bob@example.org"],
            b"Subject: x\n\nhi\n",
            hello=False,
        )
        self.assertEqual(codes, [250, 250, 354, 250])
        self.assertIn(
            b"Received: from client.example (local)", self.store.messages("bob")[0]
        )

    def test_ipv6Peer(self):
        """
        An IPv6 client is named by an IPv6 address literal.
        """
        peer = IPv6Address("TCP", "2001:db8::7", 40000)
        client = self.connect(peer=peer, transport=StringTransport(peerAddress=peer))
        replies = client.command(b"HELO client.example")
        self.assertEqual(replies, [(250, b"example.org hello [IPv6:2001:db8::7]")])

    def test_otherCommands(self):
        """
        NOOP and RSET answer 250, VRFY 252 without telling whether a user
        exists, HELP 214, and QUIT 221 then closes the connection.
        """
        client = self.connect()
        self.assertEqual(
            client.codes(
                b"NOOP\r\nRSET\r\nVRFY bob\r\nVRFY nobody\r\nHELP\r\nQUIT\r\nNOOP\r\n"
            ),
            [250, 250, 252, 252, 214, 221],
        )
        self.assertTrue(client.closed)

    def test_noAuthentication(self):
        """
        AUTH is not offered, and trying it is answered 502.
        """
        client = self.connect()
        self.assertEqual(
            client.codes(b"EHLO c\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\n")[-1], 502
        )

    def test_nonAsciiCommand(self):
        """
        A command that is not ASCII is answered 500 (Twisted raises on it)
        and the session goes on.
        """
        client = self.connect()
        self.assertEqual(
            client.codes(b"\xff\xfe\r\nMA\xc3\x8fL FROM:<a@b>\r\nNOOP\r\n"),
            [500, 500, 250],
        )
        self.assertFalse(client.closed)

    def test_interfaces(self):
        """
        The delivery and the message provide Twisted's SMTP interfaces.
        """
        client = self.connect()
        delivery = client.protocol.delivery
        self.assertTrue(verifyObject(tsmtp.IMessageDelivery, delivery))
        client.command(b"MAIL FROM:<a@b>")
        message = delivery._transaction.messageFor("bob", "bob@example.org")
        self.assertTrue(verifyObject(tsmtp.IMessage, message))


class ConnectionLimitTests(SMTPTestCase):
    def test_tooManyConnections(self):
        """
        Past --max-connections an SMTP client is told 421 (so it retries
        later) and disconnected; a slot frees when a connection closes.
        """
        factory = makeSMTPFactory(
            self.store, DOMAIN, LIMIT, IDLE, reactor=self.clock, maxConnections=2
        )
        first = factory.buildProtocol(PEER)
        first.makeConnection(StringTransport(peerAddress=PEER, hostAddress=HOST))
        second = factory.buildProtocol(PEER)
        second.makeConnection(StringTransport(peerAddress=PEER, hostAddress=HOST))
        refused = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
        refused.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"421 "))
        self.assertIn(b"too many connections", transport.value())
        self.assertTrue(transport.disconnecting)
        first.connectionLost(Failure(ConnectionDone()))
        again = factory.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER, hostAddress=HOST)
        again.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"220 "))


class DeliveryTests(SMTPTestCase):
    """
    Who may receive, and what is stored.
    """

    def test_oneRecipient(self):
        """
        A message is stored as sent, with its own headers and MIME parts,
        after Return-Path: and Received: headers and the Date: and
        Message-ID: it lacked.
        """
        client = self.connect()
        text = (
            b"From: Alice <alice@elsewhere.example>\n"
            b"To: bob@example.org\n"
            b"Subject: lunch?\n"
            b"MIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="XX"\n'
            b"\n"
            b"--XX\n"
            b"Content-Type: text/plain\n"
            b"\n"
            b"At noon?\n"
            b"--XX--\n"
        )
        codes = client.mail(b"alice@elsewhere.example", [b"bob@example.org"], text)
        self.assertEqual(codes, [250, 250, 250, 250, 250, 250, 354, 250])
        [stored] = self.store.messages("bob")
        received = (
            b"Return-Path: <alice@elsewhere.example>\n"
            b"Received: from client.example ([192.0.2.7])\n"
            b"\tby example.org (simplemail) with ESMTP id "
        )
        self.assertTrue(stored.startswith(received), stored)
        headers, body = headerAndBody(stored)
        self.assertEqual(headers[3], b"\tfor <bob@example.org>;")
        self.assertEqual(headers[4], b"\tSat, 25 Jul 2026 17:20:00 +0000")
        self.assertEqual(headers[5], b"Date: Sat, 25 Jul 2026 17:20:00 +0000")
        self.assertRegex(headers[6], rb"^Message-ID: <[0-9a-f]{32}@example\.org>$")
        self.assertTrue(stored.endswith(text), stored)
        self.assertEqual(self.store.deliveries[0][0], "alice@elsewhere.example")

    def test_headersKeptWhenPresent(self):
        """
        A message that has Date: and Message-ID: (in any case) keeps them and
        gets no second one.
        """
        client = self.connect()
        text = (
            b"date: Mon, 1 Jun 2026 10:00:00 +0200\n"
            b"Message-Id:\n <given@elsewhere.example>\n"
            b"Subject: hi\n\nbody\n"
        )
        client.mail(b"alice@elsewhere.example", [b"bob@example.org"], text)
        [stored] = self.store.messages("bob")
        headers, body = headerAndBody(stored)
        self.assertEqual(sum(h.lower().startswith(b"date:") for h in headers), 1)
        self.assertEqual(sum(h.lower().startswith(b"message-id:") for h in headers), 1)
        self.assertTrue(stored.endswith(text))

    def test_headersAfterAnObsoleteField(self):
        """
        A Date: or Message-ID: after a field of the obsolete kind (white
        space before its colon) is not there for the one reader, whose
        header section ends at that field: the message gets its own, and
        is kept as sent (found by the C{smtp_ingress} fuzz target).
        """
        client = self.connect()
        text = (b"Subject : hi\n"
                b"Date: Mon, 1 Jun 2026 10:00:00 +0200\n"
                b"Message-ID: <given@elsewhere.example>\n\nbody\n")
        client.mail(b"alice@elsewhere.example", [b"bob@example.org"], text)
        [stored] = self.store.messages("bob")
        self.assertTrue(stored.endswith(b"\n" + text))
        headers = {name.lower() for name, _ in parseMessage(stored).headers}
        self.assertTrue({"date", "message-id"} <= headers, headers)

    def test_messageWithoutHeaders(self):
        """
        A message that starts with text and not headers is kept apart from
        the added headers by a blank line.
        """
        client = self.connect()
        client.mail(
            b"alice@elsewhere.example", [b"bob@example.org"], b"just a note\nbye\n"
        )
        [stored] = self.store.messages("bob")
        headers, body = headerAndBody(stored)
        self.assertEqual(body, b"just a note\nbye\n")
        self.assertEqual(headers[0], b"Return-Path: <alice@elsewhere.example>")
        self.assertTrue(headers[1].startswith(b"Received: "))

    def test_headerSectionWithoutBlankLine(self):
        """
        Headers followed by text with no blank line between get one, so the
        text is not taken for a header.
        """
        client = self.connect()
        client.mail(
            b"a@b.example", [b"bob@example.org"], b"Subject: x\nno blank line\n"
        )
        [stored] = self.store.messages("bob")
        self.assertTrue(stored.endswith(b"Subject: x\n\nno blank line\n"), stored)

    def test_bigMessageInBlocks(self):
        """
        A big message reaches the store in blocks, not joined into one more
        copy of it, and is stored exactly; the blank line a header section
        lacked goes in at its place even past the first block.
        """
        self.store.maxMessageSize = 1 << 20
        client = self.connect(maxMessageSize=1 << 20)
        headers = b"".join(b"X-Filler-%05d: %s\n" % (i, b"f" * 40) for i in range(2000))
        body = b"".join(b"line %06d of the body\n" % i for i in range(12000))
        client.mail(b"a@b.example", [b"bob@example.org"], headers + body)
        [stored] = self.store.messages("bob")
        self.assertTrue(stored.endswith(headers + b"\n" + body))
        pieces = self.store.deliveries[0][2]
        self.assertGreater(len(pieces), 4)
        self.assertLessEqual(max(len(piece) for piece in pieces), 64 * 1024)

    def test_receivedHeaderSanitised(self):
        """
        What the client said in EHLO reaches the Received: header only as
        printable ASCII without parentheses.
        """
        client = self.connect()
        client.command(b"EHLO evil)\x01(\xff.example")
        client.mail(b"a@b.example", [b"bob@example.org"], b"x\n", hello=False)
        [stored] = self.store.messages("bob")
        self.assertTrue(
            stored.startswith(
                b"Return-Path: <a@b.example>\n"
                b"Received: from evil????.example ([192.0.2.7])\n"
            )
        )

    def test_returnPath(self):
        """
        Final delivery puts the envelope sender at the top of the message in
        a Return-Path: header (RFC 5321 section 4.4), where POP3 and IMAP
        clients find it (getmail's "from <unknown>" without it); one the
        client wrote stays below it, and every recipient gets the same.
        """
        client = self.connect()
        text = b"Return-Path: <forged@elsewhere.example>\nSubject: x\n\nhi\n"
        client.mail(b"Alice@Elsewhere.example", [b"bob@example.org", b"carol@example.org"], text)
        for userid in ("bob", "carol"):
            [stored] = self.store.messages(userid)
            headers, _ = headerAndBody(stored)
            self.assertEqual(headers[0], b"Return-Path: <Alice@Elsewhere.example>")
            self.assertTrue(headers[1].startswith(b"Received: from client.example"))
            self.assertTrue(stored.endswith(text), stored)

    def test_returnPathOfNullSender(self):
        """
        A bounce (null sender) gets Return-Path: <>.
        """
        client = self.connect()
        self.assertEqual(client.mail(b"", [b"bob@example.org"], b"bounce\n")[-1], 250)
        [stored] = self.store.messages("bob")
        self.assertTrue(stored.startswith(b"Return-Path: <>\nReceived: "), stored)

    def test_returnPathSanitised(self):
        """
        A quoted local part holding a control character reaches
        Return-Path: with that byte as ?, never as a line break.
        """
        client = self.connect()
        client.mail(b'"a\x01b c"@b.example', [b"bob@example.org"], b"x\n")
        [stored] = self.store.messages("bob")
        self.assertTrue(
            stored.startswith(b'Return-Path: <"a?b c"@b.example>\nReceived: '), stored
        )

    def test_nullSender(self):
        """
        The null sender <> reaches the store as an empty envelope sender.
        """
        client = self.connect()
        self.assertEqual(client.mail(b"", [b"bob@example.org"], b"bounce\n")[-1], 250)
        self.assertEqual(self.store.deliveries[0][0], "")

    def test_nonAsciiSender(self):
        """
        A sender address that is not ASCII is refused with 553.
        """
        client = self.connect()
        self.assertEqual(client.codes(b'MAIL FROM:<"\xc3\xa9"@b.example>\r\n'), [553])

    def test_severalRecipients(self):
        """
        Each recipient of a transaction gets the message once, even when
        named twice (in another case, or at localhost), and all of them get
        the same bytes, built once.
        """
        client = self.connect()
        codes = client.mail(
            b"alice@elsewhere.example",
            [
                b"bob@example.org",
                b"carol@example.org",
                b"Bob@EXAMPLE.org",
                b"bob@localhost",
            ],
            b"Subject: hi all\n\nhello\n",
        )
        self.assertEqual(codes[-6:], [250, 250, 250, 250, 354, 250])
        self.assertEqual(len(self.store.messages("bob")), 1)
        self.assertEqual(len(self.store.messages("carol")), 1)
        [(_, first, text1), (_, second, text2)] = self.store.deliveries
        self.assertEqual((first, second), ("bob", "carol"))
        self.assertIs(text1, text2)
        # The other recipients are not named in the Received: header.
        self.assertNotIn(b"for <", text1)

    def test_copiesHandedOverAFewAtATime(self):
        """
        The recipients' copies go to the store four at a time, and the reply
        comes once all of them are stored.
        """
        store = HeldStore(domain=DOMAIN)
        names = [b"user%d" % n for n in range(6)]
        for name in names:
            store.addUser(name.decode("ascii"))
        client = self.connect(store=store)
        client.send(b"MAIL FROM:<a@b.example>\r\n")
        for name in names:
            client.send(b"RCPT TO:<" + name + b"@example.org>\r\n")
            store.release()
            self.assertEqual([code for code, _ in client.replies()], [250])
        self.assertEqual(client.codes(b"DATA\r\nhi\r\n.\r\n"), [354])
        self.assertEqual(len(store.deliveries), 4)
        store.release()
        self.assertEqual(len(store.deliveries), 6)
        self.assertEqual(client.replies(), [])
        store.release()
        self.assertEqual([code for code, _ in client.replies()], [250])

    def test_sameMessageTwice(self):
        """
        The same message sent twice is two messages in the mailbox.
        """
        client = self.connect()
        text = b"Message-ID: <same@elsewhere.example>\n\nagain\n"
        client.mail(b"a@b.example", [b"bob@example.org"], text)
        client.mail(b"a@b.example", [b"bob@example.org"], text, hello=False)
        self.assertEqual(len(self.store.messages("bob")), 2)

    def test_localhostAndBareNames(self):
        """
        Mail for user@localhost and for a bare user name is accepted.
        """
        client = self.connect()
        codes = client.mail(b"a@b.example", [b"carol@localhost", b"bob"], b"x\n")
        self.assertEqual(codes[-4:], [250, 250, 354, 250])
        self.assertEqual(len(self.store.messages("bob")), 1)
        self.assertEqual(len(self.store.messages("carol")), 1)

    def test_relayRefused(self):
        """
        A recipient at another domain is refused with 550 and logged as a
        relay attempt; nothing is stored.
        """
        client = self.connect()
        with capturedLogs() as events:
            codes = client.codes(
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
                b"RCPT TO:<bob@elsewhere.example>\r\n"
                b"RCPT TO:<bob%elsewhere.example@example.org>\r\n"
                b"RCPT TO:<@example.org:bob@elsewhere.example>\r\nDATA\r\n"
            )
        self.assertEqual(codes[-4:], [550, 550, 550, 503])
        self.assertEqual(self.store.deliveries, [])
        relays = [
            e for e in events if e.get("log_format", "").startswith("refused relaying")
        ]
        self.assertEqual(len(relays), 2)
        self.assertEqual(relays[0]["address"], "bob@elsewhere.example")

    def test_unknownUser(self):
        """
        A recipient that is no user here, or no valid user id, is refused
        with 550 while the others are accepted.
        """
        client = self.connect()
        replies = client.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@example.org>\r\n"
            b'RCPT TO:<"bob"@example.org>\r\nRCPT TO:<x.lock@example.org>\r\n'
            b"RCPT TO:<bob@example.org>\r\n"
        )
        self.assertEqual(
            replies[1:],
            [(550, b"no such user here")] * 3 + [(250, b"Recipient address accepted")],
        )

    def test_recipientLimit(self):
        """
        A message takes at most 100 recipients; the 101st is answered 452,
        and the message goes to the first 100.
        """
        for n in range(101):
            self.store.addUser("user{}".format(n))
        client = self.connect()
        codes = client.mail(
            b"a@b.example", [b"user%d@example.org" % n for n in range(101)], b"hi\n"
        )
        self.assertEqual(codes[:105], [250] * 105)  # EHLO (4 lines), MAIL, RCPT
        self.assertEqual(codes[105:], [452, 354, 250])
        self.assertEqual(len(self.store.deliveries), 100)
        self.assertEqual(self.store.messages("user100"), [])

    def test_longAddress(self):
        """
        An address longer than RFC 5321 allows is refused with 501 before
        Twisted's (quadratic) address parser sees it.
        """
        client = self.connect()
        long = b"a" * 300 + b"@b.example"
        self.assertEqual(
            client.codes(
                b"MAIL FROM:<" + long + b">\r\nMAIL FROM:<a@b.example>\r\n"
                b"RCPT TO:<" + long + b">\r\n"
            ),
            [501, 250, 501],
        )

    def test_sequence(self):
        """
        RCPT before MAIL, a second MAIL, and DATA without recipients are
        answered 503.
        """
        client = self.connect()
        self.assertEqual(
            client.codes(
                b"RCPT TO:<bob@example.org>\r\nMAIL FROM:<a@b.example>\r\n"
                b"MAIL FROM:<a@b.example>\r\nDATA\r\nRSET\r\nDATA\r\n"
            ),
            [503, 250, 503, 503, 250, 503],
        )


class SizeTests(SMTPTestCase):
    """
    The message size limit and the MAIL FROM parameters.
    """

    def test_declaredSizeTooLarge(self):
        """
        MAIL FROM declaring a SIZE= over the limit is refused at once with
        552; at the limit it is accepted.
        """
        client = self.connect()
        self.assertEqual(
            client.codes(
                b"MAIL FROM:<a@b.example> SIZE=%d\r\nMAIL FROM:<a@b.example> size=%d BODY=8BITMIME\r\n"
                % (LIMIT + 1, LIMIT)
            ),
            [552, 250],
        )

    def test_mailParameters(self):
        """
        A malformed SIZE= or BODY= is answered 501 and an unknown MAIL or
        RCPT parameter 555.
        """
        client = self.connect()
        self.assertEqual(
            client.codes(
                b"MAIL FROM:<a@b.example> SIZE=big\r\n"
                b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"
                b"MAIL FROM:<a@b.example> SMTPUTF8\r\n"
                b"MAIL FROM:<a@b.example> BODY=7bit\r\n"
                b"RCPT TO:<bob@example.org> NOTIFY=NEVER\r\n"
            ),
            [501, 501, 555, 250, 555],
        )

    def test_eightBitSenderNotEchoed(self):
        """
        A sender that is not ASCII is refused with 553, and the reply shows
        its bytes that are not printable ASCII as C{?}: a NUL or 8-bit
        byte of the client's is not echoed into the reply line (found by
        the C{smtp_ingress} fuzz target).
        """
        client = self.connect()
        self.assertEqual(client.send(b"MAIL FROM:<\"a\x00\xff\"@b.example>\r\n"), [
            (553, b'Cannot receive from specified address <"a??"@b.example>: '
                  b"the address must be ASCII (no SMTPUTF8 here)")])

    def test_tooLargeWhileReceiving(self):
        """
        A message that grows past the limit is refused with 552 after its
        final dot, nothing is stored or kept in memory, and the session goes
        on.
        """
        client = self.connect()
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        line = b"x" * 98 + b"\r\n"
        for _ in range(LIMIT // 100 + 1):
            self.assertEqual(client.send(line), [])
        message = client.protocol._messages[0]
        self.assertTrue(message.tooLarge)
        self.assertIsNone(message._data)
        self.assertEqual(client.codes(b".\r\n"), [552])
        self.assertEqual(self.store.messages("bob"), [])
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], b"small\n")[-1], 250
        )

    def test_sizeCountsAsReceived(self):
        """
        The limit counts the message as received, with CRLF line endings and
        after dot-unstuffing: a message of exactly the limit is stored.
        """
        client = self.connect()
        lines = [b"." * 98] * (LIMIT // 100)  # each 98 + CRLF = 100 bytes
        text = b"\n".join(lines) + b"\n"
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], text)[-1], 250
        )
        client.mail(b"a@b.example", [b"bob@example.org"], text + b"z\n", hello=False)
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_storeRefusesSize(self):
        """
        When the store finds the message too large for the mailbox, the
        answer is 552.
        """
        self.store.maxMessageSize = 100
        client = self.connect()
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], b"x" * 150 + b"\n")[-1],
            552,
        )


class FailureTests(SMTPTestCase):
    """
    Replies when the store fails or the client goes away.
    """

    def test_temporaryFailure(self):
        """
        A temporary storage failure is answered 451 (never 550), without a
        logged traceback, and the client's retry is stored.
        """
        self.store.failNext = errors.TemporaryFailure("disk full")
        client = self.connect()
        replies = client.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhi\r\n.\r\n"
        )
        self.assertEqual(
            replies[-1], (451, b"temporary local failure, try again later")
        )
        self.assertEqual(self.store.messages("bob"), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], b"hi\n")[-1], 250
        )
        self.assertEqual(len(self.store.messages("bob")), 1)

    def test_temporaryFailureForOneRecipient(self):
        """
        When one recipient's copy fails temporarily the answer is 451 and
        says how many recipients already have it: they get it again when the
        client retries.
        """
        self.store.failNext = errors.TemporaryFailure("disk full")
        client = self.connect()
        replies = client.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n"
            b"RCPT TO:<carol@example.org>\r\nDATA\r\nhi\r\n.\r\n"
        )
        self.assertEqual(
            replies[-1],
            (
                451,
                b"temporary local failure, try again later (1 of 2 recipients already have it)",
            ),
        )
        self.assertEqual(len(self.store.messages("carol")), 1)
        client.mail(b"a@b.example", [b"bob@example.org", b"carol@example.org"], b"hi\n")
        self.assertEqual(len(self.store.messages("carol")), 2)

    def test_unexpectedError(self):
        """
        An unexpected error from the store is logged and answered 451.
        """
        self.store.failNext = RuntimeError("bug")
        client = self.connect()
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], b"hi\n")[-1], 451
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_permanentFailure(self):
        """
        A recipient that vanished between RCPT and the end of the message is
        answered 550.
        """
        self.store.failNext = errors.NoSuchUser("bob")
        client = self.connect()
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], b"hi\n")[-1], 550
        )

    def test_recipientCheckFailsTemporarily(self):
        """
        A store that cannot tell whether a recipient exists gets the client
        a 451 for that recipient, not a 550.
        """

        class Broken(RecordingStore):
            def hasUser(self, userid):
                return defer.fail(errors.TemporaryFailure("locked"))

        client = self.connect(store=Broken(domain=DOMAIN))
        self.assertEqual(
            client.codes(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n"),
            [250, 451],
        )

    def test_connectionLostInData(self):
        """
        A connection lost in the middle of a message stores nothing and
        frees the message.
        """
        client = self.connect()
        client.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhalf\r\n"
        )
        message = client.protocol._messages[0]
        client.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(message._data)
        self.assertEqual(self.store.deliveries, [])
        failure = self.failureResultOf(message.eomReceived(), tsmtp.SMTPServerError)
        self.assertEqual(failure.value.code, 451)


class FramingTests(SMTPTestCase):
    """
    Lines, line endings, pipelining and the error limit.
    """

    def test_longTextLineClosesConnection(self):
        """
        An over-long line in a message is answered 500 and the connection is
        closed, so what follows it (here a whole smuggled transaction) is
        never read as commands and nothing is stored.
        """
        client = self.connect()
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        smuggled = (
            b"A" * (MAX_TEXT_LINE + 10)
            + b"\r\n.\r\nMAIL FROM:<ceo@example.org>\r\nRCPT TO:<carol@example.org>\r\n"
            b"DATA\r\nSubject: wire the money\r\n\r\nnow\r\n.\r\n"
        )
        self.assertEqual(client.codes(smuggled), [500])
        self.assertTrue(client.closed)
        self.assertEqual(self.store.deliveries, [])

    def test_longLineInPieces(self):
        """
        A long line arriving in pieces is refused as soon as it passes the
        limit, without waiting for its end or buffering more.
        """
        client = self.connect()
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        piece = b"A" * 4096
        for _ in range(MAX_TEXT_LINE // 4096):
            self.assertEqual(client.send(piece), [])
        self.assertEqual(client.codes(piece), [500])
        self.assertTrue(client.closed)
        self.assertEqual(len(client.protocol._input), 0)

    def test_longestTextLine(self):
        """
        A line of text of 64 KiB is accepted.
        """
        client = self.connect(maxMessageSize=2 * MAX_TEXT_LINE)
        self.store.maxMessageSize = 4 * MAX_TEXT_LINE
        text = b"A" * MAX_TEXT_LINE + b"\n"
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], text)[-1], 250
        )
        self.assertTrue(self.store.messages("bob")[0].endswith(b"\n\n" + text))

    def test_longCommandLine(self):
        """
        An over-long command line is answered 500 and the connection closed.
        """
        client = self.connect()
        codes = client.codes(b"NOOP " + b"x" * MAX_COMMAND_LINE + b"\r\nNOOP\r\n")
        self.assertEqual(codes, [500])
        self.assertTrue(client.closed)

    def test_onlyCRLFDotCRLFEndsMessage(self):
        """
        A dot line with a bare LF or CR on either side does not end the
        message: it and the commands after it are text, until CRLF . CRLF.
        """
        client = self.connect()
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        for attempt in (
            b"one\n.\nMAIL FROM:<x@y.example>\r\n",
            b"two\r\n.\nRCPT TO:<carol@example.org>\r\n",
            b"three\n.\r\nDATA\r\n",
            b"four\r.\r\nQUIT\r\n",
            b"five\r\n.\r\r\nNOOP\r\n",
        ):
            self.assertEqual(client.send(attempt), [])
        self.assertEqual(client.codes(b"end\r\n.\r\n"), [250])
        self.assertEqual(self.store.messages("carol"), [])
        [stored] = self.store.messages("bob")
        headers, body = headerAndBody(stored)
        self.assertEqual(
            body,
            b"one\n.\nMAIL FROM:<x@y.example>\ntwo\n.\nRCPT TO:<carol@example.org>\n"
            b"three\n.\nDATA\nfour\n.\nQUIT\nfive\n.\nNOOP\nend\n",
        )

    def test_lineEndingsNormalised(self):
        """
        Bare LF and bare CR end lines of text; the message is stored with LF
        line endings.
        """
        client = self.connect()
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        client.send(b"Subject: x\r\n\r\nunix\nmac\rwindows\r\nmixed\r\r\n.\r\n")
        [stored] = self.store.messages("bob")
        self.assertTrue(
            stored.endswith(b"Subject: x\n\nunix\nmac\nwindows\nmixed\n"), stored
        )

    def test_commandsWithBareLF(self):
        """
        Commands ended by a bare LF are understood.
        """
        client = self.connect()
        self.assertEqual(client.codes(b"EHLO c\nNOOP\n"), [250, 250, 250, 250, 250])

    def test_dotUnstuffing(self):
        """
        A leading dot added by the client is removed; lines that start with
        "From " are stored as sent (the mbox quoting is the store's).
        """
        client = self.connect()
        text = b"Subject: dots\n\n.\n..\n.leading\nFrom here\n>From there\n"
        client.mail(b"a@b.example", [b"bob@example.org"], text)
        self.assertTrue(self.store.messages("bob")[0].endswith(text))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.binary(max_size=40).map(
                lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
            ),
            max_size=12,
        )
    )
    def test_bodyRoundTrip(self, lines):
        """
        Any lines of 8-bit text sent dot-stuffed are stored exactly.
        """
        store = RecordingStore(domain=DOMAIN, maxMessageSize=LIMIT * 2)
        store.addUser("bob")
        client = self.connect(store=store)
        text = b"Subject: x\n\n" + b"".join(line + b"\n" for line in lines)
        self.assertEqual(
            client.mail(b"a@b.example", [b"bob@example.org"], text)[-1], 250
        )
        self.assertTrue(store.messages("bob")[0].endswith(text))

    def storedWholeAndTrickled(self, payload, limit=LIMIT, cuts=()):
        """
        Send one transaction whose DATA payload (up to and including the
        final CRLF.CRLF) is C{payload}, once in one piece (or cut at the
        offsets C{cuts}) and once a byte at a time, line by line; return
        (replies, stored messages) for each.
        """
        outcomes = []
        for trickle in (False, True):
            # The store takes whatever the protocol lets through (our
            # headers included): the protocol's count is what is tested.
            store = RecordingStore(domain=DOMAIN, maxMessageSize=limit + 4096)
            store.addUser("bob")
            client = self.connect(store=store, maxMessageSize=limit)
            if trickle:
                # The reference: the line path alone.
                client.protocol._takeTextLines = lambda buf, start: None
            data = (b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
                    b"RCPT TO:<bob@example.org>\r\nDATA\r\n" + payload + b"NOOP\r\n")
            if trickle:
                chunks = [data[i : i + 1] for i in range(len(data))]
            else:
                at = sorted({min(c, len(data)) for c in cuts})
                chunks = [data[a:b] for a, b in zip([0] + at, at + [len(data)])]
            codes = []
            for chunk in chunks:
                codes += [code for code, _ in client.send(chunk)]
            # Without the transaction's random ids.
            stored = [re.sub(rb"id [0-9a-f]+|<[0-9a-f]+@", b"ID", m)
                      for m in store.messages("bob")]
            outcomes.append((codes, stored))
        return outcomes

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.booleans(),
        st.lists(
            st.tuples(
                st.sampled_from([b"", b".", b"..", b"From ", b"Subject: s", b"x", b"\r",
                                 b"X-A: 1", b" cont", b".\r"]),
                st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
                st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]),
            ),
            max_size=15,
        ),
        st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    )
    def test_wholeTextSameAsLineByLine(self, clean, lines, cuts):
        """
        A message text taken in bulk, in whatever pieces it arrives, is
        stored, answered and counted against the size limit exactly as when
        it is taken line by line: dot-stuffing, header sections with and
        without their blank line; and with bare CR and LF (clean=False),
        which the line path handles.
        """
        if clean:
            lines = [(start.replace(b"\r", b""), middle.replace(b"\r", b""), b"\r\n")
                     for start, middle, end in lines]
        payload = b"".join(start + middle + end for start, middle, end in lines)
        payload += b"\r\n.\r\n" if payload and not payload.endswith(b"\r\n") else b".\r\n"
        whole, trickled = self.storedWholeAndTrickled(payload, limit=120, cuts=cuts)
        self.assertEqual(whole, trickled)

    def test_endAfterBulkFollowingBareLF(self):
        """
        A final "." that arrives alone, after lines taken in bulk that
        followed a line ended by a bare LF, still ends the message.
        """
        client = self.connect()
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        self.assertEqual(client.codes(b"Subject: s\r\n\r\nbare\n"), [])
        self.assertEqual(client.codes(b"crlf\r\n"), [])
        self.assertEqual(client.codes(b".\r\n"), [250])
        self.assertTrue(self.store.messages("bob")[0].endswith(b"\n\nbare\ncrlf\n"))

    def test_bigMessageWithBareLFsInOneBurst(self):
        """
        A big message whose lines end in bare LFs (taken line by line, not
        in bulk) arriving in one burst costs time linear in its size: the
        bulk path does not look at the same input again at every line.
        """
        self.store.maxMessageSize = 8 << 20
        client = self.connect(maxMessageSize=8 << 20)
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
        text = b"".join(b"%075d\n" % i for i in range(55000))
        started = time.process_time()
        codes = client.codes(text + b"\r\n.\r\n")
        # About 0.3 s here; looking again at every line, about 5 s.
        self.assertLess(time.process_time() - started, 3)
        self.assertEqual(codes, [250])

    def test_wholeTextTakenInOnePiece(self):
        """
        A short message sent whole with CRLF line endings is not handed to
        the message line by line past its header section.
        """
        lines = []
        realLineReceived = StoreMessage.lineReceived
        self.patch(StoreMessage, "lineReceived",
                   lambda message, line: (lines.append(line),
                                          realLineReceived(message, line)))
        text = b"Subject: one piece\n\nfirst\n.dotted\nFrom here\n"
        self.assertEqual(self.connect().mail(b"a@b.example", [b"bob@example.org"], text)[-1],
                         250)
        self.assertEqual(lines, [b"Subject: one piece", b""])
        self.assertTrue(self.store.messages("bob")[0].endswith(text))

    def test_pipelining(self):
        """
        Pipelined commands are answered in order, each only after the store
        answered the one before it.
        """
        store = HeldStore(domain=DOMAIN)
        store.addUser("bob")
        store.addUser("carol")
        client = self.connect(store=store)
        replies = client.send(
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n"
            b"RCPT TO:<carol@example.org>\r\nDATA\r\n"
        )
        self.assertEqual([code for code, _ in replies], [250] * 5)
        self.assertEqual(client.transport.producerState, "paused")
        store.release()
        self.assertEqual(client.replies(), [(250, b"Recipient address accepted")])
        store.release()
        self.assertEqual([code for code, _ in client.replies()], [250, 354])
        # The end of the message and a pipelined next transaction.
        self.assertEqual(
            client.send(b"hi\r\n.\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"), []
        )
        store.release()
        self.assertEqual([code for code, _ in client.replies()], [250, 250, 221])
        self.assertEqual(len(store.messages("bob")), 1)

    def test_tooManyErrors(self):
        """
        After 20 bad commands the server says 421 and closes the session.
        """
        client = self.connect()
        self.assertEqual(client.codes(b"BOGUS\r\n" * 19), [500] * 19)
        self.assertFalse(client.closed)
        self.assertEqual(client.codes(b"BOGUS\r\nNOOP\r\n"), [500, 421])
        self.assertTrue(client.closed)

    def test_refusedRecipientsCount(self):
        """
        Refused recipients count as errors, so one session cannot probe for
        more than 20 user names.
        """
        client = self.connect()
        client.command(b"MAIL FROM:<a@b.example>")
        codes = client.codes(
            b"".join(b"RCPT TO:<u%d@example.org>\r\n" % n for n in range(25))
        )
        self.assertEqual(codes, [550] * 20 + [421])
        self.assertTrue(client.closed)


class TimeoutTests(SMTPTestCase):
    """
    The idle timeout.
    """

    def test_idleTimeout(self):
        """
        A connection idle for the idle timeout is told 421 and closed.
        """
        client = self.connect()
        self.clock.advance(IDLE - 1)
        self.assertFalse(client.closed)
        self.clock.advance(1)
        self.assertEqual(client.codes(b""), [421])
        self.assertTrue(client.closed)

    def test_tricklingDoesNotResetTimeout(self):
        """
        Bytes that never make a complete line do not keep the connection
        open; complete lines do.
        """
        client = self.connect()
        self.clock.advance(IDLE - 1)
        client.command(b"NOOP")
        for _ in range(IDLE - 1):
            self.clock.advance(1)
            client.send(b"N")
        self.assertFalse(client.closed)
        self.clock.advance(1)
        self.assertTrue(client.closed)

    def test_timeoutInData(self):
        """
        The idle timeout applies in the middle of a message too, and nothing
        of the message is stored.
        """
        client = self.connect()
        client.send(
            b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nhalf\r\n"
        )
        self.clock.advance(IDLE)
        self.assertTrue(client.closed)
        client.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.store.deliveries, [])

    def test_noTimeoutWhileStoring(self):
        """
        While the store works, the idle timer is stopped; it starts again
        with the reply.
        """
        store = HeldStore(domain=DOMAIN)
        store.addUser("bob")
        client = self.connect(store=store)
        client.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n")
        self.clock.advance(IDLE * 2)
        self.assertFalse(client.closed)
        store.release()
        self.assertEqual(client.replies(), [(250, b"Recipient address accepted")])
        self.clock.advance(IDLE)
        self.assertTrue(client.closed)


class STARTTLSTests(SMTPTestCase):
    """
    STARTTLS, on a string transport that records the handshake.
    """

    def connectTLS(self):
        transport = TLSStringTransport(peerAddress=PEER, hostAddress=HOST)
        self.context = object()
        return self.connect(transport=transport, tls=self.context)

    def test_advertised(self):
        """
        With a certificate and a transport that can start TLS, EHLO offers
        STARTTLS.
        """
        client = self.connectTLS()
        self.assertIn((250, b"STARTTLS"), client.command(b"EHLO c"))

    def test_notAvailable(self):
        """
        Without a certificate STARTTLS is answered 454.
        """
        client = self.connect(transport=TLSStringTransport(peerAddress=PEER))
        self.assertEqual(client.codes(b"STARTTLS\r\n"), [454])

    def test_startTLS(self):
        """
        STARTTLS starts TLS, forgets the transaction, stops offering STARTTLS,
        and mail then received says ESMTPS.
        """
        client = self.connectTLS()
        client.command(b"EHLO c")
        client.command(b"MAIL FROM:<a@b.example>")
        self.assertEqual(client.codes(b"STARTTLS\r\n"), [220])
        self.assertIs(client.transport.tlsContext, self.context)
        replies = client.command(b"EHLO c")
        self.assertNotIn((250, b"STARTTLS"), replies)
        self.assertEqual(client.codes(b"RCPT TO:<bob@example.org>\r\n"), [503])
        self.assertEqual(client.codes(b"STARTTLS\r\n"), [503])
        client.mail(b"a@b.example", [b"bob@example.org"], b"secret\n", hello=False)
        self.assertIn(b"with ESMTPS id", self.store.messages("bob")[0])

    def test_inputAfterSTARTTLSDropped(self):
        """
        Commands that came in the same packet as STARTTLS (in clear, before
        the handshake) are dropped, not run after it.
        """
        client = self.connectTLS()
        client.command(b"EHLO c")
        codes = client.codes(
            b"STARTTLS\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\n"
        )
        self.assertEqual(codes, [220])
        self.assertEqual(client.codes(b"RCPT TO:<bob@example.org>\r\n"), [503])


# -- TLS files and the command line


def makeCertificate(directory, hostname="localhost"):
    """
    A self-signed certificate for C{hostname} and 127.0.0.1, and its key.

    @return: the paths of the certificate and the key.
    """
    made = certs.makeCertificate(directory, hostname, addresses=["127.0.0.1"])
    return made.child("cert.pem").path, made.child("key.pem").path


class OptionsTests(SynchronousTestCase):
    """
    The SMTP options of C{twistd simplemail} and the services they make.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def assertUsageError(self, *argv):
        exc = self.assertRaises(usage.UsageError, self.parse, *argv)
        self.assertNotIn("\n", str(exc))
        return str(exc)

    def test_smtpOffByDefault(self):
        """
        Without --smtp there is no SMTP listener.
        """
        self.assertEqual(self.parse()["smtp"], [])

    def test_smtpRepeatable(self):
        """
        --smtp may be given several times.
        """
        options = self.parse(
            "--smtp", "tcp:2525", "--smtp", "tcp:2526:interface=127.0.0.2"
        )
        self.assertEqual(options["smtp"], ["tcp:2525", "tcp:2526:interface=127.0.0.2"])

    def test_badEndpoint(self):
        """
        A malformed --smtp endpoint is a one-line usage error.
        """
        self.assertIn(
            "bad --smtp endpoint", self.assertUsageError("--smtp", "tcp:nope")
        )

    def test_tlsOptions(self):
        """
        The TLS options need --smtp and a certificate, and refuse unreadable
        files, files without a certificate or key, and a key that does not
        match the certificate, each with a one-line usage error.
        """
        cert, key = makeCertificate(self.mktemp())
        otherCert, otherKey = makeCertificate(self.mktemp())
        self.assertIn("need --smtp", self.assertUsageError("--smtp-tls-cert", cert))
        self.assertIn(
            "needs --smtp-tls-cert",
            self.assertUsageError("--smtp", "tcp:2525", "--smtp-tls-key", key),
        )
        self.assertIn(
            "cannot read",
            self.assertUsageError(
                "--smtp", "tcp:2525", "--smtp-tls-cert", cert + ".no"
            ),
        )
        self.assertIn(
            "no PEM private key",
            self.assertUsageError("--smtp", "tcp:2525", "--smtp-tls-cert", cert),
        )
        self.assertIn(
            "no PEM certificate",
            self.assertUsageError("--smtp", "tcp:2525", "--smtp-tls-cert", key),
        )
        self.assertIn(
            "does not match",
            self.assertUsageError(
                "--smtp",
                "tcp:2525",
                "--smtp-tls-cert",
                cert,
                "--smtp-tls-key",
                otherKey,
            ),
        )
        options = self.parse(
            "--smtp", "tcp:2525", "--smtp-tls-cert", cert, "--smtp-tls-key", key
        )
        self.assertEqual(options["smtp-tls-cert"], cert)

    def test_certificateAndKeyInOneFile(self):
        """
        The key may be in the certificate file.
        """
        cert, key = makeCertificate(self.mktemp())
        with open(cert, "ab") as f, open(key, "rb") as k:
            f.write(k.read())
        self.assertIsNotNone(loadTLSContextFactory(cert).getContext())

    def test_makeService(self):
        """
        makeService adds one listener per --smtp endpoint, with STARTTLS when
        a certificate is given.
        """
        cert, key = makeCertificate(self.mktemp())
        options = self.parse(
            "--spool",
            self.mktemp(),
            "--smtp",
            "tcp:2525",
            "--smtp",
            "tcp:2526",
            "--smtp-tls-cert",
            cert,
            "--smtp-tls-key",
            key,
        )
        top = tap.makeService(options, reactor=MemoryReactor())
        services = [s for s in top if isinstance(s, StreamServerEndpointService)]
        smtpServices = [s for s in services if isinstance(s.factory, SMTPFactory)]
        self.assertEqual(len(smtpServices), 2)
        self.assertIs(smtpServices[0].factory, smtpServices[1].factory)
        self.assertIsNotNone(smtpServices[0].factory.tlsContextFactory)
        factory = smtpServices[0].factory
        self.assertEqual(factory.domain, "localhost")
        self.assertEqual(factory.maxMessageSize, 10 * 1024 * 1024)
        self.assertEqual(factory.timeout, 600)


class UnitTests(SynchronousTestCase):
    """
    The delivery and message objects on their own.
    """

    def test_deliveryWithoutConnection(self):
        """
        A delivery used on its own (not by a protocol) still writes a
        Received: header.
        """
        delivery = StoreDelivery(
            MemoryStore(), {b"example.org"}, "example.org", 100, Clock()
        )
        header = delivery.receivedHeader(
            (b"c.example", b"1.2.3.4"), None, ["a@b", "c@d"]
        )
        self.assertTrue(
            header.startswith(b"Received: from c.example (unknown)\n\tby example.org")
        )
        self.assertIn(b"with ESMTP;\n\tThu, 01 Jan 1970 00:00:00 +0000\n", header)

    def test_messageProvidesIMessage(self):
        """
        L{StoreMessage} provides L{smtp.IMessage}.
        """
        self.assertTrue(tsmtp.IMessage.implementedBy(StoreMessage))


# -- end to end


class SMTPServerProcess(ServerProcess):
    """
    A twistd server with an SMTP listener on another loopback port, chosen
    afresh at every start.
    """

    smtpPort = None

    def args(self, port):
        self.smtpPort = freePort()
        return ServerProcess.args(self, port) + [
            "--smtp",
            "tcp:{}:interface=127.0.0.1".format(self.smtpPort),
        ]


class EndToEndTests(SynchronousTestCase):
    """
    C{smtplib} against a real C{twistd -n simplemail --smtp ...}.
    """

    def setUp(self):
        self.cert, self.key = makeCertificate(os.path.abspath(self.mktemp()))
        self.spool = os.path.abspath(self.mktemp())
        self.server = SMTPServerProcess(
            self.spool,
            extraArgs=[
                "--domain",
                DOMAIN,
                "--max-message-size",
                "20000",
                "--idle-timeout",
                "30",
                "--smtp-tls-cert",
                self.cert,
                "--smtp-tls-key",
                self.key,
            ],
        )
        self.addCleanup(self.server.close)
        self.server.start()
        with self.server.connect() as client:
            for userid in (b"bob", b"carol"):
                self.assertTrue(client.command(b"ADDU " + userid).startswith(b"+OK"))

    def smtp(self):
        client = smtplib.SMTP(
            "127.0.0.1",
            self.server.smtpPort,
            local_hostname="client.example",
            timeout=WAIT,
        )
        self.addCleanup(client.close)
        return client

    def read(self, userid):
        """
        The messages of C{userid}, read with READM over our line protocol.
        """
        with self.server.connect() as client:
            self.assertTrue(client.command(b"USER " + userid).startswith(b"+OK"))
            return client.readAll()

    def mbox(self, userid):
        box = mailbox.mbox(os.path.join(self.spool, userid), create=False)
        try:
            return list(box)
        finally:
            box.close()

    def test_oneRecipient(self):
        """
        A message sent with smtplib is read back, headers and body as sent,
        with READM and with mailbox.mbox, from the envelope sender.
        """
        message = (
            b"From: Alice <alice@elsewhere.example>\r\n"
            b"To: bob@example.org\r\n"
            b"Subject: lunch?\r\n"
            b"\r\n"
            b"At noon?\r\n"
        )
        with self.smtp() as client:
            self.assertEqual(
                client.sendmail(
                    "alice@elsewhere.example", ["bob@example.org"], message
                ),
                {},
            )
        [text] = self.read(b"bob")
        self.assertTrue(
            text.startswith(
                b"Return-Path: <alice@elsewhere.example>\n"
                b"Received: from client.example ([127.0.0.1])\n"
            ),
            text,
        )
        self.assertTrue(text.endswith(message.replace(b"\r\n", b"\n")), text)
        [stored] = self.mbox("bob")
        self.assertTrue(stored.get_from().startswith("alice@elsewhere.example "))
        self.assertEqual(stored["Subject"], "lunch?")
        self.assertEqual(stored.get_payload(), "At noon?\n")
        self.assertIsNotNone(stored["Message-ID"])
        self.assertIsNotNone(stored["Date"])
        self.server.waitForLog("delivered")

    def test_severalRecipients(self):
        """
        Each recipient gets one copy, even when named twice.
        """
        with self.smtp() as client:
            refused = client.sendmail(
                "alice@elsewhere.example",
                ["bob@example.org", "carol@localhost", "BOB@example.org"],
                b"Subject: all\r\n\r\nhello\r\n",
            )
        self.assertEqual(refused, {})
        self.assertEqual(len(self.read(b"bob")), 1)
        self.assertEqual(len(self.read(b"carol")), 1)

    def test_unknownUserAndRelay(self):
        """
        An unknown local user and an address elsewhere are refused with 550;
        the other recipients still get the message.
        """
        with self.smtp() as client:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as caught:
                client.sendmail(
                    "a@b.example",
                    ["nobody@example.org", "x@elsewhere.example"],
                    b"x\r\n",
                )
            self.assertEqual(
                {code for code, _ in caught.exception.recipients.values()}, {550}
            )
            refused = client.sendmail(
                "a@b.example",
                ["x@elsewhere.example", "bob@example.org"],
                b"Subject: y\r\n\r\ny\r\n",
            )
            self.assertEqual(refused["x@elsewhere.example"][0], 550)
        self.assertEqual(len(self.read(b"bob")), 1)
        self.server.waitForLog("refused relaying")

    def test_sizeLimit(self):
        """
        A message over --max-message-size is refused early when its size is
        declared (smtplib does), and after its final dot when it is not;
        nothing is stored.
        """
        big = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
        big = big * 300
        with self.smtp() as client:
            self.assertIn(b"SIZE 20000", client.ehlo()[1])
            with self.assertRaises(smtplib.SMTPSenderRefused) as caught:
                client.sendmail("a@b.example", ["bob@example.org"], big)
            self.assertEqual(caught.exception.smtp_code, 552)
            client.rset()
            self.assertEqual(client.mail("a@b.example")[0], 250)
            self.assertEqual(client.rcpt("bob@example.org")[0], 250)
            self.assertEqual(client.data(big)[0], 552)
            self.assertEqual(client.noop()[0], 250)
        self.assertEqual(self.read(b"bob"), [])

    def test_dotAndFromLines(self):
        """
        Body lines that start with a dot or with "From " arrive as sent;
        the spool file holds the "From " line mboxrd-quoted.
        """
        body = b".leading dot\r\n..two dots\r\n.\r\nFrom the start\r\n>From quoted\r\n"
        with self.smtp() as client:
            client.sendmail(
                "a@b.example", ["bob@example.org"], b"Subject: d\r\n\r\n" + body
            )
        [text] = self.read(b"bob")
        self.assertTrue(text.endswith(b"\n\n" + body.replace(b"\r\n", b"\n")), text)
        with open(os.path.join(self.spool, "bob"), "rb") as f:
            raw = f.read()
        self.assertIn(b"\n>From the start\n>>From quoted\n", raw)
        [stored] = self.mbox("bob")
        self.assertIn(">From the start", stored.get_payload())

    def test_nullSender(self):
        """
        A message from the null sender <> gets MAILER-DAEMON in its mbox
        From line.
        """
        with self.smtp() as client:
            client.sendmail(
                "<>", ["bob@example.org"], b"Subject: bounce\r\n\r\nsorry\r\n"
            )
        [stored] = self.mbox("bob")
        self.assertTrue(stored.get_from().startswith("MAILER-DAEMON "))

    def test_startTLS(self):
        """
        STARTTLS works with the server's certificate, verified for its host
        name, and the message says it came over ESMTPS.
        """
        context = ssl.create_default_context(cafile=self.cert)
        with self.smtp() as client:
            client.ehlo()
            self.assertTrue(client.has_extn("starttls"))
            self.assertEqual(client.starttls(context=context)[0], 220)
            client.ehlo()
            self.assertFalse(client.has_extn("starttls"))
            self.assertIsNotNone(client.sock.getpeercert())
            client.sendmail(
                "a@b.example", ["bob@example.org"], b"Subject: tls\r\n\r\nhush\r\n"
            )
        [text] = self.read(b"bob")
        self.assertIn(b"with ESMTPS id", text)
