"""
Deploying the server with twistd: C{twistd -n simplemail [options]}.
"""

import os

from twisted.application import service, strports
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from twisted_mail import server
from twisted_mail.auth import PasswordFile, makePortal
from twisted_mail.spool import SpoolStore

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


class Options(usage.Options):
    """
    The command line of C{twistd simplemail}.
    """

    synopsis = "[--listen ENDPOINT]... [--spool DIR] [--domain NAME] [options]"

    longdesc = (
        "Serve the simplemail protocol (see docs/protocol.rst) on every "
        "--listen endpoint, keeping one mbox file per user in the spool "
        "directory (created if missing). Examples: "
        "twistd -n simplemail; "
        "twistd -n simplemail --listen tcp:9025 --spool /var/spool/simplemail."
    )

    optParameters = [
        ["spool", "s", "MAILSERVER", "The spool directory: one mbox file per user."],
        ["domain", "d", "localhost", "The mail domain used in addresses and headers."],
        [
            "passwords",
            None,
            None,
            "Require passwords, checked against this file of salted hashes "
            "(set them with simplemail-passwd). Off by default.",
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
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []

    def opt_listen(self, description):
        """
        Listen on this Twisted server endpoint, e.g. tcp:9025 or
        ssl:9995:privateKey=key.pem:certKey=cert.pem or unix:/run/mail.sock
        (repeatable; default tcp:9025:interface=127.0.0.1).
        """
        from twisted.internet import reactor

        try:
            endpoints.serverFromString(reactor, description)
        except Exception as e:
            # ValueError, KeyError, TypeError for a malformed description,
            # ImportError without the tls extra, OSError or an OpenSSL
            # error for unreadable or bad certificate files.
            raise usage.UsageError(
                "bad --listen endpoint {!r}: {}".format(
                    description, str(e) or type(e).__name__
                )
            )
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self):
        if self["passwords"] is not None:
            directory = os.path.dirname(os.path.abspath(self["passwords"]))
            if not os.path.isdir(directory):
                raise usage.UsageError(
                    "--passwords: no such directory {!r}".format(directory)
                )
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        if not self["domain"] or any(c.isspace() for c in self["domain"]):
            raise usage.UsageError("--domain must be a name without spaces")


def makeService(options, reactor=None):
    """
    Build the server: a store on the spool directory and one listening
    service per --listen endpoint.
    """
    if reactor is None:
        from twisted.internet import reactor
    try:
        store = SpoolStore(
            options["spool"],
            domain=options["domain"],
            maxMessageSize=options["max-message-size"],
            reactor=reactor,
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
    top = service.MultiService()
    for description in options["listen"]:
        strports.service(description, factory, reactor=reactor).setServiceParent(top)
    log.info(
        "simplemail: spool {spool}, domain {domain}, listening on {listen}, "
        "passwords {passwords}",
        spool=store.path,
        domain=options["domain"],
        listen=", ".join(options["listen"]),
        passwords=options["passwords"] or "off",
    )
    return top
