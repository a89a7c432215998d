# -*- test-case-name: tests.test_console -*-
"""
The simplemail console: a line-oriented user interface on standard input and
output, driving a L{MailClientProtocol}.

Run it as C{simplemail [HOST [PORT]]}, C{simplemail --connect ENDPOINT} or
C{python -m twisted_mail}.  L{MailConsole} is handed its client, as Conch's
cftp C{StdioClient} is, and never touches the network itself; L{main} wires
the two together for L{twisted.internet.task.react}.
"""

import os
import re
import sys

from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure

from twisted_mail import wire
from twisted_mail.client import MailClientProtocol, ServerConnectionLost
from twisted_mail.errors import MailError, ServerError

log = Logger()

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 9025

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text):
    """
    Make untrusted text safe to show on a terminal: control characters other
    than tab and newline (escape sequences, carriage returns) are shown as
    C{\\xNN}.

    @type text: L{str}
    @rtype: L{str}
    """
    return _CONTROL.sub(lambda m: "\\x{:02x}".format(ord(m.group())), text)


class _CommandError(Exception):
    """
    A typed command is wrong for the current prompt or malformed; it is
    answered locally, with C{str()} of this.
    """


#: command name -> (the name as shown, its arguments, what it does)
_COMMANDS = {
    "LISTUSERS": ("Listusers", "", "list the users"),
    "ADDUSER": ("Adduser", "<userid>", "create a user"),
    "SETUSER": ("SetUser", "<userid>", "work as a user: read, delete and send mail"),
    "READ": ("Read", "", "show the next message"),
    "DELETE": ("Delete", "", "delete the message shown last"),
    "SEND": ("Send", "<receiverid>", "send a message; end it with a line holding ###"),
    "DONE": ("Done", "", "stop working as this user"),
    "QUIT": ("Quit", "", "leave"),
    "HELP": ("Help", "", "show this list"),
}

_MAIN_COMMANDS = ("LISTUSERS", "ADDUSER", "SETUSER", "QUIT", "HELP")
_SUB_COMMANDS = (
    "LISTUSERS",
    "ADDUSER",
    "SETUSER",
    "READ",
    "DELETE",
    "SEND",
    "DONE",
    "QUIT",
    "HELP",
)


def _usage(name):
    shown, args, _ = _COMMANDS[name]
    return (shown + " " + args).strip()


@implementer(IHalfCloseableProtocol)
class MailConsole(LineReceiver):
    """
    The console protocol, connected to standard input and output (a
    L{twisted.internet.stdio.StandardIO}).

    One command is in flight at a time: while the server has not answered,
    the protocol is paused, so lines that came in the same read wait their
    turn.  End of input acts as C{Quit} once the pending command is answered.

    @ivar client: the L{MailClientProtocol} (or an object with its methods).
    @ivar finished: a L{Deferred} firing with the exit code (C{0} after
        C{Quit} or end of input, C{1} when the server went away) once all
        output is written and standard I/O is closed.
    """

    delimiter = b"\n"
    # Lines are limited by the server, not here: a message line longer than
    # the protocol allows goes to the server, which says so.
    MAX_LENGTH = sys.maxsize

    mainPrompt = "Main-Prompt> "
    subPrompt = "Sub-Prompt-{userid}> "
    messagePrompt = "Type Message: "

    passwordPrompt = "Password: "
    againPrompt = "Again: "

    def __init__(self, client, terminal=None):
        """
        @param client: the L{MailClientProtocol}.
        @param terminal: an object with C{echo(on)} to turn the terminal's
            echo off while a password is typed (L{TerminalEcho}), or
            L{None} when input is not a terminal.
        """
        self.client = client
        self.finished = defer.Deferred()
        self.userid = None
        self._terminal = terminal
        self._passwords = False
        self._secret = None
        self._message = None
        self._atPrompt = False
        self._inputEnded = False
        self._endHandled = False
        self._quitting = False
        self._finishing = False
        self._exitCode = 0
        self._receiving = 0

    # Output

    def _write(self, text):
        self._atPrompt = False
        self.transport.write(text.encode("utf-8"))

    def _writeLine(self, text):
        self._write(_printable(text) + "\n")

    def _showError(self, text):
        self._writeLine("error: " + text)

    def _prompt(self):
        if self.userid is None:
            self._write(self.mainPrompt)
        else:
            self._write(self.subPrompt.format(userid=self.userid))
        self._atPrompt = True

    # Connection to standard I/O

    def connectionMade(self):
        """
        Wait for the server's greeting before reading any command.
        """
        self.pauseProducing()
        self.client.greeting.addCallbacks(self._greeted, self._greetingFailed)
        self.client.whenDisconnected().addCallback(self._serverGone)

    def _greeted(self, text):
        self._writeLine(text)

        def capabilities(names):
            self._passwords = "AUTH" in names

        self._run(self.client.capabilities().addCallback(capabilities))

    def _greetingFailed(self, failure):
        if failure.check(ServerConnectionLost):
            return  # _serverGone says so.
        if failure.check(ServerError):
            self._fatal("the server refused the session: " + str(failure.value))
        else:
            self._fatal(failure.getErrorMessage())

    def dataReceived(self, data):
        """
        Take input; once all of it is handled and the input has ended, quit.
        """
        self._receiving += 1
        try:
            LineReceiver.dataReceived(self, data)
        finally:
            self._receiving -= 1
        self._checkEndOfInput()

    def readConnectionLost(self):
        """
        Standard input ended: after the lines already read, act as C{Quit}.
        """
        self._inputEnded = True
        self._checkEndOfInput()

    def writeConnectionLost(self):
        """
        Standard output is gone, so nothing can be shown: hang up and stop.
        """
        self._quitting = True
        self.client.disconnect()
        self._finishing = True
        self.transport.loseConnection()
        self._fireFinished(1)

    def connectionLost(self, reason):
        """
        Standard I/O is closed and all output written: we are done.
        """
        if not self._finishing:
            self._finishing = True
            self._exitCode = 1
            self._quitting = True
            self.client.disconnect()
        self._fireFinished(self._exitCode)

    def _fireFinished(self, code):
        if not self.finished.called:
            self.finished.callback(code)

    def _echo(self, on):
        if self._terminal is not None:
            self._terminal.echo(on)

    def _exit(self, code):
        """
        Stop reading commands, write what is left and close standard I/O;
        L{finished} then fires with C{code}.
        """
        self._echo(True)
        if self._finishing:
            return
        self._finishing = True
        self._exitCode = code
        self.transport.loseConnection()

    def _fatal(self, text):
        """
        Say in one line why the session cannot go on, hang up, exit 1.
        """
        if self._finishing:
            return
        if self._atPrompt:
            self._write("\n")
        self._showError(text)
        self._quitting = True
        self.client.disconnect()
        self._exit(1)

    def _serverGone(self, reason):
        if self._quitting or self._finishing:
            return
        self._fatal(str(reason))

    # Input

    def _ready(self):
        """
        The last command is answered: prompt and take the next line.
        """
        if self._finishing:
            return
        if self._message is None and self._secret is None:
            self._prompt()
        self.resumeProducing()

    def _checkEndOfInput(self):
        if (
            not self._inputEnded
            or self._endHandled
            or self._finishing
            or self.paused
            or self._receiving
        ):
            return
        # A last line without a newline is still a line.
        leftover = self.clearLineBuffer()
        if leftover:
            self._receiving += 1
            try:
                self.lineReceived(leftover)
            finally:
                self._receiving -= 1
            if self.paused or self._finishing:
                return
        self._endHandled = True
        if self._secret is not None:
            self._secret = None
            self._echo(True)
            self._write("\n")
        if self._message is not None:
            self._message = None
            if self._atPrompt:
                self._write("\n")
            self._writeLine("message discarded: input ended before ###")
            self._quitting = True
            self.client.disconnect()
            self._exit(0)
            return
        self._run(self.cmd_QUIT())

    def lineReceived(self, line):
        """
        Handle one typed line: part of a message being typed, or a command.
        """
        if self._finishing:
            return
        # Like a reply, what we write next follows the line typed.
        self._atPrompt = False
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._secret is not None:
            take, self._secret = self._secret, None
            self._echo(True)
            if self._terminal is not None:
                self._write("\n")  # the Enter that was not echoed
            take(line.decode("utf-8", "replace"))
            return
        if self._message is not None:
            self._messageLine(line)
            return
        text = line.decode("utf-8", "replace").strip()
        if not text:
            self._prompt()
            return
        try:
            d = self._dispatch(text)
        except (_CommandError, MailError) as e:
            self._showError(str(e))
            self._prompt()
            return
        if d is None:
            if self._secret is None:
                self._prompt()
        else:
            self._run(d)

    def _dispatch(self, text):
        """
        Find and call the C{cmd_<NAME>} method for a typed command.

        @return: a L{Deferred} if the server was asked, else L{None}.
        @raise _CommandError: the command is unknown, wrong for this
            prompt or given the wrong number of arguments.
        """
        words = text.split()
        name, args = words[0].upper(), words[1:]
        if name not in _COMMANDS:
            raise _CommandError(
                "unknown command: {} (type Help for a list)".format(words[0])
            )
        method = getattr(self, "cmd_" + name)
        if name not in self._commandsHere():
            raise _CommandError(
                "{} works only after SetUser <userid> (type Help for a list)".format(
                    _COMMANDS[name][0]
                )
            )
        expected = len(_COMMANDS[name][1].split())
        if len(args) != expected:
            raise _CommandError("usage: " + _usage(name))
        return method(*args)

    def _commandsHere(self):
        if self.userid is None:
            return _MAIN_COMMANDS
        return _SUB_COMMANDS

    def _run(self, d):
        """
        Wait for a command's answer (already shown by its own callbacks)
        before taking the next line.
        """
        self.pauseProducing()
        d.addErrback(self._commandFailed)
        d.addCallback(self._commandDone)

    def _commandFailed(self, failure):
        if failure.check(ServerConnectionLost):
            # _serverGone says so, once.
            return _STOP
        if failure.check(MailError):
            self._showError(str(failure.value) or "refused by the server")
        else:
            log.failure("command failed", failure)
            self._showError(failure.getErrorMessage() or failure.type.__name__)
        return None

    def _commandDone(self, result):
        if result is _STOP:
            return
        self._ready()

    def _messageLine(self, line):
        """
        Take one line of a message being typed.  A line holding C{###}
        ends it (the text before C{###} is kept) and sends it.
        """
        head, marker, _ = line.partition(b"###")
        if marker:
            if head:
                self._message.append(head)
            body = b"".join(each + b"\n" for each in self._message)
            self._message = None
            d = self.client.sendBody(body)
            d.addCallback(self._showText, "message sent")
            self._run(d)
        else:
            self._message.append(line)

    # Showing replies

    def _showText(self, text, default):
        self._writeLine(text or default)

    def _showUsers(self, users):
        if not users:
            self._writeLine("no users")
        for userid in users:
            self._writeLine(userid)

    def _showMessage(self, message):
        text = message.decode("utf-8", "replace")
        if text and not text.endswith("\n"):
            text += "\n"
        self._write(_printable(text))

    # Commands: each returns a Deferred (the server is asked) or None.

    def _userId(self, userid):
        return wire.normalizeUserId(userid)

    def cmd_LISTUSERS(self):
        """
        C{Listusers}: show the user ids, one a line.
        """
        return self.client.listUsers().addCallback(self._showUsers)

    def _askSecret(self, prompt, take):
        """
        Show C{prompt} and hand the next line, unechoed on a terminal, to
        C{take} instead of reading it as a command.
        """
        self._write(prompt)
        self._atPrompt = True
        self._echo(False)
        self._secret = take

    def _afterSecret(self, d):
        """
        Wait for the command started with a password, like any command.
        """
        if d is None:
            self._prompt()
        else:
            self._run(d)

    def cmd_ADDUSER(self, userid):
        """
        C{Adduser <userid>}: create a user.  When the server wants
        passwords, ask for the new user's password twice first.
        """
        userid = self._userId(userid)

        def add(password=None):
            d = self.client.addUser(userid, password)
            d.addCallback(self._showText, "user {} added".format(userid))
            return d

        if not self._passwords:
            return add()

        def first(password):
            self._askSecret(self.againPrompt, lambda again: second(password, again))

        def second(password, again):
            if password != again:
                self._showError("the passwords differ; user not added")
                return self._afterSecret(None)
            if not password.strip():
                self._showError("a password cannot be empty; user not added")
                return self._afterSecret(None)
            self._afterSecret(add(password))

        self._askSecret(self.passwordPrompt, first)
        return None

    def cmd_SETUSER(self, userid):
        """
        C{SetUser <userid>}: select a user; on success the sub-prompt
        names it.  When the server wants passwords, ask for it.
        """
        userid = self._userId(userid)

        def selected(text):
            self.userid = userid
            self._showText(text, "working as " + userid)

        if not self._passwords:
            return self.client.selectUser(userid).addCallback(selected)

        def askPassword(text):
            # USER ended any session on the server: until the password is
            # accepted, nobody is selected.
            self.userid = None
            self._askSecret(
                self.passwordPrompt,
                lambda password: self._afterSecret(
                    self.client.login(password).addCallback(selected)
                ),
            )

        return self.client.selectUser(userid).addCallback(askPassword)

    def cmd_READ(self):
        """
        C{Read}: show the next message, headers and body.
        """
        return self.client.readMessage().addCallback(self._showMessage)

    def cmd_DELETE(self):
        """
        C{Delete}: delete the message shown last.
        """
        d = self.client.deleteMessage()
        d.addCallback(self._showText, "message deleted")
        return d

    def cmd_SEND(self, receiver):
        """
        C{Send <receiverid>}: ask the server about the receiver; if it
        accepts, show C{Type Message: } and take lines up to one holding
        C{###} as the message (see L{_messageLine}).
        """
        receiver = self._userId(receiver)

        def accepted(text):
            self._message = []
            self._write(self.messagePrompt)
            self._atPrompt = True

        return self.client.startSend(receiver).addCallback(accepted)

    def cmd_DONE(self):
        """
        C{Done}: end the user session, back to the main prompt.
        """

        def done(text):
            self.userid = None
            self._showText(text, "done")

        return self.client.done().addCallback(done)

    def cmd_QUIT(self):
        """
        C{Quit}: show the server's reply and exit 0.
        """
        self._quitting = True

        def answered(text):
            self._showText(text, "bye")
            self._exit(0)

        def failed(failure):
            self._showError(failure.getErrorMessage())
            self._exit(1)

        return self.client.quit().addCallbacks(answered, failed)

    def cmd_HELP(self):
        """
        C{Help}: list the commands of the current prompt (locally).
        """
        lines = ["commands:"]
        for name in self._commandsHere():
            lines.append("  {:<20} {}".format(_usage(name), _COMMANDS[name][2]))
        self._writeLine("\n".join(lines))
        return None


_STOP = object()


class Options(usage.Options):
    """
    The command line of C{simplemail}.
    """

    synopsis = "Usage: simplemail [options] [HOST [PORT]]"
    longdesc = (
        "A terminal client for a simplemail server (default {} port {}). "
        "Type Help at a prompt for the commands; end of input acts as Quit."
    ).format(DEFAULT_HOST, DEFAULT_PORT)

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


class TerminalEcho:
    """
    Turns a terminal's echo off while a password is typed, and back on.
    """

    def __init__(self, fd=0):
        self.fd = fd
        self._saved = None

    def echo(self, on):
        import termios

        try:
            if not on and self._saved is None:
                self._saved = termios.tcgetattr(self.fd)
                quiet = termios.tcgetattr(self.fd)
                quiet[3] &= ~termios.ECHO
                termios.tcsetattr(self.fd, termios.TCSANOW, quiet)
            elif on and self._saved is not None:
                saved, self._saved = self._saved, None
                termios.tcsetattr(self.fd, termios.TCSANOW, saved)
        except termios.error:
            pass


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
        terminal = TerminalEcho(0) if os.isatty(0) else None
        console = MailConsole(client, terminal)
        reactor.addSystemEventTrigger("after", "shutdown", _restoreBlocking)
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


def run():
    """
    The C{simplemail} command.
    """
    from twisted.internet import task

    task.react(main, sys.argv[1:])
