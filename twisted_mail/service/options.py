"""
The command line of C{twistd simplemail}: L{Options}, checked as a whole
while parsing, so that a mistake is one line of usage error.
"""

import os
import sys

from twisted.internet import endpoints
from twisted.python import usage

from twisted_mail.doors import connections
from twisted_mail.service.doors import doorEndpoints
from twisted_mail.service.listeners import CannotListen, checkShareable

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


#: The modules each optional extra of setup.cfg brings, as imported.
EXTRAS = {
    "tls": ("OpenSSL", "cryptography", "service_identity"),
    "postgresql": ("psycopg",),
}


def requireExtra(option, extra):
    """
    Check that the packages of C{extra} can be imported, for C{option}.

    @raise usage.UsageError: one line naming the extra to install (twistd
        exits 1), never an C{ImportError} traceback at start.
    """
    import importlib

    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise usage.UsageError(
                "{} needs the {} extra (no module named {!r}): "
                "pip install 'simplemail[{}]' (from a checkout: "
                "pip install -e '.[{}]')".format(option, extra, module, extra, extra)
            )


def _checkedEndpoint(option, description):
    """
    Check a server endpoint description while parsing options, so that a
    typo is a one-line usage error rather than a traceback at start.
    """
    from twisted.internet import reactor

    if connections.isTLSEndpoint(description):
        requireExtra("{} {}".format(option, description.split(":", 1)[0]), "tls")
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


def _endpointOption(name, help):
    """
    A repeatable option naming a server endpoint (C{--listen}, C{--smtp},
    ...): each is checked at once and kept in the list C{options[name]}.
    """

    def option(self, description):
        self[name].append(_checkedEndpoint("--" + name, description))

    option.__doc__ = help
    option.optionName = name
    option.optionDefault = list
    return option


def _fileOption(name, help):
    """
    An option naming a file (C{--smtp-tls-cert}, ...), kept in
    C{options[name]}; L{None} when it is not given.
    """

    def option(self, path):
        self[name] = path

    option.__doc__ = help
    option.optionName = name
    option.optionDefault = lambda: None
    return option


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

    optFlags = [
        [
            "no-signup",
            None,
            "Turn self-service sign-up off: ADDU (line protocol) and POST "
            "/api/v1/users (web) are refused, whatever the name, and accounts "
            "are made with simplemail-passwd (docs/logins.rst).",
        ],
        [
            "no-journal",
            None,
            "Sync each mailbox file a batch of deliveries or a command "
            "touched, instead of the spool's write-ahead journal (one sync "
            "per group of deliveries and commands, the files synced every "
            "second: docs/journal.rst).",
        ],
    ]

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
            connections.DEFAULT_MAX_MESSAGE_SIZE,
            "The largest message stored, in bytes.",
            _positiveInt("max-message-size"),
        ],
        [
            "idle-timeout",
            None,
            connections.DEFAULT_IDLE_TIMEOUT,
            "Close a connection that sends no complete line for this many seconds.",
            _positiveInt("idle-timeout"),
        ],
        [
            "max-connections",
            None,
            connections.DEFAULT_MAX_CONNECTIONS,
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
        for name in dir(self):
            option = getattr(self, name)
            if hasattr(option, "optionDefault"):
                self[option.optionName] = option.optionDefault()

    def parseOptions(self, options=None):
        # Kept for the worker processes, which parse the same command line.
        self.argv = list(sys.argv[1:] if options is None else options)
        usage.Options.parseOptions(self, options)

    opt_listen = _endpointOption(
        "listen",
        "Listen on this Twisted server endpoint, e.g. tcp:9025 or "
        "ssl:9995:privateKey=key.pem:certKey=cert.pem or "
        "unix:/run/mail.sock (repeatable; default "
        "tcp:9025:interface=127.0.0.1)."
    )

    opt_l = opt_listen

    # -- the web inbox and JSON API (twisted_mail/doors/web/, docs/web.rst)

    opt_web = _endpointOption(
        "web",
        "Also serve the web inbox and its JSON API (/api/v1/) by HTTP on "
        "this Twisted server endpoint, e.g. tcp:9080:interface=127.0.0.1 "
        "(repeatable; off by default)."
    )

    def opt_web_origin(self, url):
        from twisted_mail.doors.web.policy import normaliseOrigin

        try:
            self["web-origin"].append(normaliseOrigin(url))
        except ValueError as e:
            raise usage.UsageError("--web-origin: {}".format(e))

    opt_web_origin.__doc__ = (
        "A public origin the web inbox is served from behind a reverse "
        "proxy, e.g. https://mail.example.org (repeatable): POST and DELETE "
        "from a page there are accepted, and its host name passes the Host "
        "check (docs/web.rst)."
    )
    opt_web_origin.optionName = "web-origin"
    opt_web_origin.optionDefault = list

    # -- SMTP ingress and submission (twisted_mail/doors/smtp/, docs/smtp.rst)

    opt_smtp = _endpointOption(
        "smtp",
        "Also accept mail for local users by SMTP on this Twisted server "
        "endpoint, e.g. tcp:25 or tcp:2525:interface=127.0.0.1 (repeatable; "
        "off by default)."
    )

    opt_submission = _endpointOption(
        "submission",
        "Also take mail from your users' mail programs by SMTP submission "
        "(RFC 6409: AUTH PLAIN/LOGIN with their --passwords password, only "
        "over TLS; they send as <user>@<domain> to local users) on this "
        "endpoint, e.g. tcp:587 with --smtp-tls-cert for STARTTLS, or "
        "ssl:465:privateKey=key.pem:certKey=cert.pem (repeatable; off by "
        "default; needs --passwords)."
    )

    opt_smtp_tls_cert = _fileOption(
        "smtp-tls-cert",
        "Offer STARTTLS on the --smtp and --submission listeners with this "
        "PEM certificate (followed by any intermediate certificates; it may "
        "hold the key too)."
    )

    opt_smtp_tls_key = _fileOption(
        "smtp-tls-key",
        "The PEM private key for --smtp-tls-cert (default: the certificate "
        "file)."
    )

    def _checkSMTPOptions(self):
        if not (
            self["smtp"]
            or self["submission"]
            or self["smtp-tls-cert"]
            or self["smtp-tls-key"]
        ):
            return
        if self["smtp-tls-cert"] or self["smtp-tls-key"]:
            requireExtra("--smtp-tls-cert", "tls")
        from twisted_mail.doors.smtp import checkSMTPOptions

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

    # -- POP3 (twisted_mail/doors/pop3/, docs/pop3.rst)

    opt_pop3 = _endpointOption(
        "pop3",
        "Also serve the mailboxes by POP3 on this Twisted server endpoint, "
        "e.g. tcp:110 or tcp:9110:interface=127.0.0.1, or "
        "ssl:995:privateKey=key.pem:certKey=cert.pem for POP3S "
        "(repeatable; off by default). Without --passwords any password "
        "opens an existing user's mailbox."
    )

    opt_pop3_tls_cert = _fileOption(
        "pop3-tls-cert",
        "Offer STLS on the --pop3 listeners with this PEM certificate "
        "(followed by any intermediate certificates; it may hold the key "
        "too)."
    )

    opt_pop3_tls_key = _fileOption(
        "pop3-tls-key",
        "The PEM private key for --pop3-tls-cert (default: the certificate "
        "file)."
    )

    def _checkPOP3Options(self):
        if not (self["pop3"] or self["pop3-tls-cert"] or self["pop3-tls-key"]):
            return
        if self["pop3-tls-cert"] or self["pop3-tls-key"]:
            requireExtra("--pop3-tls-cert", "tls")
        from twisted_mail.doors.pop3.server import checkPOP3Options

        try:
            checkPOP3Options(self["pop3"], self["pop3-tls-cert"], self["pop3-tls-key"])
        except ValueError as e:
            raise usage.UsageError(str(e))

    # -- IMAP (twisted_mail/doors/imap/, docs/imap.rst)

    opt_imap = _endpointOption(
        "imap",
        "Also serve the folders by IMAP4rev1 on this Twisted server endpoint, "
        "e.g. tcp:143 or tcp:9143:interface=127.0.0.1, or "
        "ssl:993:privateKey=key.pem:certKey=cert.pem for IMAPS "
        "(repeatable; off by default). Without --passwords any password "
        "opens an existing user's mail; with it, logins need TLS unless "
        "the client is on loopback."
    )

    opt_imap_tls_cert = _fileOption(
        "imap-tls-cert",
        "Offer STARTTLS on the --imap listeners with this PEM certificate "
        "(followed by any intermediate certificates; it may hold the key "
        "too)."
    )

    opt_imap_tls_key = _fileOption(
        "imap-tls-key",
        "The PEM private key for --imap-tls-cert (default: the certificate "
        "file)."
    )

    def _checkIMAPOptions(self):
        if not (self["imap"] or self["imap-tls-cert"] or self["imap-tls-key"]):
            return
        from twisted_mail.doors.imap.factory import checkIMAPOptions

        try:
            checkIMAPOptions(self["imap"], self["imap-tls-cert"], self["imap-tls-key"])
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
        requireExtra("--database", "postgresql")
        # Reach the database and make its schema ready now: twistd prints a
        # usage error from here as one line (from makeService, as a
        # traceback).
        from twisted_mail.stores.postgres.store import DatabaseUnavailable, checkDatabase

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
        self._checkIMAPOptions()
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
