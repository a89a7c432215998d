"""
The doors table: every door of the server, the option that lists its
endpoints and how its factory is built from what all doors share
(L{ServerParts}).  A new door is one line in L{DOORS}.
"""

import os
from collections import namedtuple

from twisted.logger import Logger

log = Logger()


class ServerParts:
    """
    What every door of one server shares, handed to each door's factory
    builder.

    @ivar options: the parsed L{Options}.
    @ivar reactor: the reactor.
    @ivar store: the L{IMailStore}.
    @ivar portal: the login portal (L{None} without C{--passwords}).
    @ivar passwordFile: the L{PasswordFile} (L{None} without it).
    @ivar lineFactory: the line protocol's factory (its sessions are ended
        when the server stops).
    @ivar sessionFactories: other doors' factories whose C{endSessions} is
        called when the server stops (a builder appends its factory).
    @ivar secret: 32 random bytes made once per server and shared by all
        its processes (with C{--workers}, the supervisor makes it and hands
        it to every worker): a door keeping state that any worker must be
        able to check (a signed session cookie) keys it with this.
    """

    def __init__(
        self, options, reactor, store, portal, passwordFile, lineFactory, secret=None
    ):
        self.options = options
        self.reactor = reactor
        self.store = store
        self.portal = portal
        self.passwordFile = passwordFile
        self.lineFactory = lineFactory
        self.sessionFactories = []
        self.secret = os.urandom(32) if secret is None else secret


def _lineDoor(parts):
    return parts.lineFactory


def _smtpDoor(parts):
    # SMTP ingress (twisted_mail/doors/smtp/, docs/smtp.rst).
    from twisted_mail.doors.smtp import makeSMTPFactoryFromOptions

    factory = makeSMTPFactoryFromOptions(parts.options, parts.store, parts.reactor)
    log.info(
        "simplemail: SMTP on {smtp}, STARTTLS {tls}",
        smtp=", ".join(parts.options["smtp"]),
        tls="on" if parts.options.get("smtp-tls-cert") else "off",
    )
    return factory


def _submissionDoor(parts):
    # SMTP submission, logging users in through the same portal (and login
    # throttle) as every door.
    from twisted_mail.doors.smtp import makeSMTPFactoryFromOptions

    if parts.portal is None:
        raise ValueError("--submission needs --passwords")
    factory = makeSMTPFactoryFromOptions(
        parts.options, parts.store, parts.reactor, portal=parts.portal, submission=True
    )
    log.info(
        "simplemail: SMTP submission on {submission}",
        submission=", ".join(parts.options["submission"]),
    )
    return factory


def _pop3Door(parts):
    # POP3 (docs/pop3.rst); its sessions end when the server stops.
    from twisted_mail.doors.pop3.server import makePOP3FactoryFromOptions

    factory = makePOP3FactoryFromOptions(
        parts.options, parts.store, parts.portal, parts.reactor
    )
    parts.sessionFactories.append(factory)
    log.info(
        "simplemail: POP3 on {pop3}, STLS {tls}",
        pop3=", ".join(parts.options["pop3"]),
        tls="on" if parts.options.get("pop3-tls-cert") else "off",
    )
    return factory


def _imapDoor(parts):
    # IMAP (docs/imap.rst); its sessions end when the server stops.
    from twisted_mail.doors.imap.factory import makeIMAPFactoryFromOptions

    factory = makeIMAPFactoryFromOptions(
        parts.options, parts.store, parts.portal, parts.reactor
    )
    parts.sessionFactories.append(factory)
    log.info(
        "simplemail: IMAP on {imap}, STARTTLS {tls}",
        imap=", ".join(parts.options["imap"]),
        tls="on" if parts.options.get("imap-tls-cert") else "off",
    )
    return factory


def _webDoor(parts):
    # The web inbox and JSON API (twisted_mail/doors/web/, docs/web.rst).
    from twisted_mail.doors.web import makeWebFactory

    options = parts.options
    sessions = _webSessions(parts)
    factory = makeWebFactory(
        parts.store,
        options["domain"],
        portal=parts.portal,
        passwordFile=parts.passwordFile,
        maxMessageSize=options["max-message-size"],
        idleTimeout=options["idle-timeout"],
        maxConnections=options["max-connections"],
        reactor=parts.reactor,
        sessions=sessions,
        signup=not options["no-signup"],
        origins=options["web-origin"],
    )
    log.info("simplemail: web inbox on {web}", web=", ".join(options["web"]))
    return factory


def _webSessions(parts):
    """
    Where the web's login sessions are kept: with --database, in the
    database, where every server on it (and every worker) sees them; with
    --workers, in the spool directory, where every worker sees them
    (docs/workers.rst); else in this process's memory (L{None}).
    """
    options = parts.options
    if options.get("database"):
        from twisted_mail.doors.web.policy import MAX_SESSIONS, SESSION_IDLE
        from twisted_mail.stores.postgres.shared import DatabaseSessions

        return DatabaseSessions(parts.store, parts.reactor, SESSION_IDLE, MAX_SESSIONS)
    if options["workers"] > 1:
        from twisted_mail.doors.web.sessions import FileSessions

        directory = os.path.join(parts.store.path, FileSessions.directoryName)
        return FileSessions(directory, parts.secret, parts.reactor)
    return None


#: A door of the server: the option listing its endpoint descriptions, and
#: the function building the factory that serves them from the
#: L{ServerParts} (called once, and only when the option lists endpoints;
#: a L{ValueError} it raises is a usage error).
Door = namedtuple("Door", ["option", "buildFactory"])

#: Every door, in the order its listeners are opened.  A new door is one
#: line here: makeService and the --workers supervisor open its listeners.
DOORS = [
    Door("listen", _lineDoor),
    Door("smtp", _smtpDoor),
    Door("submission", _submissionDoor),
    Door("pop3", _pop3Door),
    Door("imap", _imapDoor),
    Door("web", _webDoor),
]


def doorEndpoints(options):
    """
    Every listener of the server: C{(option, description)} pairs, door by
    door, in order.
    """
    return [
        (door.option, description)
        for door in DOORS
        for description in (options.get(door.option) or ())
    ]
