# -*- test-case-name: tests.test_client -*-
"""
The simplemail client protocol: one method per wire command, each returning
a L{Deferred}.

L{MailClientProtocol} knows the wire (see docs/protocol.rst) and nothing
about terminals; L{twisted_mail.console} drives it from standard input.
Commands may be issued at any time, even before the greeting: they are queued
and sent one at a time, in order, each after the previous one is answered.
A C{-ERR <text>} reply fails the command's L{Deferred} with
L{ServerError}C{(text)}; a lost connection fails every command still waiting
with L{ServerConnectionLost}, so no caller is left hanging.
"""

from collections import deque
from typing import NamedTuple

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver

from twisted_mail import wire
from twisted_mail.errors import ProtocolError, ServerError

log = Logger()


class ServerConnectionLost(error.ConnectionLost):
    """
    The connection to the server ended, so a command will never be answered.

    C{str()} of it is one line fit to show a user, e.g. C{"the server closed
    the connection"}.
    """

    def __init__(self, text="connection to the server lost"):
        super().__init__(text)

    def __str__(self):
        return self.args[0]


class NoSendInProgress(Exception):
    """
    L{MailClientProtocol.sendBody} was called while the server was not
    waiting for a message body (no L{MailClientProtocol.startSend} had been
    accepted, or its body was already sent).
    """

    def __str__(self):
        return "the server is not waiting for a message body"


class MessageLine(NamedTuple):
    """
    One line of an C{LSTM} listing.

    @ivar id: the message's stable id.
    @ivar size: its size in octets (CRLF line ends).
    @ivar arrived: when it arrived, POSIX seconds.
    @ivar sender: its decoded C{From}.
    @ivar subject: its decoded C{Subject}.
    """

    id: str
    size: int
    arrived: int
    sender: str
    subject: str
    flags: object = None


class FolderLine(NamedTuple):
    """
    One line of an C{LSTF} listing.

    @ivar name: the folder's name.
    @ivar total: how many messages it holds.
    @ivar unseen: how many of them are unread.
    @ivar special: its special use (C{"sent"}, ...) or L{None}.
    """

    name: str
    total: int
    unseen: int
    special: object = None


def parseListing(lines, flags=False):
    """
    The data lines of an C{LSTM} reply (with C{flags}, of C{LSTMF}) as
    L{MessageLine}s.

    @raise ProtocolError: a line is not C{<id> <size> <time>\t<from>\t<subject>}
        (and, with C{flags}, C{\t<flags>}).
    """
    result = []
    for line in lines:
        text = line.decode("utf-8", "replace")
        head, tab, rest = text.partition("\t")
        sender, _, subject = rest.partition("\t")
        found = None
        if flags:
            subject, _, shown = subject.partition("\t")
            found = frozenset(shown.split())
        words = head.split(" ")
        try:
            msgid, size, arrived = words
            result.append(MessageLine(msgid, int(size), int(arrived), sender, subject, found))
        except ValueError:
            raise ProtocolError("unexpected LSTM line from server: " + wire.escapeControls(text, keep="", limit=80))
    return result


def parseFolders(lines):
    """
    The data lines of an C{LSTF} reply as L{FolderLine}s.

    @raise ProtocolError: a line is not C{<total> <unseen> <special> <name>}.
    """
    result = []
    for line in lines:
        text = line.decode("utf-8", "replace")
        try:
            total, unseen, special, name = text.split(" ", 3)
            result.append(FolderLine(name, int(total), int(unseen),
                                     None if special == "-" else special))
        except ValueError:
            raise ProtocolError("unexpected LSTF line from server: " + wire.escapeControls(text, keep="", limit=80))
    return result


class _Command:
    """
    One command waiting to be sent or answered.

    @ivar line: the command line to send, without its line ending, or
        L{None} for a message body (already written when it is created).
    @ivar multiline: whether a C{+OK} reply is followed by data lines.
    @ivar asksForBody: whether a C{+OK} reply is the intermediate reply of
        C{SEND <id>}, after which the server waits for a body.
    @ivar deferred: the L{Deferred} handed to the caller.
    """

    def __init__(self, line, multiline=False, asksForBody=False):
        self.line = line
        self.multiline = multiline
        self.asksForBody = asksForBody
        self.deferred = defer.Deferred()


def _checkWord(value, what):
    """
    Refuse an argument that would change the shape of a command line.

    An empty id or one holding white space would turn, say, C{SEND <id>} into
    the one-line C{SEND <id> <text>} form, after which the body we send
    would be read as commands.  The server checks the rest of the rules.

    @raise ValueError: if C{value} is empty or holds white space.
    """
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(
            "{} must be one word without spaces, not {!r}".format(what, value)
        )


class MailClientProtocol(LineReceiver):
    """
    The client end of a simplemail connection.

    Lines are sent with CRLF; replies may end with CRLF or a bare LF.

    @ivar greeting: a L{Deferred} firing with the text of the server's
        greeting (after C{+OK}), or failing with L{ServerError} if the server
        greets with C{-ERR}, or with L{ServerConnectionLost} if the connection
        ends first.  Its failure must be handled like any command's.
    """

    # Frame on LF and drop a CR before it, so both CRLF and bare LF work;
    # sendLine below always sends CRLF.
    delimiter = b"\n"

    #: The longest reply line accepted.  Well above the protocol's 64 KiB
    #: limit: a message put into a spool by another mail tool may hold longer
    #: lines, and the server hands it out as it stands.
    MAX_LENGTH = 16 * 1024 * 1024

    def __init__(self):
        self.greeting = defer.Deferred()
        self._greeted = False
        self._queue = deque()
        self._current = None
        self._dataLines = None
        self._awaitingBody = False
        self._quitSent = False
        self._closing = False
        self._serverText = None
        self._lost = None
        self._disconnectWaiters = []

    # Framing

    def sendLine(self, line):
        """
        Send one line with a CRLF ending.

        @type line: L{bytes}
        """
        self.transport.write(line + b"\r\n")

    def lineReceived(self, line):
        """
        Handle one line from the server: a status line, or a data line of a
        multi-line reply.
        """
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._dataLines is not None:
            if line == b".":
                lines, self._dataLines = self._dataLines, None
                self._finish(lines)
            else:
                self._dataLines.append(wire.unstuff(line))
            return

        try:
            reply = wire.parseReplyLine(line)
        except ProtocolError as e:
            self._protocolViolation(e)
            return

        if not self._greeted:
            self._greeted = True
            if reply.ok:
                self.greeting.callback(reply.text)
                self._sendNext()
            else:
                self.greeting.errback(ServerError(reply.text))
                self.disconnect()
            return

        command = self._current
        if command is None:
            # Nothing was asked: the server is saying why it is about to
            # hang up (an idle timeout, say).  Keep it for the user.
            log.info("unsolicited reply from the server: {line!r}", line=line)
            self._serverText = reply.text
            return
        if reply.ok and command.multiline:
            self._dataLines = []
            return
        if reply.ok and command.asksForBody:
            self._current = None
            self._awaitingBody = True
            command.deferred.callback(reply.text)
            return
        if reply.ok:
            self._finish(reply.text)
        else:
            self._finish(None, ServerError(reply.text))

    def lineLengthExceeded(self, line):
        """
        A reply line is too long to be from a simplemail server: give up on
        the connection.
        """
        self._protocolViolation(ProtocolError("reply line from the server is too long"))

    def connectionLost(self, reason):
        """
        Fail the greeting (if it has not come) and every command not yet
        answered with L{ServerConnectionLost}, then tell whoever asked
        through L{whenDisconnected}.
        """
        if self._closing:
            text = "the connection to the server was closed"
        elif self._serverText:
            text = "the server closed the connection: " + self._serverText
        elif reason.check(error.ConnectionDone):
            text = "the server closed the connection"
        else:
            text = "connection to the server lost"
        self._lost = text
        waiting = []
        if not self.greeting.called:
            waiting.append(self.greeting)
        if self._current is not None:
            waiting.append(self._current.deferred)
        waiting.extend(command.deferred for command in self._queue)
        self._current = None
        self._queue.clear()
        self._dataLines = None
        self._awaitingBody = False
        for d in waiting:
            d.errback(ServerConnectionLost(text))
        waiters, self._disconnectWaiters = self._disconnectWaiters, []
        for d in waiters:
            d.callback(ServerConnectionLost(text))

    # Internals

    def _enqueue(self, command):
        if self._lost is not None:
            return defer.fail(ServerConnectionLost(self._lost))
        self._queue.append(command)
        self._sendNext()
        return command.deferred

    def _command(self, verb, *args, multiline=False, asksForBody=False):
        try:
            line = wire.formatCommand(verb, *args)
        except ValueError as e:
            return defer.fail(e)
        return self._enqueue(_Command(line, multiline, asksForBody))

    def _sendNext(self):
        """
        Send the next queued command, if the server is free to take it.
        """
        if (
            not self._greeted
            or self._current is not None
            or self._awaitingBody
            or self._quitSent
            or self._closing
            or self._lost is not None
            or not self._queue
        ):
            return
        command = self._current = self._queue.popleft()
        if command.line == b"QUIT":
            self._quitSent = True
        self.sendLine(command.line)

    def _finish(self, result, exception=None):
        """
        The command in flight is answered: fire its L{Deferred}, then send
        the next one.
        """
        command, self._current = self._current, None
        if exception is None:
            command.deferred.callback(result)
        else:
            command.deferred.errback(exception)
        self._sendNext()

    def _protocolViolation(self, exception):
        """
        The server sent something that is not the protocol: fail what was
        waiting for it with C{exception} and drop the connection, since
        nothing after it can be trusted to line up.
        """
        log.warn("protocol error from the server: {error}", error=str(exception))
        self._dataLines = None
        if not self.greeting.called:
            self._greeted = True
            self.greeting.errback(exception)
        elif self._current is not None:
            self._finish(None, exception)
        self.disconnect()

    # Commands

    def listUsers(self):
        """
        C{LSTU}: the user ids.

        @return: a L{Deferred} firing with a L{list} of L{str}, sorted as the
            server sent them.
        """
        d = self._command("LSTU", multiline=True)
        d.addCallback(lambda lines: [line.decode("utf-8", "replace") for line in lines])
        return d

    def addUser(self, userid, password=None):
        """
        C{ADDU <userid>}: create a user; C{ADDU <userid> <password>} on a
        server with passwords on.

        @type userid: L{str}
        @return: a L{Deferred} firing with the server's text, or failing
            with L{ServerError} (invalid id, user exists) or L{ValueError}
            (an empty id or one with spaces, a password with a line break;
            nothing is sent).
        """
        try:
            _checkWord(userid, "a user id")
            if password is None:
                return self._command("ADDU", userid)
            return self._enqueue(
                _Command(wire.formatCommand("ADDU", userid, text=password))
            )
        except ValueError as e:
            return defer.fail(e)

    def login(self, password):
        """
        C{PASS <password>}: complete the login begun by L{selectUser} on a
        server with passwords on.

        @return: a L{Deferred} firing with the server's text (e.g.
            C{"bob has 3 messages"}), or failing with L{ServerError}.
        """
        try:
            line = wire.formatCommand("PASS", text=password)
        except ValueError as e:
            return defer.fail(e)
        return self._enqueue(_Command(line))

    def selectUser(self, userid):
        """
        C{USER <userid>}: select a user's mailbox.

        @type userid: L{str}
        @return: a L{Deferred} firing with the server's text, e.g.
            C{"bob has 3 messages"}, or failing with L{ServerError} or
            L{ValueError} as L{addUser} does.
        """
        try:
            _checkWord(userid, "a user id")
        except ValueError as e:
            return defer.fail(e)
        return self._command("USER", userid)

    def readMessage(self):
        """
        C{READM}: read the message at the cursor.

        @return: a L{Deferred} firing with the message as RFC 5322 L{bytes}
            (dot-unstuffed, LF line endings), or failing with L{ServerError}
            (e.g. C{"No More Mail"}).
        """
        d = self._command("READM", multiline=True)
        d.addCallback(lambda lines: b"".join(line + b"\n" for line in lines))
        return d

    def readMessageById(self, msgid):
        """
        C{READM <id>}: read the message with that stable id; it becomes the
        current message.

        @type msgid: L{str}
        @return: a L{Deferred} as for L{readMessage}; it fails with
            L{ServerError} (C{"no such message"}) or L{ValueError} (an empty
            id or one with spaces; nothing is sent).
        """
        try:
            _checkWord(msgid, "a message id")
        except ValueError as e:
            return defer.fail(e)
        d = self._command("READM", msgid, multiline=True)
        d.addCallback(lambda lines: b"".join(line + b"\n" for line in lines))
        return d

    def listMessages(self):
        """
        C{LSTM}: the messages of the selected user, in mailbox order.

        @return: a L{Deferred} firing with a L{list} of L{MessageLine}, or
            failing with L{ServerError} (no user selected) or
            L{ProtocolError} (a line that is not a listing line).
        """
        d = self._command("LSTM", multiline=True)
        d.addCallback(parseListing)
        return d

    def listMessagesWithFlags(self):
        """
        C{LSTMF}: as L{listMessages}, each L{MessageLine} with its C{flags}
        (a L{frozenset}); for a server whose C{CAPA} lists C{FOLDERS}.
        """
        d = self._command("LSTMF", multiline=True)
        d.addCallback(parseListing, flags=True)
        return d

    def listFolders(self):
        """
        C{LSTF}: the folders of the selected user.

        @return: a L{Deferred} firing with a L{list} of L{FolderLine}.
        """
        d = self._command("LSTF", multiline=True)
        d.addCallback(parseFolders)
        return d

    def _textCommand(self, verb, *args, text):
        try:
            for arg in args:
                _checkWord(arg, "a message id")
            line = wire.formatCommand(verb, *args, text=text)
        except ValueError as e:
            return defer.fail(e)
        return self._enqueue(_Command(line))

    def selectFolder(self, name):
        """
        C{FOLDER <name>}: the folder the mail commands work on from now on
        (C{INBOX} goes back to the mailbox and its cursor).

        @return: a L{Deferred} firing with the server's text.
        """
        return self._textCommand("FOLDER", text=name)

    def setFlags(self, msgid, flags, add=True):
        """
        C{FLAG <id> <flag>...} (or, with C{add} false, C{UNFLAG}); C{msgid}
        C{"."} is the current message (the one read last).

        @return: a L{Deferred} firing with the server's text (the flags now).
        """
        return self._textCommand("FLAG" if add else "UNFLAG", msgid, text=" ".join(flags))

    def moveMessage(self, msgid, folder):
        """
        C{MOVE <id> <folder>}: move a message of the current folder.
        """
        return self._textCommand("MOVE", msgid, text=folder)

    def searchMessages(self, query):
        """
        C{SRCH <query>}: the newest messages of the selected folder matching
        a search (docs/search.rst), newest first.

        @return: a L{Deferred} firing with a L{list} of L{MessageLine}, or
            failing with L{ServerError} (a malformed query: its reason).
        """
        d = self._command("SRCH", text=query, multiline=True)
        d.addCallback(parseListing)
        return d

    def deleteMessage(self):
        """
        C{DELM}: delete the message most recently read.

        @return: a L{Deferred} firing with the server's text.
        """
        return self._command("DELM")

    def startSend(self, receiver):
        """
        C{SEND <receiver>}: ask the server to take a message for
        C{receiver}, without sending the body yet.

        Once this fires, the server waits for the body: call L{sendBody}
        (or L{disconnect} to abandon the message).  Commands issued
        meanwhile are held until the body is sent.

        @type receiver: L{str}
        @return: a L{Deferred} firing with the text of the server's
            intermediate C{+OK}, or failing with L{ServerError} (no such
            receiver, no user selected: then no body is expected) or
            L{ValueError}.
        """
        try:
            _checkWord(receiver, "a receiver id")
        except ValueError as e:
            return defer.fail(e)
        return self._command("SEND", receiver, asksForBody=True)

    def startSendMessage(self, receiver):
        """
        C{SENDM <receiver>}: as L{startSend}, for a whole RFC 5322 message
        (see L{twisted_mail.mail.message.composeMessage}) sent with L{sendBody};
        the server sets its From, To, Date and Message-ID.
        """
        try:
            _checkWord(receiver, "a receiver id")
        except ValueError as e:
            return defer.fail(e)
        return self._command("SENDM", receiver, asksForBody=True)

    def sendMessage(self, receiver, subject, body):
        """
        Send a message with a subject: C{SENDM}, then the message
        L{composeMessage} builds (a plain UTF-8 text).

        @type receiver: L{str}
        @type subject: L{str}
        @param body: the text, L{bytes} (UTF-8) with any line endings.
        @return: a L{Deferred} as for L{send}.
        """
        from twisted_mail.mail.message import composeMessage

        try:
            message = composeMessage(subject, body)
        except ValueError as e:
            return defer.fail(e)
        d = self.startSendMessage(receiver)
        d.addCallback(lambda _: self.sendBody(message))
        return d

    def sendBody(self, body):
        """
        Send the body of the message that L{startSend} (or
        L{startSendMessage}) opened: its lines
        dot-stuffed, then a line holding only C{.}.

        @param body: the message body, L{bytes} with any line endings.
        @return: a L{Deferred} firing with the text of the server's final
            reply once the message is stored, or failing with L{ServerError}
            (e.g. message too large) or L{NoSendInProgress}.
        """
        if not isinstance(body, bytes):
            return defer.fail(TypeError("a message body must be bytes"))
        if self._lost is not None:
            return defer.fail(ServerConnectionLost(self._lost))
        if not self._awaitingBody:
            return defer.fail(NoSendInProgress())
        self._awaitingBody = False
        command = self._current = _Command(None)
        data = [wire.stuff(line) + b"\r\n" for line in wire.splitLines(body)]
        data.append(b".\r\n")
        self.transport.writeSequence(data)
        return command.deferred

    def send(self, receiver, body):
        """
        Send a message in the multi-line form: L{startSend}, then, if the
        server accepts the receiver, L{sendBody}.

        @type receiver: L{str}
        @type body: L{bytes}
        @return: a L{Deferred} firing with the final reply's text, or
            failing with L{ServerError} from either step (if the first reply
            is C{-ERR}, no body is sent).
        """
        d = self.startSend(receiver)
        d.addCallback(lambda _: self.sendBody(body))
        return d

    def done(self):
        """
        C{DONEU}: end the user session.

        @return: a L{Deferred} firing with the server's text.
        """
        return self._command("DONEU")

    def capabilities(self):
        """
        C{CAPA}: what the server supports beyond the core protocol.

        @return: a L{Deferred} firing with a L{list} of L{str}; empty if the
            server does not know C{CAPA} (it answers C{-ERR unknown
            command}).
        """

        def noCapa(failure):
            failure.trap(ServerError)
            if str(failure.value).strip().lower() == "unknown command":
                return []
            return failure

        d = self._command("CAPA", multiline=True)
        d.addCallback(lambda lines: [line.decode("utf-8", "replace") for line in lines])
        d.addErrback(noCapa)
        return d

    def quit(self):
        """
        C{QUIT}: end the session; the connection is closed after the reply.
        Commands issued after this one are never sent (they fail with
        L{ServerConnectionLost} when the connection closes).

        @return: a L{Deferred} firing with the server's text.
        """

        def close(text):
            self.disconnect()
            return text

        d = self._command("QUIT")
        d.addCallback(close)
        return d

    def disconnect(self):
        """
        Close the connection without C{QUIT}, e.g. to abandon a message
        whose body is not sent: the server never sees its final C{.}, so
        nothing is stored.  Commands not yet answered fail with
        L{ServerConnectionLost}.
        """
        self._closing = True
        if self.transport is not None:
            self.transport.loseConnection()

    def whenDisconnected(self):
        """
        @return: a L{Deferred} firing, once the connection has ended, with a
            L{ServerConnectionLost} saying how (it never fails).
        """
        if self._lost is not None:
            return defer.succeed(ServerConnectionLost(self._lost))
        d = defer.Deferred()
        self._disconnectWaiters.append(d)
        return d
