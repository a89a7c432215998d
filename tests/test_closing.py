"""
Every door closes the connections it means to close, TLS or not: an idle
client on an C{ssl:} port that never starts the handshake is gone soon
after the idle timeout (C{loseConnection} alone would wait for TLS
forever), and so is one refused by C{--max-connections}.

Real sockets and the real reactor; each wait is for an event (the
connection's end), bounded only by the test's generous timeout.
"""

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_mail.doors import connections
from twisted_mail.doors.line import MailServerFactory
from twisted_mail.doors.pop3.server import POP3Factory
from twisted_mail.doors.smtp.factory import makeSMTPFactory
from twisted_mail.doors.web.site import _Channel, makeWebFactory
from twisted_mail.stores.memory import MemoryStore

from .certs import makeCertificate


class _Silent(protocol.Protocol):
    """
    A client that connects over plain TCP and sends nothing (no TLS
    handshake); C{closed} fires with what it received when the server ends
    the connection.
    """

    def connectionMade(self):
        self.received = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self.received)


class _FirstLine(protocol.Protocol):
    """
    A client that reads the server's greeting and closes.
    """

    def connectionMade(self):
        self.greeting = defer.Deferred()
        self.closed = defer.Deferred()
        self._data = b""

    def connectionLost(self, reason):
        self.closed.callback(None)

    def dataReceived(self, data):
        self._data += data
        if b"\n" in self._data and not self.greeting.called:
            self.greeting.callback(self._data.split(b"\r\n")[0])
            self.transport.loseConnection()


class ClosingUnderTLSTests(TestCase):
    timeout = 120

    def setUp(self):
        self.certs = makeCertificate(self.mktemp())
        self.store = MemoryStore()
        self.store.addUser("bob")
        # A short grace, for the test's sake; the idle timeout is 1 s.
        self.patch(connections.Closing, "closeGrace", 1)
        self.patch(_Channel, "abortTimeout", 1)

    def listenTLS(self, factory):
        description = "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}".format(
            self.certs.child("key.pem").path, self.certs.child("cert.pem").path
        )
        d = endpoints.serverFromString(reactor, description).listen(factory)

        def listening(port):
            self.addCleanup(port.stopListening)
            return port.getHost().port

        return d.addCallback(listening)

    def connectSilently(self, port):
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        return endpoint.connect(protocol.Factory.forProtocol(_Silent))

    @defer.inlineCallbacks
    def assertIdleClosed(self, factory):
        port = yield self.listenTLS(factory)
        client = yield self.connectSilently(port)
        yield client.closed
        self.assertEqual(factory.connections, 0)

    def test_lineDoorClosesSilentTLSClient(self):
        """
        The line protocol on an ssl: port closes a client that never starts
        TLS once it has been idle.
        """
        return self.assertIdleClosed(MailServerFactory(self.store, idleTimeout=1))

    def test_pop3DoorClosesSilentTLSClient(self):
        """
        POP3 on an ssl: port closes a client that never starts TLS once it
        has been idle.
        """
        return self.assertIdleClosed(POP3Factory(self.store, idleTimeout=1))

    def test_smtpDoorClosesSilentTLSClient(self):
        """
        SMTP on an ssl: port closes a client that never starts TLS once it
        has been idle.
        """
        return self.assertIdleClosed(
            makeSMTPFactory(self.store, "example.com", 1024 * 1024, 1))

    def test_webDoorClosesSilentTLSClient(self):
        """
        The web door on an ssl: port closes a client that never starts TLS
        once it has been idle.
        """
        return self.assertIdleClosed(
            makeWebFactory(self.store, "example.com", idleTimeout=1))

    @defer.inlineCallbacks
    def test_silentClientsDoNotLockOutOthers(self):
        """
        With --max-connections 1 on a POP3 ssl: port, a silent client and a
        refused one are both closed, and a real client then gets in.
        """
        factory = POP3Factory(self.store, idleTimeout=1, maxConnections=1)
        port = yield self.listenTLS(factory)
        first = yield self.connectSilently(port)
        refused = yield self.connectSilently(port)
        yield refused.closed
        yield first.closed
        self.assertEqual(factory.connections, 0)
        endpoint = endpoints.clientFromString(
            reactor, "tls:localhost:{}:trustRoots={}".format(
                port, self.certs.child("roots").path))
        client = yield endpoint.connect(protocol.Factory.forProtocol(_FirstLine))
        greeting = yield client.greeting
        yield client.closed
        self.assertTrue(greeting.startswith(b"+OK"), greeting)


class _TLSLikeTransport(StringTransport):
    """
    A transport whose C{loseConnection} waits (as TLS does for the peer's
    close_notify); only C{abortConnection} ends it.
    """

    aborted = False

    def loseConnection(self):
        self.closeRequested = True

    def abortConnection(self):
        self.aborted = True
        StringTransport.loseConnection(self)


class QuitUnderTLSTests(SynchronousTestCase):
    def test_smtpQuitAborted(self):
        """
        After SMTP QUIT (221), a connection that does not close within the
        grace is aborted.
        """
        clock = Clock()
        store = MemoryStore()
        factory = makeSMTPFactory(store, "example.com", 1024 * 1024, 600, reactor=clock)
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1000))
        transport = _TLSLikeTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"QUIT\r\n")
        self.assertIn(b"221 ", transport.value())
        self.assertFalse(transport.aborted)
        clock.advance(connections.CLOSE_GRACE)
        self.assertTrue(transport.aborted)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(clock.getDelayedCalls(), [])
