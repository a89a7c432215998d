"""
TLS: the server on an ssl: endpoint, verified by a client through a tls:
endpoint; plain TCP and TLS side by side.
"""

import socket

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.protocols.basic import LineReceiver
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from twisted_mail.service import tap

from .certs import makeCertificate
from twisted_mail.stores.memory import MemoryStore
from twisted_mail.doors.line import MailServerFactory


class _Greeting(LineReceiver):
    delimiter = b"\r\n"

    def connectionMade(self):
        self.lines = []
        self.done = defer.Deferred()

    def lineReceived(self, line):
        self.lines.append(line)
        if len(self.lines) == 1:
            self.sendLine(b"LSTU")
        elif line == b".":
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(self.lines)


def _greet(description):
    """
    Connect to a client endpoint description, send LSTU, and fire with the
    lines received; fails if the connection cannot be made or verified.
    """
    endpoint = endpoints.clientFromString(reactor, description)
    d = endpoint.connect(protocol.Factory.forProtocol(_Greeting))
    d.addCallback(lambda proto: proto.done)
    return d


def _freePort():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TLSTests(TestCase):
    timeout = 30

    def setUp(self):
        self.certs = makeCertificate(self.mktemp())
        self.store = MemoryStore()
        self.store.addUser("bob")

    def listenTLS(self):
        description = "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}".format(
            self.certs.child("key.pem").path, self.certs.child("cert.pem").path
        )
        endpoint = endpoints.serverFromString(reactor, description)
        d = endpoint.listen(MailServerFactory(self.store))

        def listening(port):
            self.addCleanup(port.stopListening)
            return port.getHost().port

        return d.addCallback(listening)

    @defer.inlineCallbacks
    def test_verifiedConnection(self):
        """
        A client that trusts the server's certificate and names its host
        talks to the server over TLS.
        """
        port = yield self.listenTLS()
        lines = yield _greet(
            "tls:localhost:{}:trustRoots={}".format(port, self.certs.child("roots").path)
        )
        self.assertEqual(lines, [b"+OK simplemail ready", b"+OK 1 users", b"bob", b"."])

    @defer.inlineCallbacks
    def test_wrongHostRefused(self):
        """
        A client refuses a server whose certificate names another host.
        """
        port = yield self.listenTLS()
        lines = yield _greet(
            "tls:127.0.0.1:{}:trustRoots={}".format(port, self.certs.child("roots").path)
        )
        self.assertEqual(lines, [])

    @defer.inlineCallbacks
    def test_untrustedRefused(self):
        """
        A client that does not trust the certificate refuses the server.
        """
        port = yield self.listenTLS()
        other = makeCertificate(self.mktemp())
        lines = yield _greet(
            "tls:localhost:{}:trustRoots={}".format(port, other.child("roots").path)
        )
        self.assertEqual(lines, [])

    @defer.inlineCallbacks
    def test_plainAndTLSSideBySide(self):
        """
        twistd's options can serve plain TCP and TLS at once, on one spool.
        """
        plain, secure = _freePort(), _freePort()
        options = tap.Options()
        options.parseOptions(
            [
                "--spool", self.mktemp(),
                "--listen", "tcp:{}:interface=127.0.0.1".format(plain),
                "--listen", "ssl:{}:interface=127.0.0.1:privateKey={}:certKey={}".format(
                    secure, self.certs.child("key.pem").path,
                    self.certs.child("cert.pem").path,
                ),
            ]
        )
        service = tap.makeService(options)
        service.startService()
        self.addCleanup(service.stopService)
        plainLines = yield _greet("tcp:127.0.0.1:{}".format(plain))
        secureLines = yield _greet(
            "tls:localhost:{}:trustRoots={}".format(secure, self.certs.child("roots").path)
        )
        self.assertEqual(plainLines, [b"+OK simplemail ready", b"+OK 0 users", b"."])
        self.assertEqual(secureLines, plainLines)
