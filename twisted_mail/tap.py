"""
Deploying the server with twistd: C{twistd -n simplemail [options]}.
"""

import os
import sys
from collections import namedtuple

from twisted.application import service
from twisted.internet import defer, endpoints, protocol
from twisted.logger import Logger
from twisted.python import usage

from twisted_mail import server
from twisted_mail.auth import PasswordFile, makePortal
from twisted_mail.listeners import CannotListen, Listeners, checkShareable, listenNow
from twisted_mail.spool import SpoolStore, mailboxThreadPool

log = Logger()

DEFAULT_LISTEN = "tcp:9025:interface=127.0.0.1"


def _positiveInt(name):
    def convert(value):
        try:
            number = int(value)
        except ValueError:
            raise usage.UsageError(
                "--{} wants a whole number, not {!r}".format(name, value)
            )
        if number <= 0:
            raise usage.UsageError("--{} must be at least 1".format(name))
        return number

    return convert


def _checkedEndpoint(option, description):
    """
    Check a server endpoint description while parsing options, so that a
    typo is a one-line usage error rather than a traceback at start.
    """
    from twisted.internet import reactor

    try:
        endpoints.serverFromString(reactor, description)
    except Exception as e:
        # ValueError, KeyError, TypeError for a malformed description,
        # ImportError without the tls extra, OSError or an OpenSSL error for
        # unreadable or bad certificate files.
        raise usage.UsageError(
            "bad {} endpoint {!r}: {}".format(option, description, str(e) or type(e).__name__)
        )
    return description


class Options(usage.Options):
    (
        "The command line of C{twistd simplemail}."
    )

    synopsis = "[--listen ENDPOINT]... [--spool DIR | --database URL] [--domain NAME] [options]"

    longdesc = (
        "Serve the simplemail protocol (see docs/protocol.rst) on every "
        "--listen endpoint, keeping one mbox file per user in the spool "
        "directory (created if missing), or in a PostgreSQL database shared "
        "by any number of servers (--database). Examples: "
        "twistd -n simplemail; "
        "twistd -n simplemail --listen tcp:9025 --spool /var/spool/simplemail; "
        "twistd -n simplemail --database postgresql://mail@dbhost/simplemail."
    )

    optParameters = [
        ["spool", "s", "MAILSERVER", "The spool directory: one mbox file per user."],
        ["domain", "d", "localhost", "The mail domain used in addresses and headers."],
        [
            "database",
            None,
            None,
            "Keep the mail in this PostgreSQL database (a URL such as "
            "postgresql://mail@dbhost/simplemail, or a libpq conninfo string) "
            "instead of the spool directory; any number of servers may share "
            "it. Needs the postgresql extra (pip install -e '.[postgresql]').",
        ],
        [
            "passwords",
            None,
            None,
            "Require passwords, checked against this file of salted hashes "
            "(set them with simplemail-passwd), with failed logins slowed "
            "down (docs/logins.rst). Off by default.",
        ],
        [
            "max-message-size",
            None,
            server.DEFAULT_MAX_MESSAGE_SIZE,
            "The largest message stored, in bytes.",
            _positiveInt("max-message-size"),
        ],
        [
            "idle-timeout",
            None,
            server.DEFAULT_IDLE_TIMEOUT,
            "Close a connection that sends no complete line for this many seconds.",
            _positiveInt("idle-timeout"),
        ],
        [
            "max-connections",
            None,
            server.DEFAULT_MAX_CONNECTIONS,
            "Refuse connections beyond this many open at once.",
            _positiveInt("max-connections"),
        ],
        [
            "workers",
            None,
            1,
            "Serve from this many worker processes, sharing every listener "
            "and the spool; the process twistd starts supervises them "
            "(restarts one that dies, stops them all on SIGTERM). Limits such "
            "as --max-connections apply to each worker.",
            _positiveInt("workers"),
        ],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []
        self["smtp"] = []
        self["submission"] = []
        self["smtp-tls-cert"] = None
        self["smtp-tls-key"] = None
        self["pop3"] = []
        self["pop3-tls-cert"] = None
        self["pop3-tls-key"] = None
        self["web"] = []

    def parseOptions(self, options=None):
        # Kept for the worker processes, which parse the same command line.
        self.argv = list(sys.argv[1:] if options is None else options)
        usage.Options.parseOptions(self, options)

    def opt_listen(self, description):
        (
            "Listen on this Twisted server endpoint, e.g. tcp:9025 or "
            "ssl:9995:privateKey=key.pem:certKey=cert.pem or "
            "unix:/run/mail.sock (repeatable; default "
            "tcp:9025:interface=127.0.0.1)."
        )
        self["listen"].append(_checkedEndpoint("--listen", description))

    opt_l = opt_listen

    # -- the web inbox and JSON API (twisted_mail/web/, docs/web.rst)

    def opt_web(self, description):
        (
            "Also serve the web inbox and its JSON API (/api/v1/) by HTTP on "
            "this Twisted server endpoint, e.g. tcp:9080:interface=127.0.0.1 "
            "(repeatable; off by default)."
        )
        self["web"].append(_checkedEndpoint("--web", description))

    # -- SMTP ingress and submission (twisted_mail/smtp/, docs/smtp.rst)

    def opt_smtp(self, description):
        (
            "Also accept mail for local users by SMTP on this Twisted server "
            "endpoint, e.g. tcp:25 or tcp:2525:interface=127.0.0.1 (repeatable; "
            "off by default)."
        )
        self["smtp"].append(_checkedEndpoint("--smtp", description))

    def opt_submission(self, description):
        (
            "Also take mail from your users' mail programs by SMTP submission "
            "(RFC 6409: AUTH PLAIN/LOGIN with their --passwords password, only "
            "over TLS; they send as <user>@<domain> to local users) on this "
            "endpoint, e.g. tcp:587 with --smtp-tls-cert for STARTTLS, or "
            "ssl:465:privateKey=key.pem:certKey=cert.pem (repeatable; off by "
            "default; needs --passwords)."
        )
        self["submission"].append(_checkedEndpoint("--submission", description))

    def opt_smtp_tls_cert(self, path):
        (
            "Offer STARTTLS on the --smtp and --submission listeners with this "
            "PEM certificate (followed by any intermediate certificates; it may "
            "hold the key too)."
        )
        self["smtp-tls-cert"] = path

    def opt_smtp_tls_key(self, path):
        (
            "The PEM private key for --smtp-tls-cert (default: the certificate "
            "file)."
        )
        self["smtp-tls-key"] = path

    def _checkSMTPOptions(self):
        if not (
            self["smtp"]
            or self["submission"]
            or self["smtp-tls-cert"]
            or self["smtp-tls-key"]
        ):
            return
        from twisted_mail.smtp import checkSMTPOptions

        try:
            checkSMTPOptions(
                self["smtp"],
                self["domain"],
                self["smtp-tls-cert"],
                self["smtp-tls-key"],
                submission=self["submission"],
                passwords=self["passwords"],
            )
        except ValueError as e:
            raise usage.UsageError(str(e))

    # -- POP3 (twisted_mail/pop3.py, docs/pop3.rst)

    def opt_pop3(self, description):
        (
            "Also serve the mailboxes by POP3 on this Twisted server endpoint, "
            "e.g. tcp:110 or tcp:9110:interface=127.0.0.1, or "
            "ssl:995:privateKey=key.pem:certKey=cert.pem for POP3S "
            "(repeatable; off by default). Without --passwords any password "
            "opens an existing user's mailbox."
        )
        self["pop3"].append(_checkedEndpoint("--pop3", description))

    def opt_pop3_tls_cert(self, path):
        (
            "Offer STLS on the --pop3 listeners with this PEM certificate "
            "(followed by any intermediate certificates; it may hold the key "
            "too)."
        )
        self["pop3-tls-cert"] = path

    def opt_pop3_tls_key(self, path):
        (
            "The PEM private key for --pop3-tls-cert (default: the certificate "
            "file)."
        )
        self["pop3-tls-key"] = path

    def _checkPOP3Options(self):
        if not (self["pop3"] or self["pop3-tls-cert"] or self["pop3-tls-key"]):
            return
        from twisted_mail.pop3 import checkPOP3Options

        try:
            checkPOP3Options(self["pop3"], self["pop3-tls-cert"], self["pop3-tls-key"])
        except ValueError as e:
            raise usage.UsageError(str(e))

    def _checkSpool(self):
        """
        Create the spool directory now, so that an unusable one is a
        one-line usage error rather than a traceback from
        makeService.
        """
        spool = self["spool"]
        try:
            os.makedirs(spool, mode=0o700, exist_ok=True)
            if not os.access(spool, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            raise usage.UsageError(
                "cannot use spool directory {!r}: {}".format(spool, e.strerror or e)
            )

    def _checkDatabase(self):
        """
        Without psycopg, C{--database} is a one-line usage error naming the
        extra to install; so is a database that cannot be reached (its
        schema is created or upgraded here, once reached).
        """
        if not self["database"].strip():
            raise usage.UsageError("--database wants a PostgreSQL URL")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise usage.UsageError(
                "--database needs psycopg: pip install -e '.[postgresql]' "
                "(or pip install 'psycopg[binary]')")
        # Reach the database and make its schema ready now: twistd prints a
        # usage error from here as one line (from makeService, as a
        # traceback).
        from twisted_mail.pgstore import DatabaseUnavailable, checkDatabase

        try:
            checkDatabase(self["database"])
        except DatabaseUnavailable as e:
            raise usage.UsageError("cannot use database: {}".format(e))

    def postOptions(self):
        if self["passwords"] is not None:
            directory = os.path.dirname(os.path.abspath(self["passwords"]))
            if not os.path.isdir(directory):
                raise usage.UsageError(
                    "--passwords: no such directory {!r}".format(directory)
                )
        if self["database"] is not None:
            self._checkDatabase()
        else:
            self._checkSpool()
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        if not self["domain"] or any(c.isspace() for c in self["domain"]):
            raise usage.UsageError("--domain must be a name without spaces")
        self._checkSMTPOptions()
        self._checkPOP3Options()
        self._checkWorkers()

    def _checkWorkers(self):
        if self["workers"] == 1:
            return
        from twisted.internet import reactor

        for option, description in doorEndpoints(self):
            try:
                checkShareable(reactor, option, description)
            except CannotListen as e:
                raise usage.UsageError(str(e))


class _ThreadPoolService(service.Service):
    """
    Starts the mailbox thread pool with the server.  When the server stops,
    it first ends the open user sessions (so their deletes are expunged),
    then stops the pool after its pending jobs, then removes the file its
    dot-locks were linked from.
    """

    def __init__(self, pool, mailFactory, store, sessionFactories=()):
        self.pool = pool
        self.mailFactory = mailFactory
        self.store = store
        # Other listeners' factories with sessions to end (POP3).
        self.sessionFactories = list(sessionFactories)

    def startService(self):
        service.Service.startService(self)
        self.pool.start()

    def stopService(self):
        service.Service.stopService(self)
        self.store.stopWatching()
        d = defer.DeferredList(
            [f.endSessions() for f in [self.mailFactory] + self.sessionFactories],
            consumeErrors=True,
        )
        d.addBoth(lambda _: self.pool.stop())
        d.addBoth(lambda _: self.store.removeLockSource())
        return d


class _SpoolRepair(service.Service):
    """
    Before the listeners start, repair what a crash left in the spool (torn
    appends, dead processes' dot-locks), so that neither clients nor other
    mail tools ever meet it.  This blocks start-up briefly: a few system
    calls per mailbox, and reading only the mailboxes that need repair.
    """

    def __init__(self, store):
        self.store = store

    def startService(self):
        service.Service.startService(self)
        try:
            users = self.store.repairNow()
        except Exception:
            log.failure("could not repair the spool at start")
            return
        if users:
            log.info("repaired mailboxes left by a crash: {users}", users=", ".join(users))


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
    # SMTP ingress (twisted_mail/smtp.py, docs/smtp.rst).
    from twisted_mail.smtp import makeSMTPFactoryFromOptions

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
    from twisted_mail.smtp import makeSMTPFactoryFromOptions

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
    from twisted_mail.pop3 import makePOP3FactoryFromOptions

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


def _webDoor(parts):
    # The web inbox and JSON API (twisted_mail/web/, docs/web.rst).  With
    # --workers, login sessions live in the spool directory, where every
    # worker sees them (docs/workers.rst); with --database, in a temporary
    # directory of this machine.
    from twisted_mail.web import makeWebFactory

    options = parts.options
    sessions = None
    if options["workers"] > 1:
        import hashlib
        import tempfile

        from twisted_mail.web.sessions import FileSessions

        spool = getattr(parts.store, "path", None)
        if spool:
            directory = os.path.join(spool, FileSessions.directoryName)
        else:
            # A database store has no spool: the workers of this server
            # (one machine, one secret) meet in a private temporary
            # directory named after the secret.
            directory = os.path.join(
                tempfile.gettempdir(),
                "simplemail-sessions-" + hashlib.sha256(parts.secret).hexdigest()[:16],
            )
        sessions = FileSessions(directory, parts.secret, parts.reactor)
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
    )
    log.info("simplemail: web inbox on {web}", web=", ".join(options["web"]))
    return factory


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


def _cannotListen(e):
    """
    The server cannot start: one line for twistd to print, exit status 1.
    """
    return SystemExit("simplemail: {}".format(e))


def _databaseStore(options, reactor):
    """
    The PostgreSQL store of C{--database} and its thread pool (the
    options checked that the database can be reached and made its schema
    ready).
    """
    from twisted_mail.pgstore import PostgresStore, databaseThreadPool

    pool = databaseThreadPool()
    store = PostgresStore(
        options["database"],
        domain=options["domain"],
        maxMessageSize=options["max-message-size"],
        reactor=reactor,
        threadpool=pool,
    )
    log.info("simplemail: mail in the PostgreSQL database {url}",
             url=_redacted(options["database"]))
    return pool, store


def _redacted(url):
    """
    A database URL or conninfo for the log, without its password.
    """
    import re

    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url)


def makeService(options, reactor=None, listeners=None, secret=None):
    """
    Build the server: a store on the spool directory and one listening
    service per endpoint of each door.

    Listeners are opened now, so that one that cannot be opened stops the
    server with one line (L{SystemExit}) before twistd daemonizes.

    @param listeners: how listeners are opened: a L{Listeners} (the default
        binds them).  A worker passes one that adopts the supervisor's
        sockets.  Without it and with C{--workers} above 1, the service is
        the L{twisted_mail.workers.Supervisor} instead.
    @param secret: the server's L{ServerParts.secret} (a worker passes the
        supervisor's; by default a new one).
    """
    if reactor is None:
        from twisted.internet import reactor
    if listeners is None:
        if options["workers"] > 1:
            return _makeSupervisor(options, reactor)
        listeners = Listeners(reactor)
    if options.get("database"):
        pool, store = _databaseStore(options, reactor)
    else:
        pool = mailboxThreadPool()
        try:
            store = SpoolStore(
                options["spool"],
                domain=options["domain"],
                maxMessageSize=options["max-message-size"],
                reactor=reactor,
                threadpool=pool,
            )
        except OSError as e:
            raise usage.UsageError(
                "cannot use spool directory {!r}: {}".format(options["spool"], e.strerror)
            )
    portal = passwordFile = None
    if options["passwords"]:
        passwordFile = PasswordFile(options["passwords"])
        portal = makePortal(passwordFile, reactor=reactor)
    factory = server.MailServerFactory(
        store,
        portal=portal,
        passwordFile=passwordFile,
        maxMessageSize=options["max-message-size"],
        idleTimeout=options["idle-timeout"],
        maxConnections=options["max-connections"],
        reactor=reactor,
    )
    parts = ServerParts(options, reactor, store, portal, passwordFile, factory, secret)
    # Each door's factory, built before anything listens.
    doors = []
    for door in DOORS:
        descriptions = options.get(door.option) or ()
        if not descriptions:
            continue
        try:
            doors.append((door, descriptions, door.buildFactory(parts)))
        except ValueError as e:
            raise usage.UsageError(str(e))
    top = service.MultiService()
    # Children start in this order and stop in the reverse one: the thread
    # pool outlives the listeners, and finishes its jobs as it stops.
    if options.get("database"):
        from twisted_mail.pgstore import DatabaseService

        DatabaseService(store, pool, factory, parts.sessionFactories).setServiceParent(top)
    else:
        _ThreadPoolService(pool, factory, store, parts.sessionFactories).setServiceParent(
            top)
        _SpoolRepair(store).setServiceParent(top)
    for door, descriptions, doorFactory in doors:
        for description in descriptions:
            try:
                listener = listeners.listen(door.option, description, doorFactory)
            except CannotListen as e:
                raise _cannotListen(e)
            listener.setServiceParent(top)
    log.info(
        "simplemail: spool {spool}, domain {domain}, listening on {listen}, "
        "passwords {passwords}",
        spool=getattr(store, "path", None) or "none (database)",
        domain=options["domain"],
        listen=", ".join(options["listen"]),
        passwords=options["passwords"] or "off",
    )
    return top


class _NotServing(protocol.Factory):
    """
    The factory of the supervisor's own copy of a listener: it never
    accepts, the workers do.
    """

    noisy = False


def _makeSupervisor(options, reactor):
    """
    Bind every listener once and return the service running the workers
    on them (C{--workers} above 1).
    """
    from twisted_mail.workers import Supervisor

    opened = []
    try:
        for option, description in doorEndpoints(options):
            port = listenNow(reactor, option, description, _NotServing())
            # The workers accept; this process only holds the socket.
            stopReading = getattr(port, "stopReading", None)
            if stopReading is not None:
                stopReading()
            opened.append((option, description, port))
    except CannotListen as e:
        for _, _, port in opened:
            port.stopListening()
        raise _cannotListen(e)
    log.info(
        "simplemail: {workers} workers, mail in {where}, listening on {listen}",
        workers=options["workers"],
        where=(
            _redacted(options["database"])
            if options.get("database")
            else os.path.abspath(options["spool"])
        ),
        listen=", ".join(description for _, description in doorEndpoints(options)),
    )
    return Supervisor(options["workers"], options.argv, opened, reactor)
