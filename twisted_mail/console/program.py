# -*- test-case-name: tests.test_console -*-
"""
The C{simplemail} program: its command line, the connection, and standard
I/O handed to the console (L{twisted_mail.console.stdio.MailConsole}) either as
plain lines or, on a terminal, through the line editor of
L{twisted_mail.console.terminal}.
"""

import os
import sys

from twisted.internet import defer
from twisted.python import usage
from twisted.python.failure import Failure

from twisted_mail.console.client import MailClientProtocol
from twisted_mail.console.stdio import MailConsole
from twisted_mail.console.terminal import RawMode, TerminalEcho, TerminalSession, wantsEditing

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 9025


class Options(usage.Options):
    """
    The command line of C{simplemail}.
    """

    synopsis = "Usage: simplemail [options] [HOST [PORT]]"
    longdesc = (
        "A terminal client for a simplemail server (default {} port {}). "
        "Type Help at a prompt for the commands; end of input acts as Quit. "
        "On a terminal, lines are edited as in a shell (arrows, history, Tab)."
    ).format(DEFAULT_HOST, DEFAULT_PORT)

    optFlags = [
        [
            "plain",
            "p",
            "On a terminal too, read plain lines: no line editing, history or "
            "completion (and no escape sequences).",
        ],
    ]

    optParameters = [
        [
            "connect",
            "c",
            None,
            "Connect to this Twisted client endpoint description instead of "
            "HOST and PORT, e.g. tcp:HOST:PORT, unix:PATH or "
            "tls:HOST:PORT:trustRoots=DIR.",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["host"] = None
        self["port"] = None

    def opt_version(self):
        """
        Display the simplemail version and exit.
        """
        from twisted_mail import __version__

        sys.stdout.write("simplemail {}\n".format(__version__))
        sys.exit(0)

    def parseArgs(self, host=None, port=None):
        """
        C{[HOST [PORT]]}.
        """
        if port is not None:
            try:
                number = int(port)
            except ValueError:
                raise usage.UsageError("PORT must be a number, not {!r}".format(port))
            if not 0 < number < 65536:
                raise usage.UsageError("PORT must be from 1 to 65535, not {}".format(number))
            port = number
        self["host"] = host
        self["port"] = port

    def postOptions(self):
        if self["connect"] is not None and self["host"] is not None:
            raise usage.UsageError("give either --connect ENDPOINT or HOST [PORT], not both")


def endpointFromOptions(reactor, options):
    """
    The client endpoint the options ask for.

    @return: a 2-tuple of an L{IStreamClientEndpoint} and a description of
        where it leads, for messages.
    @raise usage.UsageError: if the C{--connect} description is not one.
    """
    from twisted.internet.endpoints import HostnameEndpoint, clientFromString

    if options["connect"] is not None:
        try:
            endpoint = clientFromString(reactor, options["connect"])
        except Exception as e:
            raise usage.UsageError(
                "bad endpoint description {!r}: {}".format(options["connect"], e)
            )
        return endpoint, options["connect"]
    host = options["host"] or DEFAULT_HOST
    port = options["port"] or DEFAULT_PORT
    return HostnameEndpoint(reactor, host, port), "{} port {}".format(host, port)


def _restoreBlocking():
    """
    Put standard input and output back in blocking mode: L{StandardIO} made
    them non-blocking, and the flag is shared with the shell that started
    us (twisted#3442).
    """
    from twisted.internet import fdesc

    for fd in (0, 1):
        try:
            fdesc.setBlocking(fd)
        except OSError:
            pass


def main(reactor, *argv):
    """
    Run the console: parse the command line, connect, then talk to the user
    on standard I/O until C{Quit}, end of input or the server going away.

    Meant for L{twisted.internet.task.react}.

    @return: a L{Deferred} firing with L{None} (exit 0) or failing with
        L{SystemExit} (2 for a bad command line, 1 when there is no server or
        it went away).
    """
    options = Options()
    try:
        options.parseOptions(list(argv))
        endpoint, where = endpointFromOptions(reactor, options)
    except usage.UsageError as e:
        sys.stderr.write("simplemail: {} (see simplemail --help)\n".format(e))
        return defer.fail(SystemExit(2))
    except SystemExit as e:  # --help
        return defer.fail(e)

    from twisted.internet.endpoints import connectProtocol
    from twisted.internet.stdio import StandardIO


    def connected(client):
        reactor.addSystemEventTrigger("after", "shutdown", _restoreBlocking)
        if not options["plain"] and wantsEditing(0):
            # Raw mode from before the first read to every way out: the
            # session's end, the reactor's shutdown, run()'s finally.
            _rawMode.enter()
            reactor.addSystemEventTrigger("after", "shutdown", _rawMode.restore)
            session = TerminalSession(None, _rawMode)
            console = session.console = MailConsole(client, session)
            StandardIO(session, reactor=reactor)
            return console.finished
        terminal = TerminalEcho(0) if os.isatty(0) else None
        console = MailConsole(client, terminal)
        if terminal is not None:
            reactor.addSystemEventTrigger("after", "shutdown", terminal.echo, True)
        StandardIO(console, reactor=reactor)
        return console.finished

    def notConnected(failure):
        sys.stderr.write(
            "simplemail: cannot connect to {}: {}\n".format(where, failure.getErrorMessage())
        )
        return 1

    def exitCode(code):
        if code:
            return Failure(SystemExit(code))
        return None

    d = connectProtocol(endpoint, MailClientProtocol())
    d.addCallbacks(connected, notConnected)
    d.addCallback(exitCode)
    return d


#: The terminal's raw mode while lines are edited; restored on every exit.
_rawMode = RawMode(0)


def run():
    """
    The C{simplemail} command.
    """
    from twisted.internet import task

    try:
        task.react(main, sys.argv[1:])
    finally:
        _rawMode.restore()
