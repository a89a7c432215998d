"""
Opening the server's listening sockets: bound once when the server is built
(so that a port in use is one line and exit status 1, before twistd
daemonizes), or adopted from the supervisor by a worker process.

A I{door} is one kind of listener: the option that lists its endpoint
descriptions (C{--listen}, C{--smtp}, ...) and the factory serving them.
Everything here works on (option, description, factory) and knows nothing
of the protocols behind them.
"""

import os
import socket

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints, error, tcp, unix
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

#: The endpoint types whose sockets a worker can adopt (C{tcp:}, C{tcp6:},
#: C{ssl:}, C{unix:}); see L{checkShareable}.  Not C{systemd:}: a worker
#: parsing it would look for sockets systemd passed to itself.
SHAREABLE = (
    endpoints.TCP4ServerEndpoint,
    endpoints.TCP6ServerEndpoint,
    endpoints.SSL4ServerEndpoint,
    endpoints.UNIXServerEndpoint,
)


class CannotListen(Exception):
    """
    A listener could not be opened.

    @ivar option: the option that named it, without dashes (C{"listen"}).
    @ivar description: its endpoint description.
    @ivar reason: why, in a few words (C{"Address already in use"}).
    """

    def __init__(self, option, description, reason):
        Exception.__init__(self, option, description, reason)
        self.option = option
        self.description = description
        self.reason = reason

    def __str__(self):
        return "cannot listen on {} (--{}): {}".format(
            self.description, self.option, self.reason
        )


def _reason(failure):
    """
    The few words that say why listening failed, from the failure.
    """
    e = failure.value
    if isinstance(e, error.CannotListenError):
        cause = e.socketError
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        return str(cause)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def listenNow(reactor, option, description, factory):
    """
    Open the listener C{description} at once, serving C{factory}.

    @return: the L{IListeningPort}.
    @raise CannotListen: if it cannot be opened (a port in use, no
        permission, an endpoint that does not listen at once).
    """
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except Exception as e:
        raise CannotListen(option, description, str(e) or type(e).__name__)
    result = []
    endpoint.listen(factory).addBoth(result.append)
    if not result:
        raise CannotListen(option, description, "the endpoint does not listen at once")
    if isinstance(result[0], Failure):
        raise CannotListen(option, description, _reason(result[0]))
    return result[0]


def checkShareable(reactor, option, description):
    """
    Check that worker processes can share C{description}'s socket.

    @raise CannotListen: if they cannot (the reason names those that can).
    """
    endpoint = endpoints.serverFromString(reactor, description)
    if not isinstance(endpoint, SHAREABLE):
        raise CannotListen(
            option,
            description,
            "--workers shares only tcp:, tcp6:, ssl: and unix: endpoints",
        )


@implementer(IStreamServerEndpoint)
class _Bound:
    """
    An endpoint whose port is already open: L{ListeningService} starts it.
    """

    def __init__(self, port):
        self.port = port

    def listen(self, factory):
        return defer.succeed(self.port)


class ListeningService(StreamServerEndpointService):
    """
    One listener of a door, opened when the server is built and closed when
    it stops.

    @ivar option: the door's option (C{"listen"}, C{"smtp"}, ...).
    @ivar description: the endpoint description.
    @ivar port: the L{IListeningPort}.
    """

    def __init__(self, option, description, port, factory):
        StreamServerEndpointService.__init__(self, _Bound(port), factory)
        self.option = option
        self.description = description
        self.port = port


class Listeners:
    """
    Opens each door's listeners, each one as a L{ListeningService}.

    The default binds each endpoint now; C{inherited} (for a worker) adopts
    the sockets the supervisor passed instead, in the order it opened them.

    @ivar opened: the services made, in order.
    """

    def __init__(self, reactor, inherited=None):
        self.reactor = reactor
        self.inherited = None if inherited is None else list(inherited)
        self.opened = []

    def listen(self, option, description, factory):
        """
        Open the listener C{description} of the door C{option}.

        @return: its L{ListeningService}.
        @raise CannotListen: if it cannot be opened; those already opened are
            closed first.
        """
        try:
            if self.inherited is None:
                port = listenNow(self.reactor, option, description, factory)
            else:
                port = self._adopt(option, description, factory)
        except CannotListen:
            self.closeAll()
            raise
        listener = ListeningService(option, description, port, factory)
        self.opened.append(listener)
        return listener

    def _adopt(self, option, description, factory):
        if not self.inherited:
            raise CannotListen(option, description, "the supervisor passed no socket for it")
        wantOption, wantDescription, fd = self.inherited.pop(0)
        if (wantOption, wantDescription) != (option, description):
            raise CannotListen(
                option,
                description,
                "the supervisor passed the socket of {} (--{})".format(
                    wantDescription, wantOption
                ),
            )
        port = listenNow(_AdoptingReactor(self.reactor, fd), option, description, factory)
        os.close(fd)  # the port holds its own copy
        return port

    def closeAll(self):
        """
        Close every listener opened so far (the server will not start).
        """
        for listener in self.opened:
            listener.port.stopListening()
        del self.opened[:]


class _InheritedUNIXPort(unix.Port):
    """
    A UNIX socket bound by the supervisor: the socket file is the
    supervisor's, so a worker that stops leaves it in place.
    """

    def connectionLost(self, reason):
        tcp.Port.connectionLost(self, reason)


class _AdoptingReactor:
    """
    Stands in for the reactor while a worker's endpoint "listens": instead
    of binding, each listen call adopts the listening socket C{fd} that the
    supervisor bound from the same description.  TLS (C{ssl:}) is added
    around the factory, as the reactor's C{listenSSL} does.
    """

    def __init__(self, reactor, fd):
        self._reactor = reactor
        self._fd = fd

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def _family(self):
        s = socket.socket(fileno=os.dup(self._fd))
        try:
            return s.family
        finally:
            s.close()

    def listenTCP(self, port, factory, backlog=50, interface=""):
        return self._reactor.adoptStreamPort(self._fd, self._family(), factory)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.listenTCP(
            port, TLSMemoryBIOFactory(contextFactory, False, factory), backlog, interface
        )

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        port = _InheritedUNIXPort._fromListeningDescriptor(self._reactor, self._fd, factory)
        port.mode = mode
        port.startListening()
        return port
