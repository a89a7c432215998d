# -*- test-case-name: tests.test_console -*-
"""
The simplemail console: a line-oriented user interface on standard input and
output, driving a L{MailClientProtocol}.

Run it as C{simplemail [HOST [PORT]]}, C{simplemail --connect ENDPOINT} or
C{python -m twisted_mail}.  L{MailConsole} is handed its client, as Conch's
cftp C{StdioClient} is, and never touches the network itself; L{main} wires
the two together for L{twisted.internet.task.react}.
"""

import sys
import time

from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from twisted_mail.console.client import ServerConnectionLost
from twisted_mail.console.commands import (
    _COMMANDS,
    _REST,
    MailCommands,
    _arity,
    _CommandError,
    _splitWords,
    _usage,
)
from twisted_mail import wire
from twisted_mail.errors import MailError, ServerError
from twisted_mail.mail.message import composeMessage
from twisted_mail.console.terminal import COMMAND, SECRET, TerminalEcho  # noqa: F401


log = Logger()


@implementer(IHalfCloseableProtocol)
class MailConsole(MailCommands, LineReceiver):
    """
    The console protocol, connected to standard input and output (a
    L{twisted.internet.stdio.StandardIO}, or on a terminal a
    L{twisted_mail.console.terminal.TerminalSession}, which edits the lines).

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
    subjectPrompt = "Subject: "

    passwordPrompt = "Password: "
    againPrompt = "Again: "

    def __init__(self, client, terminal=None, readable=None, localtime=None):
        """
        @param client: the L{MailClientProtocol}.
        @param terminal: L{None} when input is not a terminal; else an
            object with C{echo(on)} to turn the terminal's echo off while a
            password is typed (L{TerminalEcho}), or a line editor (an
            object with a true C{editing}, C{prompt(text, kind)} and
            C{echo(on)}: L{twisted_mail.console.terminal.TerminalSession}).
        @param readable: whether C{Read} shows the next message readably
            (decoded headers, text, attachments) rather than as stored; by
            default, when input is a terminal.  C{Read <n>} always does.
        @param localtime: turns POSIX seconds into a local C{struct_time},
            for C{List} (default L{time.localtime}).
        """
        self.client = client
        self.finished = defer.Deferred()
        self.userid = None
        self._terminal = terminal
        self._editing = bool(getattr(terminal, "editing", False))
        self._readable = terminal is not None if readable is None else readable
        self._localtime = localtime or time.localtime
        self._passwords = False
        self._secret = None
        self._secretKind = None
        self._message = None
        self._subject = None
        self._atPrompt = False
        self._inputEnded = False
        self._endHandled = False
        self._quitting = False
        self._finishing = False
        self._exitCode = 0
        self._receiving = 0
        self._listing = None
        self._lastMessage = None
        self._lastParsed = None
        self._users = []
        self._folders = False
        self.folder = "INBOX"
        self._lastId = None

    # Output

    def _write(self, text):
        self._atPrompt = False
        self.transport.write(text.encode("utf-8"))

    def _writeLine(self, text):
        self._write(wire.escapeControls(text) + "\n")

    def _showError(self, text):
        self._writeLine("error: " + text)

    def _showPrompt(self, text, kind=COMMAND):
        """
        Show a prompt: on a line editor, as the prompt of the line edited
        next (of C{kind}); else written as it is.
        """
        if self._editing:
            self._atPrompt = False
            self._terminal.prompt(text, kind)
        else:
            self._write(text)
            self._atPrompt = True

    def _prompt(self):
        if self.userid is None:
            self._showPrompt(self.mainPrompt)
        elif self.folder == "INBOX":
            self._showPrompt(self.subPrompt.format(userid=self.userid))
        else:
            self._showPrompt(self.subPrompt.format(
                userid=self.userid + ":" + wire.escapeControls(self.folder, keep="")))

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
            self._folders = "FOLDERS" in names
            if not self._passwords:
                return self._refreshUsers()

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
            if not self._editing and self._secretKind == SECRET:
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
            if (self._terminal is not None and not self._editing
                    and self._secretKind == SECRET):
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
        name = words[0].upper()
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
        least, most = _arity(name)
        if name in _REST:
            args = _splitWords(text, most)[1:]
        else:
            args = words[1:]
        if not least <= len(args) <= most:
            raise _CommandError("usage: " + _usage(name))
        return method(*args)

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
        if failure.check(MailError, _CommandError):
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
            subject, self._subject = self._subject, None
            if subject:
                body = composeMessage(subject, body)
            d = self.client.sendBody(body)
            d.addCallback(self._showText, "message sent")
            self._run(d)
        else:
            self._message.append(line)

_STOP = object()
