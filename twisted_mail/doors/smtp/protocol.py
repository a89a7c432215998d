"""
The SMTP protocol: L{SMTPServerProtocol}, an L{smtp.ESMTP} with its own
framing (its docstring lists the Twisted behaviours it replaces, and why)
and its own handling of the end of the message: C{250} only once every
recipient's copy is durable, C{451} when the store failed for a reason that
may pass.
"""

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.interfaces import INegotiated, ISSLTransport
from twisted.logger import Logger
from twisted.mail import smtp

from twisted_mail.logins import throttle
from twisted_mail import wire
from twisted_mail.logins.portal import IMailAccount, LoginAttempt, peerAddress
from twisted_mail.doors.connections import Closing, describePeer, writeNow
from twisted_mail.doors.smtp import submission
from twisted_mail.doors.smtp.delivery import _peerLiteral, _sanitise

log = Logger()

#: The most recipients of one message (RFC 5321 section 4.5.3.1.8).
MAX_RECIPIENTS = 100

#: Replies with a 5xx code (other than 552) a client may provoke before the
#: session is closed.
MAX_ERRORS = 20

#: The longest line of message text, not counting its line ending.  RFC
#: 5321 allows 998; we take what our own protocol takes.
MAX_TEXT_LINE = wire.MAX_LINE_LENGTH

#: The longest command line, not counting its line ending.  RFC 5321 allows
#: 510 (plus what extensions add).
MAX_COMMAND_LINE = 4096

#: The longest forward or reverse path, with its angle brackets (RFC 5321
#: allows 256 octets).  Twisted's address parser takes quadratic time, so
#: longer ones are refused before it sees them.
MAX_PATH = 258

_COMMAND, _DATA, _AUTH = smtp.COMMAND, smtp.DATA, smtp.AUTH


class SMTPServerProtocol(Closing, smtp.ESMTP):
    """
    One SMTP connection.

    L{twisted.mail.smtp.ESMTP} parses the commands and addresses, answers
    C{EHLO} with our extensions and does C{STARTTLS}.  This class replaces
    its framing and its handling of the message text, because as they stand
    on Twisted 26.10:

      - an over-long line is answered C{500} and the rest of it is then read
        as commands (a message body can smuggle commands); here it is
        answered and the connection closed;
      - lines are split on CRLF only and the end of the message is any line
        holding only C{.}; here a bare LF or CR ends a line of text (it is
        normalised) but only CRLF C{.} CRLF ends the message, so a message
        cannot be cut short by a bare-LF C{.} line that a relay before us
        took for text;
      - pipelined commands are answered before a pending validation or
        delivery, out of order; here input is held while one is pending;
      - bytes that arrived with C{STARTTLS} are read as commands after the
        handshake (command injection); here they are dropped;
      - every failure of C{eomReceived} becomes C{550}; here a temporary
        one is C{451};
      - C{EHLO} from a Unix socket raises; C{NOOP}, C{VRFY} and C{HELP} are
        missing; C{SIZE=} is ignored.

    @ivar delivery: the connection's L{StoreDelivery} (set by the factory).
    @ivar maxMessageSize: the largest message, in bytes, as received.
    @ivar peer: the client's address, for the logs.
    """

    maxMessageSize = 10 * 1024 * 1024
    maxRecipients = MAX_RECIPIENTS
    maxErrors = MAX_ERRORS
    maxTextLine = MAX_TEXT_LINE
    maxCommandLine = MAX_COMMAND_LINE
    noisy = False

    peer = "?"
    withProtocol = b"SMTP"
    #: Whether this is a submission connection (C{--submission}): C{AUTH}
    #: through L{portal} is required before C{MAIL}, and the sender is bound
    #: to the authenticated user.
    submission = False
    portal = None
    authenticatedUser = None
    _sasl = None
    _authFailures = 0
    _lost = False
    _busy = False
    _paused = False
    _dropInput = False
    _errors = 0
    _messages = None
    _atLineStart = True
    # How many lines of message text to take line by line before trying
    # to take lines in bulk again (see _takeTextLines).
    _lineMode = 0

    def __init__(self, contextFactory=None):
        smtp.ESMTP.__init__(self, contextFactory=contextFactory)
        self._input = bytearray()
        self._scanned = 0
        self._pending = []

    # -- connection events

    def connectionMade(self):
        self.peer = describePeer(self.transport)
        self._peerLiteral = _peerLiteral(self.transport)
        log.info("SMTP connection from {peer}", peer=self.peer)
        smtp.ESMTP.connectionMade(self)
        # A connection that is TLS from the start (an ssl: endpoint).
        self.startedTLS = ISSLTransport.providedBy(
            self.transport
        ) or INegotiated.providedBy(self.transport)

    def greeting(self):
        return self.host + b" ESMTP simplemail"

    def connectionLost(self, reason):
        self._lost = True
        self.connectionClosed()
        self.factory.connectionEnded()
        self.setTimeout(None)
        messages, self._messages = self._messages, None
        for message in messages or ():
            message.connectionLost()
        if self._onLogout:
            self._onLogout()
            self._onLogout = None
        log.info("SMTP connection from {peer} closed", peer=self.peer)

    def timeoutConnection(self):
        log.info("closing idle SMTP connection from {peer}", peer=self.peer)
        self._reply(421, self.host + b" idle for too long, closing connection")
        self.closeConnection()

    # -- framing

    def _closing(self):
        return self._lost or self.hangingUp or self.transport.disconnecting

    def dataReceived(self, data):
        """
        Split the input into lines (ended by LF, an optional CR before it
        removed) and handle them one at a time, holding them while a reply
        is pending.

        A line longer than the limit (4 KiB for a command, 64 KiB for a line
        of text) is answered C{500} and the connection closed: nothing of it
        or after it is read as a command.
        """
        if self._closing():
            return
        self._input += data
        if not self._busy and not self._paused:
            self._processInput()

    def _processInput(self):
        buf = self._input
        start = 0
        scan = self._scanned
        self._busy = True
        try:
            while not self._paused and not self._closing():
                limit = self.maxTextLine if self.mode == _DATA else self.maxCommandLine
                end = buf.find(b"\n", scan)
                if end == -1:
                    scan = len(buf)
                    if len(buf) - start > limit + 1:
                        self._lineTooLong(limit)
                    break
                if self.mode == _DATA and not self._lineMode:
                    # A whole line at least is at hand: try to take many.
                    taken = self._takeTextLines(buf, start)
                    if taken is not None:
                        start = scan = taken
                        continue
                line = bytes(buf[start:end])
                start = scan = end + 1
                if len(line) - line.endswith(b"\r") > limit:
                    self._lineTooLong(limit)
                    break
                try:
                    self._lineReceived(line)
                except Exception:
                    log.failure(
                        "unexpected error serving SMTP client {peer}", peer=self.peer
                    )
                    self._reply(421, self.host + b" internal error, closing connection")
                    self.closeConnection()
                    break
                if self._dropInput:
                    # After STARTTLS: what came with it was sent in clear.
                    self._dropInput = False
                    start = scan = len(buf)
        finally:
            self._busy = False
            if self._closing():
                del buf[:]
                self._scanned = 0
            else:
                del buf[:start]
                self._scanned = scan - start

    def _takeTextLines(self, buf, start):
        """
        Take the message text's lines at hand in one piece, up to its final
        C{.} line if it is there, at most a line's length limit at a time,
        when every one of them ends in CRLF (bare CR and LF are the line
        path's to handle): the same as line by line for a fraction of the
        work.  Each byte is looked at once or, where the line path takes
        over, twice: a big message costs time linear in its size, in
        slices short enough not to hold the reactor up.

        Called only when a whole line at least is at hand.

        @return: where the input not taken starts, or L{None} to go on line
            by line.
        """
        if buf.startswith(b".\r\n", start):
            return None  # the end, or a "." line after a bare LF: text
        window = start + self.maxTextLine
        end = buf.find(b"\r\n.\r\n", start, window + 5)
        if end != -1:
            taken = end + 2
        else:
            taken = buf.rfind(b"\r\n", start, window + 2) + 2
            if taken < start + 2:
                # Lines ended by bare LFs, or one too long: the line path's.
                self._lineMode = buf.count(b"\n", start, window + 1)
                return None
        text = bytes(buf[start:taken])
        lines = text.count(b"\r\n")
        if text.count(b"\r") != lines or text.count(b"\n") != lines:
            self._lineMode = text.count(b"\n")
            return None
        self.resetTimeout()
        self._atLineStart = True
        for message in self._messages:
            message.textReceived(text)
        if end == -1:
            return taken
        self._endOfData()
        return end + 5

    def _lineTooLong(self, limit):
        log.warn(
            "SMTP line of more than {limit} bytes from {peer}; closing",
            limit=limit,
            peer=self.peer,
        )
        messages, self._messages = self._messages, None
        for message in messages or ():
            message.connectionLost()
        self.mode = _COMMAND
        self._reply(500, b"line too long; closing connection")
        self.closeConnection()

    def _lineReceived(self, line):
        """
        One line, with its CR (if any) but not its LF.
        """
        if self.mode == _DATA:
            self._textLineReceived(line)
            return
        self.lineReceived(line.rstrip(b"\r"))  # ESMTP: reset timer, dispatch
        pending, self._pending = self._pending, []
        for d in pending:
            self._holdUntil(d)

    def _holdUntil(self, d):
        """
        Read no further input until C{d} (whose callbacks write the reply to
        the current command) has fired.
        """
        d.addErrback(
            lambda f: log.failure("unexpected error serving {peer}", f, peer=self.peer)
        )
        fired = []
        d.addCallback(fired.append)
        if fired or self._closing():
            return
        self._paused = True
        self.setTimeout(None)
        self.transport.pauseProducing()
        d.addCallback(lambda _: self._resume())

    def _resume(self):
        self._paused = False
        if self._closing():
            return
        self.setTimeout(self.timeout)
        self.transport.resumeProducing()
        if not self._busy:
            self._processInput()

    # -- replies

    def sendCode(self, code, message=b""):
        """
        Send a reply; count it when it tells the client it did something
        wrong, and close the session at the limit.
        """
        self._reply(code, message)
        if code >= 500 and code != 552:
            self._errors += 1
            if self._errors >= self.maxErrors and not self._closing():
                log.warn(
                    "closing SMTP connection from {peer} after {n} errors",
                    peer=self.peer,
                    n=self._errors,
                )
                self._reply(421, self.host + b" too many errors, closing connection")
                self.closeConnection()

    def _reply(self, code, message=b""):
        if self._lost:
            return
        smtp.ESMTP.sendCode(self, code, message)

    def sendLine(self, line):
        # Straight to a plain TCP socket when nothing waits to be written
        # (see writeNow): no epoll change and dispatch per reply line.
        writeNow(self.transport, line + self.delimiter)

    # -- commands

    def lookupMethod(self, command):
        if not command.isascii():
            return None
        return smtp.ESMTP.lookupMethod(self, command)

    def extensions(self):
        ext = {
            b"SIZE": [b"%d" % (self.maxMessageSize,)],
            b"8BITMIME": None,
            b"PIPELINING": None,
        }
        if self.ctx is not None and self.canStartTLS and not self.startedTLS:
            ext[b"STARTTLS"] = None
        if self.submission and self._protected():
            ext[b"AUTH"] = list(submission.MECHANISMS)
        return ext

    def _hello(self, rest, extended):
        rest = rest.strip()
        if not rest:
            self.sendCode(
                501,
                b"say " + (b"EHLO" if extended else b"HELO") + b" and your host name",
            )
            return
        self._helo = (rest, self._peerLiteral)
        self._from = None
        self._to = []
        # RFC 3848's names for the "with" clause of Received:.
        if self.authenticated:
            self.withProtocol = b"ESMTPSA"
        elif self.startedTLS:
            self.withProtocol = b"ESMTPS"
        else:
            self.withProtocol = b"ESMTP" if extended else b"SMTP"
        text = self.host + b" hello " + self._peerLiteral
        if extended:
            text += b"\n" + self.listExtensions()
        self.sendCode(250, text)

    def do_QUIT(self, rest):
        # Twisted's closes with loseConnection alone: under TLS a client
        # that never answers close_notify would keep the connection.
        self.sendCode(221, b"See you later")
        self.closeConnection()

    def do_HELO(self, rest):
        self._hello(rest, False)

    def do_EHLO(self, rest):
        self._hello(rest, True)

    def do_NOOP(self, rest):
        self.sendCode(250, b"OK")

    def do_RSET(self, rest):
        self._from = None
        self._to = []
        self.sendCode(250, b"OK")

    def do_VRFY(self, rest):
        # We do not tell who has a mailbox here.
        self.sendCode(252, b"cannot verify, but send the message and we will try")

    def do_HELP(self, rest):
        self.sendCode(
            214,
            b"commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT"
            + (b" STARTTLS" if self.ctx is not None else b"")
            + (b" AUTH" if self.submission else b""),
        )

    # -- submission: AUTH (twisted_mail/doors/smtp/submission.py)

    def _protected(self):
        return bool(self.startedTLS)

    def ext_AUTH(self, rest):
        if not self.submission:
            self.sendCode(
                502, b"no authentication here: mail is accepted for local users only"
            )
            return
        parts = rest.split(None, 1)
        if not parts:
            self.sendCode(501, b"say AUTH and a mechanism: PLAIN or LOGIN")
        elif not self._protected():
            self.sendCode(538, submission.NEED_TLS)
        elif self.authenticated:
            self.sendCode(503, b"already authenticated")
        elif self._from is not None:
            self.sendCode(503, b"AUTH is not allowed during a mail transaction")
        else:
            exchange = submission.startExchange(parts[0])
            if exchange is None:
                self.sendCode(504, b"unrecognized authentication mechanism")
                return
            self._sasl = exchange
            self.mode = _AUTH
            if len(parts) > 1:
                self.state_AUTH(parts[1])
            else:
                self._reply(334, submission.encodeChallenge(exchange.challenge))

    def state_AUTH(self, line):
        """
        A response line of the SASL exchange that C{AUTH} started.
        """
        exchange = self._sasl
        if line.strip() == b"*":
            self._endExchange()
            self.sendCode(501, b"authentication cancelled")
            return
        try:
            result = exchange.respond(submission.decodeResponse(line))
        except submission.SASLError as e:
            self._endExchange()
            self.sendCode(e.code, e.text)
            return
        if isinstance(result, bytes):
            self._reply(334, submission.encodeChallenge(result))
            return
        self._endExchange()
        username, password = result
        credentials = LoginAttempt(username, password, peerAddress(self.transport))
        d = self.portal.login(credentials, None, IMailAccount)
        d.addCallbacks(self._authenticated, self._authFailed)
        self._pending.append(d)

    def _endExchange(self):
        self._sasl = None
        self.mode = _COMMAND

    def _authenticated(self, result):
        interface, account, logout = result
        self.authenticated = True
        self.authenticatedUser = account.userid
        self.delivery.submitter = account.userid
        self.withProtocol = b"ESMTPSA"
        self._onLogout = logout
        log.info(
            "{peer} authenticated as {user} for submission",
            peer=self.peer,
            user=account.userid,
        )
        self._reply(235, b"authentication successful")

    def _authFailed(self, failure):
        # The throttle logged the refusal (once, for every door).
        if not failure.check(UnauthorizedLogin):
            log.failure("checking a password for {peer} failed", failure, peer=self.peer)
            self._reply(454, b"temporary authentication failure, try again later")
            return
        self._authFailures += 1
        self.sendCode(535, b"authentication failed")
        if throttle.tooManyFailures(self._authFailures) and not self._closing():
            log.info(
                "closing SMTP connection from {peer} after {n} failed logins",
                peer=self.peer,
                n=self._authFailures,
            )
            self._reply(421, self.host + b" too many failed logins, closing connection")
            self.closeConnection()

    def ext_STARTTLS(self, rest):
        if rest.strip():
            self.sendCode(501, b"STARTTLS takes no argument")
        elif self.startedTLS:
            self.sendCode(503, b"TLS already active")
        elif self.ctx is None or not self.canStartTLS:
            self.sendCode(454, b"TLS not available")
        else:
            self._reply(220, b"ready to start TLS")
            self.transport.startTLS(self.ctx)
            self.startedTLS = True
            self._dropInput = True
            # RFC 3207: forget what the client told us before.
            self._helo = (None, self._peerLiteral)
            self._from = None
            self._to = []
            self.withProtocol = b"ESMTPS"
            log.info("TLS started with {peer}", peer=self.peer)

    def do_MAIL(self, rest):
        if self._from:
            smtp.ESMTP.do_MAIL(self, rest)  # 503
            return
        if self.submission and not self.authenticated:
            if not self._protected():
                self.sendCode(530, submission.NEED_TLS)
            else:
                self.sendCode(530, b"authentication required: use AUTH first")
            return
        match = self.mail_re.match(rest)
        if match is not None:
            if len(match.group("path")) > MAX_PATH:
                self.sendCode(501, b"address too long")
                return
            refusal = self._mailParameters(match.group("opts"))
            if refusal is not None:
                self.sendCode(*refusal)
                return
        smtp.ESMTP.do_MAIL(self, rest)

    def _mailParameters(self, opts):
        """
        Check the ESMTP parameters of C{MAIL FROM} (RFC 1870 C{SIZE=},
        RFC 6152 C{BODY=}).

        @return: L{None} if they are acceptable, else C{(code, text)}.
        """
        for param in (opts or b"").split():
            key, _, value = param.partition(b"=")
            key = key.upper()
            if key == b"SIZE":
                if not value.isdigit() or len(value) > 20:
                    return 501, b"SIZE wants a number of bytes"
                declared = int(value)
                if declared > self.maxMessageSize:
                    log.info(
                        "refused a message of {size} bytes (declared) from {peer}",
                        size=declared,
                        peer=self.peer,
                    )
                    return 552, (
                        b"message size exceeds fixed maximum message size (%d bytes)"
                        % (self.maxMessageSize,)
                    )
            elif key == b"AUTH" and self.submission:
                # RFC 4954: the identity the message was submitted by; we
                # know it already.
                pass
            elif key == b"BODY":
                if value.upper() not in (b"7BIT", b"8BITMIME"):
                    return 501, b"BODY must be 7BIT or 8BITMIME"
            else:
                return 555, b"MAIL FROM parameter not recognized: " + _sanitise(key, 40)
        return None

    def do_RCPT(self, rest):
        if not self._from:
            smtp.ESMTP.do_RCPT(self, rest)  # 503
            return
        if len(self._to) >= self.maxRecipients:
            self.sendCode(
                452, b"too many recipients (at most %d)" % (self.maxRecipients,)
            )
            return
        match = self.rcpt_re.match(rest)
        if match is not None:
            if len(match.group("path")) > MAX_PATH:
                self.sendCode(501, b"address too long")
                return
            if match.group("opts"):
                self.sendCode(555, b"RCPT TO parameters not recognized")
                return
        smtp.ESMTP.do_RCPT(self, rest)

    def validateFrom(self, helo, origin):
        d = smtp.ESMTP.validateFrom(self, helo, origin)
        self._pending.append(d)
        return d

    def validateTo(self, user):
        d = defer.maybeDeferred(smtp.ESMTP.validateTo, self, user)
        self._pending.append(d)
        return d

    def do_DATA(self, rest):
        if self._from is None or not self._to:
            self.sendCode(503, b"need MAIL FROM and a RCPT TO first")
            return
        if rest.strip():
            self.sendCode(501, b"DATA takes no argument")
            return
        recipients = self._to
        self._from = None
        self._to = []
        messages = []
        try:
            for user, factory in recipients:
                message = factory()
                if not any(message is m for m in messages):
                    messages.append(message)
        except smtp.SMTPServerError as e:
            for message in messages:
                message.connectionLost()
            self.sendCode(e.code, _asBytes(e.resp))
            return
        self._messages = messages
        self._atLineStart = True
        self._lineMode = 0
        self.mode = _DATA
        self._reply(354, b"send the message, end with <CR><LF>.<CR><LF>")

    # -- the message text

    def _textLineReceived(self, raw):
        """
        One line of the message as it came (its CRs kept, its LF removed).

        The message ends at a line holding only C{.} with CRLF before and
        after it.  A C{.} line framed otherwise is text.  Otherwise a leading
        dot is removed (dot-stuffing) and a bare CR inside the line starts a
        new line.
        """
        self.resetTimeout()
        if self._lineMode:
            self._lineMode -= 1
        endedWithCRLF = raw.endswith(b"\r")
        if raw == b".\r" and self._atLineStart:
            self._endOfData()
            return
        self._atLineStart = endedWithCRLF
        line = raw.rstrip(b"\r") if endedWithCRLF else raw
        if line[:1] == b"." and line != b".":
            line = line[1:]
        parts = line.split(b"\r") if b"\r" in line else (line,)
        for message in self._messages:
            for part in parts:
                message.lineReceived(part)

    def _endOfData(self):
        self.mode = _COMMAND
        messages, self._messages = self._messages, None
        d = defer.DeferredList(
            [defer.maybeDeferred(m.eomReceived) for m in messages], consumeErrors=True
        )
        d.addCallback(self._messageHandled)
        self._holdUntil(d)

    def _messageHandled(self, resultList):
        """
        Answer the end of the message: C{250} when every message was
        stored, else the most hopeful failure (a temporary C{4xx} before a
        permanent C{5xx}).
        """
        failures = []
        ids = []
        for ok, result in resultList:
            if ok:
                if isinstance(result, str):
                    ids.append(result)
                continue
            if result.check(smtp.SMTPServerError):
                failures.append((result.value.code, _asBytes(result.value.resp)))
            else:
                log.failure(
                    "unexpected delivery error for {peer}", result, peer=self.peer
                )
                failures.append((451, b"local error, try again later"))
        if not failures:
            self._reply(
                250,
                b"message stored"
                + (b" (id " + ids[0].encode("ascii") + b")" if ids else b""),
            )
            return
        failures.sort(key=lambda failure: failure[0] >= 500)
        self._reply(*failures[0])


def _asBytes(text):
    if isinstance(text, bytes):
        return text
    return str(text).encode("ascii", "replace")
