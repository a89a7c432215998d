"""
Tests for L{twisted_mail.doors.connections.writeNow}: replies written
straight to a plain TCP socket, in order, whatever the socket takes.
"""

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from twisted_mail.doors.connections import writeNow


class _Server(protocol.Protocol):
    def connectionMade(self):
        self.factory.connected.callback(self)


class _Collect(protocol.Protocol):
    def __init__(self, expected):
        self.expected = expected
        self.received = []
        self.size = 0
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received.append(data)
        self.size += len(data)
        if self.size >= self.expected and not self.done.called:
            self.done.callback(b"".join(self.received))


class WriteNowOverTCPTests(TestCase):
    """
    L{writeNow} on a real loopback connection.
    """

    @defer.inlineCallbacks
    def connected(self, expected):
        factory = protocol.Factory.forProtocol(_Server)
        factory.connected = defer.Deferred()
        port = yield endpoints.TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = _Collect(expected)
        yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client)
        self.addCleanup(client.transport.loseConnection)
        server = yield factory.connected
        self.addCleanup(server.transport.loseConnection)
        return server, client

    @defer.inlineCallbacks
    def test_shortReplySentAtOnce(self):
        """
        A short reply reaches the client without the reactor being asked to
        watch the socket for writing.
        """
        server, client = yield self.connected(len(b"+OK done\r\n"))
        writeNow(server.transport, b"+OK done\r\n")
        self.assertNotIn(server.transport, reactor.getWriters())
        self.assertEqual(server.transport.dataBuffer, b"")
        received = yield client.done
        self.assertEqual(received, b"+OK done\r\n")

    @defer.inlineCallbacks
    def test_afterBufferedBytes(self):
        """
        Bytes the transport still holds go first: a reply written now comes
        after them.
        """
        server, client = yield self.connected(len(b"first second"))
        server.transport.write(b"first ")
        writeNow(server.transport, b"second")
        received = yield client.done
        self.assertEqual(received, b"first second")

    @defer.inlineCallbacks
    def test_moreThanTheSocketTakes(self):
        """
        What the socket does not take at once is buffered and sent after,
        every byte in order, and a later reply follows it.
        """
        big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than a socket buffer
        server, client = yield self.connected(len(big) + len(b"end"))
        writeNow(server.transport, big)
        writeNow(server.transport, b"end")
        received = yield client.done
        self.assertEqual(len(received), len(big) + 3)
        self.assertTrue(received == big + b"end")


class WriteNowOtherTransportsTests(SynchronousTestCase):
    """
    L{writeNow} on transports that are not a plain TCP connection.
    """

    def test_otherTransportWrites(self):
        """
        A transport that is not a TCP connection (here a test transport)
        gets the bytes through its own C{write}.
        """
        transport = StringTransport()
        writeNow(transport, b"+OK\r\n")
        self.assertEqual(transport.value(), b"+OK\r\n")
