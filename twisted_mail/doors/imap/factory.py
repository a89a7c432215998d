"""
The IMAP door's factory and its options: C{--imap ENDPOINT} (repeatable),
C{--imap-tls-cert}/C{--imap-tls-key} for STARTTLS, C{ssl:} for IMAPS.
"""

from twisted_mail.doors.connections import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE,
    SessionFactory,
    checkTLSOptions,
    tlsFromOptions,
)
from twisted_mail.doors.imap.fetch import StructureCache
from twisted_mail.doors.imap.server import IMAPServer

#: RFC 3501 5.4: an inactivity timer of at least 30 minutes.
MIN_IDLE_TIMEOUT = 30 * 60


class IMAPFactory(SessionFactory):
    """
    Builds L{IMAPServer}s over one store.

    @ivar portal: the portal of C{--passwords}, or L{None}: then any
        password opens an existing user.
    @ivar tlsContextFactory: offers STARTTLS when not L{None}.
    @ivar maxMessageSize: the largest APPEND taken.
    @ivar structureCache: ENVELOPE and BODYSTRUCTURE of recent messages,
        shared by the sessions.
    """

    protocol = IMAPServer
    noisy = False
    door = "an IMAP"

    def __init__(
        self,
        store,
        portal=None,
        tlsContextFactory=None,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
        maxConnections=DEFAULT_MAX_CONNECTIONS,
        maxMessageSize=DEFAULT_MAX_MESSAGE_SIZE,
        reactor=None,
    ):
        SessionFactory.__init__(
            self, store, max(idleTimeout, MIN_IDLE_TIMEOUT), maxConnections, reactor)
        self.portal = portal
        self.tlsContextFactory = tlsContextFactory
        self.maxMessageSize = maxMessageSize
        self.structureCache = StructureCache()

    def refusal(self):
        return b"* BYE [UNAVAILABLE] too many connections, try later\r\n"


def checkIMAPOptions(endpoints, certificatePath=None, keyPath=None):
    """
    Check the IMAP options of C{twistd simplemail} as a whole.

    @raise ValueError: with a one-line message for the operator.
    """
    checkTLSOptions("imap", endpoints, certificatePath, keyPath)


def makeIMAPFactoryFromOptions(options, store, portal, reactor):
    """
    The IMAP factory for the parsed options of C{twistd simplemail}.
    """
    return IMAPFactory(
        store,
        portal=portal,
        tlsContextFactory=tlsFromOptions(options, "imap"),
        idleTimeout=options["idle-timeout"],
        maxConnections=options["max-connections"],
        maxMessageSize=options["max-message-size"],
        reactor=reactor,
    )


