"""
Listening for SMTP: the factory that C{twistd simplemail --smtp ENDPOINT}
listens with, the TLS files of C{--smtp-tls-cert}, and the checks of those
options.
"""


from twisted.logger import Logger
from twisted.mail import smtp

from twisted_mail.doors.connections import (
    BatchedLog,
    LimitedFactory,
    isTLSEndpoint,
    loadTLSContextFactory,
)
from twisted_mail.interfaces import IMailStore
from twisted_mail.doors.smtp.delivery import StoreDelivery, _asciiDomain
from twisted_mail.doors.smtp.delivery import log as deliveryLogger
from twisted_mail.doors.smtp.protocol import SMTPServerProtocol

log = Logger()


class SMTPFactory(LimitedFactory, smtp.SMTPFactory):
    """
    Builds L{SMTPServerProtocol}s delivering into one store.

    @ivar tlsContextFactory: the context factory for C{STARTTLS}, or L{None}
        (no C{STARTTLS}).
    @ivar portal: for a submission listener, the L{twisted.cred} portal of
        L{twisted_mail.logins.portal.makePortal} that C{AUTH} logs in through.
    @ivar submission: whether this listener is for submission (RFC 6409):
        C{AUTH} required before C{MAIL}, the sender bound to the user.
    """

    protocol = SMTPServerProtocol
    noisy = False

    def __init__(
        self,
        store,
        domain,
        maxMessageSize,
        idleTimeout,
        reactor,
        tlsContextFactory=None,
        maxConnections=None,
        portal=None,
        submission=False,
    ):
        if submission and portal is None:
            raise ValueError("SMTP submission needs passwords (a portal)")
        smtp.SMTPFactory.__init__(self, portal)
        self.submission = submission
        self.store = IMailStore(store)
        self.maxConnections = maxConnections
        self.connections = 0
        self.domain = domain
        self._host = _asciiDomain(domain)
        self.domains = {self._host, b"localhost"}
        self.maxMessageSize = maxMessageSize
        self.timeout = idleTimeout
        self.reactor = reactor
        self.tlsContextFactory = tlsContextFactory
        # One log event per reactor iteration for all its deliveries.
        self.deliveryLog = BatchedLog(deliveryLogger, reactor)

    door = "an SMTP"

    def refusal(self):
        # 421: the client retries later.
        return b"421 " + self._host + b" too many connections, try again later\r\n"

    def admit(self, addr):
        p = self.protocol(contextFactory=self.tlsContextFactory)
        p.factory = self
        p.host = self._host
        p.timeout = self.timeout
        p.callLater = self.reactor.callLater
        p.maxMessageSize = self.maxMessageSize
        p.portal = self.portal
        p.submission = self.submission
        p.delivery = StoreDelivery(
            self.store,
            self.domains,
            self.domain,
            self.maxMessageSize,
            self.reactor,
            connection=p,
        )
        p.delivery.deliveryLog = self.deliveryLog
        return p


def makeSMTPFactory(
    store,
    domain,
    maxMessageSize,
    idleTimeout,
    reactor=None,
    tlsContextFactory=None,
    maxConnections=None,
    portal=None,
    submission=False,
):
    """
    The factory that C{twistd simplemail --smtp ENDPOINT} (or, with
    C{submission}, C{--submission ENDPOINT}) listens with.

    @param store: the L{IMailStore} to deliver into.
    @param domain: our mail domain (L{str}); mail for C{user@domain} and
        C{user@localhost} is accepted when C{user} exists.
    @param maxMessageSize: the largest message accepted, in bytes (as
        received: CRLF line endings, after dot-unstuffing); advertised as
        C{SIZE}.
    @param idleTimeout: seconds without a complete line before the
        connection is closed.
    @param reactor: the reactor (its clock and C{callLater}).
    @param tlsContextFactory: enables C{STARTTLS} (see
        L{loadTLSContextFactory}).
    @param maxConnections: connections past this many get C{421} and are
        closed (L{None}: no limit).
    @param portal: the portal C{AUTH} logs in through (submission only).
    @param submission: serve SMTP submission (RFC 6409) rather than
        ingress: see L{twisted_mail.doors.smtp.submission}.
    @raise ValueError: if C{domain} cannot be written in ASCII, or for
        submission without a portal.
    """
    if reactor is None:
        from twisted.internet import reactor
    return SMTPFactory(
        store,
        domain,
        maxMessageSize,
        idleTimeout,
        reactor,
        tlsContextFactory,
        maxConnections,
        portal=portal,
        submission=submission,
    )


def checkSMTPOptions(
    endpoints,
    domain,
    certificatePath=None,
    keyPath=None,
    submission=(),
    passwords=None,
):
    """
    Check the SMTP options of C{twistd simplemail} as a whole.

    @param endpoints: the C{--smtp} endpoint descriptions.
    @param domain: C{--domain}.
    @param certificatePath: C{--smtp-tls-cert} or L{None}.
    @param keyPath: C{--smtp-tls-key} or L{None}.
    @param submission: the C{--submission} endpoint descriptions.
    @param passwords: C{--passwords} or L{None}.
    @raise ValueError: with a one-line message for the operator.
    """
    if submission and not passwords:
        raise ValueError(
            "--submission needs --passwords: submission logs users in with them"
        )
    if (certificatePath or keyPath) and not (endpoints or submission):
        raise ValueError("--smtp-tls-cert and --smtp-tls-key need --smtp or --submission")
    if keyPath and not certificatePath:
        raise ValueError("--smtp-tls-key needs --smtp-tls-cert")
    plain = [d for d in submission if not isTLSEndpoint(d)]
    if plain and not certificatePath:
        raise ValueError(
            "--submission {} is not TLS: give --smtp-tls-cert for STARTTLS "
            "(passwords are never taken in clear), or use an ssl: endpoint".format(
                plain[0]
            )
        )
    if endpoints or submission:
        _asciiDomain(domain)
    if certificatePath:
        loadTLSContextFactory(certificatePath, keyPath)


def makeSMTPFactoryFromOptions(options, store, reactor, portal=None, submission=False):
    """
    The SMTP factory for the parsed options of C{twistd simplemail}: for
    C{--smtp}, or with C{submission} for C{--submission} (logging users in
    through C{portal}).

    @raise ValueError: if the TLS files or the domain cannot be used.
    """
    tls = None
    if options.get("smtp-tls-cert"):
        tls = loadTLSContextFactory(
            options["smtp-tls-cert"], options.get("smtp-tls-key")
        )
    return makeSMTPFactory(
        store,
        options["domain"],
        options["max-message-size"],
        options["idle-timeout"],
        reactor=reactor,
        tlsContextFactory=tls,
        maxConnections=options.get("max-connections"),
        portal=portal,
        submission=submission,
    )
