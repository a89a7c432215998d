"""
The connection machinery every door shares: the limits' defaults, the one
connection limit (C{--max-connections}), naming the peer in logs, and
loading the TLS files of the C{--*-tls-cert} options.
"""

import re

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from twisted_mail.interfaces import IMailStore

log = Logger()

#: C{--max-message-size}, C{--idle-timeout} and C{--max-connections}.
DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 600
DEFAULT_MAX_CONNECTIONS = 10000


def describePeer(transport):
    """
    A short text naming the other end of a connection, for logs.
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return "?"
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is not None and port is not None:
        return "{}:{}".format(host, port)
    name = getattr(peer, "name", None)
    return name or type(peer).__name__


class Refusal(Protocol):
    """
    Says why the connection is refused, in the door's own words, and closes
    it.
    """

    def __init__(self, text):
        self.text = text

    def connectionMade(self):
        self.transport.write(self.text)
        self.transport.loseConnection()


class LimitedFactory:
    """
    A mixin for a door's factory: at most C{maxConnections} connections at
    once (C{--max-connections}, counted per door); one more gets the door's
    L{refusal} and is closed.  The door's protocol calls L{connectionEnded}
    when its connection ends.

    @ivar connections: the number of connections now open.
    @ivar maxConnections: the limit, or L{None} for none.
    @ivar door: the door's name in the log line of a refusal.
    """

    connections = 0
    maxConnections = None
    door = "a"

    def refusal(self):
        """
        The bytes a refused client is sent.
        """
        raise NotImplementedError

    def admit(self, addr):
        """
        Build the protocol of an admitted connection: by default the
        factory's C{protocol}, given the factory and the reactor's
        C{callLater} (for its idle timeout).
        """
        p = self.protocol()
        p.factory = self
        p.callLater = self.reactor.callLater
        return p

    def buildProtocol(self, addr):
        if self.maxConnections is not None and self.connections >= self.maxConnections:
            log.warn(
                "refused {door} connection from {addr}: {n} connections open",
                door=self.door,
                addr=addr,
                n=self.connections,
            )
            p = Refusal(self.refusal())
            p.factory = self
            return p
        p = self.admit(addr)
        if p is not None:
            self.connections += 1
        return p

    def connectionEnded(self):
        """
        An admitted connection has ended.
        """
        self.connections -= 1


class SessionFactory(LimitedFactory, Factory):
    """
    The factory of a door whose connections hold mailbox sessions over one
    store (the line protocol, POP3): its protocols add themselves to
    C{protocols} while connected, and each has an C{endSession()}
    returning a L{Deferred}.

    @ivar store: the L{IMailStore}.
    @ivar idleTimeout: C{--idle-timeout}, in seconds.
    @ivar protocols: the protocols connected now.
    """

    noisy = False

    def __init__(self, store, idleTimeout, maxConnections, reactor):
        if reactor is None:
            from twisted.internet import reactor
        self.store = IMailStore(store)
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.reactor = reactor
        self.connections = 0
        self.protocols = set()

    def endSessions(self):
        """
        End every open session (the server is stopping).

        @return: a L{Deferred} firing when all have ended.
        """
        return defer.DeferredList(
            [p.endSession() for p in list(self.protocols)], consumeErrors=True
        )


def loadTLSContextFactory(certificatePath, keyPath=None):
    """
    A TLS context factory for C{STARTTLS}/C{STLS} from PEM files.

    @param certificatePath: the server certificate, followed by any
        intermediate certificates (a "full chain" file); it may hold the
        private key too.
    @param keyPath: the private key (unencrypted PEM); default: the
        certificate file.
    @return: a L{twisted.internet.ssl.CertificateOptions}.
    @raise ValueError: with a message fit for the operator when a file
        cannot be read, holds no certificate or key, or the key does not
        match the certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from OpenSSL import SSL
    from twisted.internet import ssl

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError("cannot read {}: {}".format(path, e.strerror))

    certificateData = read(certificatePath)
    keyPath = keyPath or certificatePath
    keyData = certificateData if keyPath == certificatePath else read(keyPath)
    try:
        certificates = x509.load_pem_x509_certificates(certificateData)
    except ValueError:
        raise ValueError("no PEM certificate in {}".format(certificatePath))
    match = re.search(
        rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----.*?"
        rb"-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----",
        keyData,
        re.DOTALL,
    )
    if match is None:
        raise ValueError("no PEM private key in {}".format(keyPath))
    try:
        key = serialization.load_pem_private_key(match.group(0), password=None)
    except (ValueError, TypeError) as e:
        raise ValueError("cannot load the private key in {}: {}".format(keyPath, e))
    # pyOpenSSL takes cryptography's objects (its own are deprecated);
    # CertificateOptions hands them to it as they are.
    options = ssl.CertificateOptions(
        privateKey=key,
        certificate=certificates[0],
        extraCertChain=certificates[1:],
    )
    try:
        options.getContext()
    except SSL.Error:
        raise ValueError(
            "the private key in {} does not match the certificate in {}".format(
                keyPath, certificatePath
            )
        )
    return options


def startConnection(transport):
    """
    What every door does as a connection starts: no Nagle delay (replies
    are written whole), and whether TLS protects it from the first byte
    (an C{ssl:} endpoint).
    """
    from twisted.internet.interfaces import INegotiated, ISSLTransport

    setNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setNoDelay is not None:
        try:
            setNoDelay(True)
        except OSError:
            pass
    return ISSLTransport.providedBy(transport) or INegotiated.providedBy(transport)


def checkTLSOptions(door, endpoints, certificatePath=None, keyPath=None):
    """
    Check a door's C{--DOOR}, C{--DOOR-tls-cert} and C{--DOOR-tls-key}
    options as a whole (the files are loaded once, to find a mistake now).

    @param door: the option's name, e.g. C{"pop3"}.
    @raise ValueError: with a one-line message for the operator.
    """
    if (certificatePath or keyPath) and not endpoints:
        raise ValueError("--{0}-tls-cert and --{0}-tls-key need --{0}".format(door))
    if keyPath and not certificatePath:
        raise ValueError("--{0}-tls-key needs --{0}-tls-cert".format(door))
    if certificatePath:
        loadTLSContextFactory(certificatePath, keyPath)


def isTLSEndpoint(description):
    """
    Whether a server endpoint description is TLS from the start (C{ssl:}).
    """
    return description.split(":", 1)[0].strip().lower() == "ssl"
