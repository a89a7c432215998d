"""
The connection machinery every door shares: the limits' defaults, the one
connection limit (C{--max-connections}), naming the peer in logs, and
loading the TLS files of the C{--*-tls-cert} options.
"""

import re

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_mail.interfaces import IMailStore

log = Logger()

#: Replies are written in batches of about this many bytes (L{Streamer}).
BATCH_SIZE = 64 * 1024

#: C{--max-message-size}, C{--idle-timeout} and C{--max-connections}.
DEFAULT_MAX_MESSAGE_SIZE = 10 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 600
DEFAULT_MAX_CONNECTIONS = 10000

#: How long, in seconds, a connection the server closes may take to go
#: (its last reply written, TLS's close_notify exchanged) before it is cut.
CLOSE_GRACE = 10


def writeNow(transport, data):
    """
    Write C{data} to C{transport}, straight to the socket when that is a
    plain TCP connection with nothing waiting to be written.

    C{transport.write} only buffers: the reactor then watches the socket
    for writing (one C{epoll_ctl}), writes at its next iteration through
    its dispatch, and stops watching (another C{epoll_ctl}).  For a short
    reply to a waiting client the socket almost always takes it all at
    once, so the reactor's round trip is pure cost: about a tenth of the
    line door's CPU per delivered message.  Whatever the socket does not
    take (or any error, which the transport then reports as it would have)
    goes to C{transport.write}, after nothing else: the order of the bytes
    is kept.  TLS, wrapping protocols (TLS, HAProxy), a registered producer
    and test transports always go through C{transport.write}.
    """
    if (
        type(transport) is not tcp.Server
        or transport.TLS
        or transport.producer is not None
        or transport.dataBuffer
        or transport._tempDataBuffer
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        # Full (EAGAIN) or failing: the transport buffers it, and its next
        # write reports a failure as connection lost.
        sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)


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


class Closing:
    """
    A mixin for a door's protocol: L{closeConnection} closes the connection
    for good, even when C{loseConnection} alone would not.

    C{loseConnection} waits for what is written to be sent and, under TLS,
    for the close_notify exchange: a client that never starts (or never
    finishes) the TLS handshake, or stops reading, would keep the connection
    (and its place under C{--max-connections}) forever.  So the connection
    is aborted if it is still open L{closeGrace} seconds later.

    The protocol needs C{transport} and C{callLater} (L{LimitedFactory.admit}
    gives it the reactor's), and calls L{connectionClosed} from its
    C{connectionLost}.

    @ivar hangingUp: whether L{closeConnection} was called: from then on the
        protocol acts on nothing the client sends (a command that arrives
        after the server said it is closing is ignored).
    """

    hangingUp = False
    closeGrace = CLOSE_GRACE
    _cutCall = None

    def closeConnection(self):
        """
        Close the connection once what is written is sent; abort it if it
        is still open L{closeGrace} seconds later.
        """
        self.hangingUp = True
        self.transport.loseConnection()
        if self._cutCall is None:
            self._cutCall = self.callLater(self.closeGrace, self._cutConnection)

    def _cutConnection(self):
        self._cutCall = None
        log.info(
            "aborting connection from {peer}: still open {grace} s after closing",
            peer=describePeer(self.transport),
            grace=self.closeGrace,
        )
        self.transport.abortConnection()

    def connectionClosed(self):
        """
        The connection is gone: forget the pending abort.
        """
        self.hangingUp = True
        call, self._cutCall = self._cutCall, None
        if call is not None and call.active():
            call.cancel()


class Refusal(Closing, Protocol):
    """
    Says why the connection is refused, in the door's own words, and closes
    it.
    """

    def __init__(self, text, callLater):
        self.text = text
        self.callLater = callLater

    def connectionMade(self):
        self.transport.write(self.text)
        self.closeConnection()

    def connectionLost(self, reason):
        self.connectionClosed()


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
            p = Refusal(self.refusal(), self.reactor.callLater)
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
    store (the line protocol, POP3, IMAP): its protocols add themselves to
    C{protocols} while connected, and each has a C{stopServing()} (answer
    the command under way, tell the client, close, end the session)
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
            [p.stopServing() for p in list(self.protocols)], consumeErrors=True
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


class HeldCommands:
    """
    A mixin for a door's protocol that reads its own input (POP3, IMAP): one
    command at a time, the ones pipelined behind it held (the transport
    paused while too much waits), and the idle timeout started again when a
    command is done.  The protocol sets C{_busy} while a command is
    outstanding, has a C{_closing()}, and reads what is held in
    C{_processHeld()}.
    """

    _busy = False
    _transportPaused = False
    _stopping = False
    #: What a client is told when the server stops (the door's own words).
    stoppingNotice = b""

    def stopServing(self):
        """
        The server is stopping: the command under way is answered, then the
        client is told (L{stoppingNotice}) and the connection closed, and
        the session ends (C{endSession}).  Commands held behind it are not
        run: ending the session under them would answer them as if the
        client had never logged in.

        @return: C{endSession}'s L{Deferred}.
        """
        if not self._closing():
            self._stopping = True
            if not self._busy:
                self._hangUpStopping()
        return self.endSession()

    def _hangUpStopping(self):
        self.transport.write(self.stoppingNotice)
        getattr(self, "closeConnection", self.transport.loseConnection)()

    def _resume(self):
        self._busy = False
        if self._closing():
            return
        if self._stopping:
            self._hangUpStopping()
            return
        self.setTimeout(self.factory.idleTimeout)
        if self._transportPaused:
            self._transportPaused = False
            self.transport.resumeProducing()
        self._processHeld()


def tlsFromOptions(options, door):
    """
    The STARTTLS context factory of C{--<door>-tls-cert}/C{--<door>-tls-key},
    or L{None} when the option is not given.

    @raise ValueError: if the TLS files cannot be used.
    """
    if not options.get(door + "-tls-cert"):
        return None
    return loadTLSContextFactory(options[door + "-tls-cert"], options.get(door + "-tls-key"))


@implementer(IPullProducer)
class Streamer:
    """
    Writes a long reply as the transport takes it (a pull producer), about
    L{BATCH_SIZE} bytes at a time, for the POP3 and IMAP doors: pieces
    come from an iterator of L{bytes} and L{Deferred}s firing with bytes,
    so that no more than a batch and one message are held at a time, and a
    client that stops reading stops the production.

    @ivar done: fires when everything is written.
    """

    def __init__(self, pieces, progress=lambda: None):
        self._pieces = iter(pieces)
        self._progress = progress
        self._transport = None
        self._waiting = False
        self._batch = []
        self._size = 0
        self.done = defer.Deferred()

    def start(self, transport):
        self._transport = transport
        transport.registerProducer(self, False)
        return self.done

    def resumeProducing(self):
        while self._transport is not None and not self._waiting:
            try:
                piece = next(self._pieces)
            except StopIteration:
                transport, self._transport = self._transport, None
                transport.writeSequence(self._batch)
                self._batch = []
                transport.unregisterProducer()
                self.done.callback(None)
                return
            except Exception:
                self._fail()
                return
            if isinstance(piece, defer.Deferred):
                result = []
                piece.addBoth(result.append)
                if not result:
                    self._waiting = True
                    piece.addBoth(lambda _: self._arrived(result))
                    return
                piece = result[0]
                if isinstance(piece, Exception) or hasattr(piece, "trap"):
                    self._fail(piece)
                    return
            if self._add(piece):
                return

    def _add(self, piece):
        self._batch.append(piece)
        self._size += len(piece)
        if self._size >= BATCH_SIZE:
            batch, self._batch, self._size = self._batch, [], 0
            self._transport.writeSequence(batch)
            self._progress()
            return True
        return False

    def _arrived(self, result):
        self._waiting = False
        if self._transport is None:
            return None
        piece = result[0]
        if hasattr(piece, "trap"):
            self._fail(piece)
            return None
        if not self._add(piece):
            self.resumeProducing()
        return None

    def _fail(self, failure=None):
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.unregisterProducer()
        if failure is None:
            self.done.errback()
        else:
            self.done.errback(failure)

    def stopProducing(self):
        self._transport = None


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


class BatchedLog:
    """
    Log lines gathered over one reactor iteration and emitted as one event:
    twistd's text observer costs about 30 microseconds per event (its time
    stamp, mostly), so a delivery line per message was a tenth of the
    server's CPU under load.  Each line reads as it would alone; lines of
    one iteration are joined with C{"; "}.

    @param logger: the L{Logger} to emit through.
    """

    def __init__(self, logger, reactor):
        self._logger = logger
        self._reactor = reactor
        self._lines = []

    def info(self, line):
        """
        Log C{line} (already formatted) at info level with the others of
        this reactor iteration.
        """
        self._lines.append(line)
        if len(self._lines) == 1:
            self._reactor.callLater(0, self._flush)

    def _flush(self):
        lines, self._lines = self._lines, []
        if lines:
            self._logger.info("{lines}", lines="; ".join(lines))
