"""
POP3 over the mailbox view: C{twistd simplemail --pop3 ENDPOINT}.

RFC 1939 (USER, PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, UIDL, TOP),
RFC 2449 C{CAPA} (with C{PIPELINING} and C{RESP-CODES}), RFC 2595 C{STLS},
and RFC 3206 response codes.  See docs/pop3.rst.

The protocol stands on L{twisted.mail.pop3.POP3} (a C{LineOnlyReceiver}
with the idle timer of C{TimeoutMixin}) and on its C{UIDL} formatting, but
replaces its command loop: that one has no C{STLS}, sends exception class
names to the client, lets commands pipelined after C{PASS} run before the
login is done, lists deleted messages in C{LIST}, stuffs dots only within
16 KiB chunks of a message (a line starting with C{.} at a chunk boundary
goes out unstuffed), and deletes at C{QUIT} without waiting for the store.

A session takes a snapshot of the mailbox at login (the listing of the
mailbox view): message numbers, sizes and unique ids (the stable ids) are
those of the snapshot.  C{DELE} only marks; C{QUIT} deletes the marked
messages through the store, durably, before it answers C{+OK}.  A
connection lost before C{QUIT} deletes nothing.
"""

from twisted.cred.error import LoginFailed
from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import pop3 as twistedPOP3

from twisted_mail import errors, wire
from twisted_mail.logins.portal import IMailAccount, LoginAttempt, peerAddress
from twisted_mail.doors.pop3.mailbox import (
    MailboxSnapshot,
    shownArgument,
    messageReply,
    parseMessageNumber,
    topOfMessage,
)
from twisted_mail.logins.throttle import tooManyFailures
from twisted_mail.doors.seen import SeenMarks
from twisted_mail.doors.connections import (
    Closing,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    HeldCommands,
    SessionFactory,
    Streamer,
    checkTLSOptions,
    describePeer,
    startConnection,
    tlsFromOptions,
)

log = Logger()

#: The one answer to every failed login (RFC 3206 C{[AUTH]}).
LOGIN_FAILED = "[AUTH] invalid user name or password"


#: A RETR or TOP of the message after the last one read also reads the
#: messages after it, in one store job (fetchMessages): at most this many,
#: or this many bytes (and at least the one asked).
READ_AHEAD_COUNT = 32
READ_AHEAD_BYTES = 128 * 1024

_AUTHORIZATION = "AUTHORIZATION"
_TRANSACTION = "TRANSACTION"
_UPDATE = "UPDATE"

# The commands of each state, with their (fewest, most) arguments.
_COMMANDS = {
    _AUTHORIZATION: {
        b"CAPA": (0, 0),
        b"USER": (1, 1),
        b"PASS": (0, None),  # the rest of the line
        b"STLS": (0, 0),
        b"QUIT": (0, 0),
        # No NOOP: RFC 1939 allows it only once logged in (Dovecot too).
    },
    _TRANSACTION: {
        b"CAPA": (0, 0),
        b"STAT": (0, 0),
        b"LIST": (0, 1),
        b"UIDL": (0, 1),
        b"RETR": (1, 1),
        b"TOP": (2, 2),
        b"DELE": (1, 1),
        b"RSET": (0, 0),
        b"NOOP": (0, 0),
        b"QUIT": (0, 0),
    },
}

_AFTER_LOGIN = frozenset(_COMMANDS[_TRANSACTION]) - frozenset(_COMMANDS[_AUTHORIZATION])
_BEFORE_LOGIN = frozenset([b"USER", b"PASS", b"STLS", b"APOP", b"AUTH"])
_NOT_OFFERED = frozenset([b"APOP", b"AUTH"])


class POP3Server(Closing, HeldCommands, twistedPOP3.POP3):
    """
    One POP3 connection.

    @ivar state: C{AUTHORIZATION}, C{TRANSACTION} (logged in) or C{UPDATE}
        (after C{QUIT}).
    @ivar mailbox: the L{MailboxSnapshot} once logged in.
    @ivar tls: whether the connection is protected by TLS.
    """

    MAX_LENGTH = wire.MAX_LINE_LENGTH

    state = _AUTHORIZATION
    mailbox = None
    tls = False
    _user = None
    _failures = 0
    _lost = False
    _processing = False
    _dropInput = False
    _sender = None
    _quitting = None
    stoppingNotice = wire.formatError("[SYS/TEMP] server stopping, closing")
    _peer = "?"

    def __init__(self):
        self._input = bytearray()
        # Texts read ahead by id, and the number of the message last read.
        self._ahead = {}
        self._lastRead = 0

    # -- connection events

    def connectionMade(self):
        self.tls = startConnection(self.transport)
        self._peer = describePeer(self.transport)
        self._seen = SeenMarks(self.factory.reactor)
        self.factory.protocols.add(self)
        self.setTimeout(self.factory.idleTimeout)
        log.info("POP3 connection from {peer}", peer=self._peer)
        self._ok("simplemail POP3 server ready")

    def connectionLost(self, reason):
        self._lost = True
        self.connectionClosed()
        self.factory.connectionEnded()
        self.factory.protocols.discard(self)
        self.setTimeout(None)
        self._sender = None
        if self.state == _TRANSACTION:
            marked = len(self.mailbox.markedIds())
            log.info(
                "POP3 connection from {peer} ({user}) lost before QUIT: "
                "{marked} marked message(s) kept",
                peer=self._peer,
                user=self.mailbox.session.userid,
                marked=marked,
            )
        else:
            log.info("POP3 connection from {peer} closed", peer=self._peer)
        self.endSession()

    def endSession(self):
        """
        Close the mailbox session without deleting anything (the connection
        is gone, or the server is stopping); a C{QUIT} under way finishes.

        @return: a L{Deferred} firing when the session is closed.
        """
        if self._quitting is not None:
            d = defer.Deferred()
            self._quitting.addBoth(lambda result: (d.callback(None), result)[1])
            return d
        mailbox, self.mailbox = self.mailbox, None
        if mailbox is None:
            return defer.succeed(None)
        if self.state == _TRANSACTION:
            self.state = _AUTHORIZATION
        return self._seen.flush().addCallback(lambda _: mailbox.session.close())

    def timeoutConnection(self):
        log.info("closing idle POP3 connection from {peer}", peer=self._peer)
        if self._sender is not None:
            # The client stopped reading a reply: nothing more can reach it.
            self.transport.abortConnection()
            return
        self._err("idle for too long, closing")
        self.closeConnection()

    # -- replies

    def _ok(self, text=""):
        self.transport.write(wire.formatOK(text))

    def _err(self, text):
        self.transport.write(wire.formatError(text))

    def _send(self, pieces):
        """
        Write a multi-line reply as the transport takes it, the idle timer
        running (a client that stops reading is closed like an idle one).

        @return: a L{Deferred} firing when it is written.
        """
        if self._lost:
            return defer.Deferred()
        self.setTimeout(self.factory.idleTimeout)
        self._sender = sender = Streamer(pieces, self.resetTimeout)

        def sent(_):
            self._sender = None

        return sender.start(self.transport).addCallback(sent)

    def _closing(self):
        # hangingUp: under TLS the transport's disconnecting stays False
        # while close_notify is under way; once the server said it is
        # closing, nothing the client sends is acted on.
        return self._lost or self.hangingUp or self.transport.disconnecting

    # -- framing

    def dataReceived(self, data):
        """
        Split the input into lines (ended by LF, a CR before it removed) and
        run them one at a time, holding the rest while a command's reply is
        outstanding (pipelining).
        """
        if self._closing():
            return
        self._input += data
        if self._busy:
            if len(self._input) > self.MAX_LENGTH + 2 and not self._transportPaused:
                self._transportPaused = True
                self.transport.pauseProducing()
            return
        self._processInput()

    def _processInput(self):
        if self._processing:
            return
        self._processing = True
        buf = self._input
        start = 0
        try:
            while not self._busy and not self._closing():
                end = buf.find(b"\n", start)
                if end == -1:
                    if len(buf) - start > self.MAX_LENGTH + 1:
                        self.lineLengthExceeded(buf[start:])
                    break
                line = bytes(buf[start:end])
                start = end + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > self.MAX_LENGTH:
                    self.lineLengthExceeded(line)
                    break
                self.resetTimeout()
                self._runLine(line)
                if self._dropInput:
                    # After STLS: what came with it was sent in clear.
                    self._dropInput = False
                    if len(buf) > start:
                        log.warn(
                            "POP3 client {peer} sent {n} bytes in clear after STLS; "
                            "ignored",
                            peer=self._peer,
                            n=len(buf) - start,
                        )
                    start = len(buf)
        finally:
            self._processing = False
            if self._closing():
                del buf[:]
            else:
                del buf[:start]

    def lineLengthExceeded(self, line):
        log.warn(
            "POP3 line of more than {limit} bytes from {peer}; closing",
            limit=self.MAX_LENGTH,
            peer=self._peer,
        )
        self._err("line too long")
        self.closeConnection()

    def lineReceived(self, line):
        # LineOnlyReceiver's entry point, for callers that hand lines in.
        self._runLine(line)

    # -- running commands

    def _runLine(self, line):
        """
        Run one command line.  A command that waits (for the store, the
        password check or a slow reader) returns a L{Deferred}; until it
        fires no other line is run and the idle timer waits too.
        """
        try:
            d = self._dispatch(line)
        except errors.TemporaryFailure as e:
            self._err("[SYS/TEMP] {}".format(e))
            return
        except errors.MailError as e:
            self._err(e)
            return
        except Exception:
            log.failure("unexpected error serving POP3 client {peer}", peer=self._peer)
            self._err("[SYS/TEMP] internal error")
            return
        if d is None:
            return
        d.addErrback(self._unexpected)
        finished = []
        d.addBoth(finished.append)
        if finished:
            return
        self._busy = True
        if self._sender is None:
            self.setTimeout(None)
        d.addCallback(lambda _: self._resume())

    def _unexpected(self, failure):
        if failure.check(errors.TemporaryFailure):
            text = "[SYS/TEMP] {}".format(failure.value)
        elif failure.check(errors.MailError):
            text = str(failure.value)
        else:
            log.failure(
                "unexpected error serving POP3 client {peer}", failure, peer=self._peer
            )
            text = "[SYS/TEMP] internal error"
        if not self._closing() and self._sender is None:
            self._err(text)

    def _processHeld(self):
        self._processInput()

    def _dispatch(self, line):
        verb, _, rest = line.partition(b" ")
        verb = verb.upper()
        commands = _COMMANDS.get(self.state, {})
        if verb not in commands:
            return self._refuse(verb)
        fewest, most = commands[verb]
        if most is None:
            return getattr(self, "do_" + verb.decode("ascii"))(rest)
        args = rest.split()
        if not fewest <= len(args) <= most:
            raise errors.ProtocolError(
                "{} takes {} argument{}".format(
                    verb.decode("ascii"),
                    fewest if fewest == most else "{} to {}".format(fewest, most),
                    "" if most == 1 else "s",
                )
            )
        return getattr(self, "do_" + verb.decode("ascii"))(*args)

    def _refuse(self, verb):
        if verb in _NOT_OFFERED:
            raise errors.ProtocolError(
                "{} is not offered: use USER and PASS".format(verb.decode("ascii"))
            )
        if self.state == _AUTHORIZATION and verb in _AFTER_LOGIN:
            raise errors.ProtocolError("log in first (USER and PASS)")
        if self.state == _TRANSACTION and verb in _BEFORE_LOGIN:
            raise errors.ProtocolError("already logged in")
        raise errors.ProtocolError("unknown command")

    # -- any state

    def listCapabilities(self):
        capabilities = [
            b"TOP",
            b"UIDL",
            b"USER",
            b"RESP-CODES",
            b"AUTH-RESP-CODE",
            b"PIPELINING",
            b"EXPIRE NEVER",
            b"IMPLEMENTATION simplemail",
        ]
        if self._canStartTLS():
            capabilities.append(b"STLS")
        return capabilities

    def do_CAPA(self):
        return self._send(
            [wire.formatOK("capability list follows")]
            + [c + b"\r\n" for c in self.listCapabilities()]
            + [b".\r\n"]
        )

    def do_NOOP(self):
        self._ok()

    def do_QUIT(self):
        if self.state != _TRANSACTION:
            self._ok("bye")
            self.closeConnection()
            return None
        self.state = _UPDATE
        mailbox = self.mailbox
        session = mailbox.session
        marked = mailbox.markedIds()
        d = session.deleteMessages(marked) if marked else defer.succeed([])

        def deleted(ids):
            if ids:
                log.info(
                    "POP3 QUIT: deleted {n} message(s) of {user} ({peer})",
                    n=len(ids),
                    user=session.userid,
                    peer=self._peer,
                )
            d = self._seen.flush().addCallback(lambda _: session.close())
            return d.addCallback(lambda _: ids)

        def failed(failure):
            if not failure.check(errors.TemporaryFailure):
                log.failure(
                    "POP3 QUIT: could not delete messages of {user}",
                    failure,
                    user=session.userid,
                )
            else:
                log.warn(
                    "POP3 QUIT: could not delete messages of {user}: {why}",
                    user=session.userid,
                    why=failure.value,
                )
            self._seen.flush().addCallback(lambda _: session.close())
            return None

        def answer(ids):
            self.mailbox = None
            self._quitting = None
            if not self._closing():
                if ids is None:
                    self._err("[SYS/TEMP] could not delete the messages; none deleted")
                else:
                    self._ok("{} message{} deleted, bye".format(len(ids), _s(len(ids))))
                self.closeConnection()

        d.addCallbacks(deleted, failed)
        d.addCallback(answer)
        self._quitting = d
        return d

    # -- authorization

    def _canStartTLS(self):
        return (
            self.state == _AUTHORIZATION
            and not self.tls
            and self.factory.tlsContextFactory is not None
        )

    def do_STLS(self):
        if self.tls:
            raise errors.ProtocolError("TLS already active")
        if not self._canStartTLS():
            raise errors.ProtocolError("STLS not available")
        self._ok("begin TLS negotiation")
        self.transport.startTLS(self.factory.tlsContextFactory)
        self.tls = True
        # RFC 2595: forget what the client said before.
        self._user = None
        self._dropInput = True
        log.info("POP3 TLS started with {peer}", peer=self._peer)

    def do_USER(self, user):
        self._user = user
        self._ok("send PASS")

    def do_PASS(self, password):
        user, self._user = self._user, None
        if user is None:
            raise errors.ProtocolError("send USER first")
        portal = self.factory.portal
        store = self.factory.store
        try:
            userid = wire.normalizeUserId(user.decode("utf-8"))
        except (UnicodeDecodeError, errors.InvalidUserId):
            userid = None
        if portal is None:
            if userid is None:
                d = defer.fail(errors.InvalidUserId())
            else:
                d = store.openMailbox(userid)
        else:
            credentials = LoginAttempt(user, password, peerAddress(self.transport))
            d = portal.login(credentials, None, IMailAccount)
            d.addCallback(lambda result: store.openMailbox(result[1].userid))
        d.addCallback(self._opened)
        d.addCallbacks(self._loggedIn, self._loginFailed, errbackArgs=(user,))
        return d

    def _opened(self, session):
        if self._lost:
            session.close()
            return None

        def listed(listing):
            return MailboxSnapshot(session, listing.messages)

        def failed(failure):
            session.close()
            return failure

        return session.listMessages().addCallbacks(listed, failed)

    def _loggedIn(self, mailbox):
        if mailbox is None:
            return
        if self._lost:
            mailbox.session.close()
            return
        self.mailbox = mailbox
        self.state = _TRANSACTION
        count, octets = mailbox.stat()
        log.info(
            "POP3 login as {user} from {peer}: {count} message(s)",
            user=mailbox.session.userid,
            peer=self._peer,
            count=count,
        )
        self._ok(
            "{} has {} message{} ({} octets)".format(
                mailbox.session.userid, count, _s(count), octets
            )
        )

    def _loginFailed(self, failure, user):
        if not failure.check(LoginFailed, errors.NoSuchUser, errors.InvalidUserId):
            return failure
        self._failures += 1
        if self.factory.portal is None:
            # With passwords the login throttle logs each refusal, once.
            log.info(
                "POP3 login failed for {user} from {peer}: {why}",
                user=shownArgument(user, 64),
                peer=self._peer,
                why=failure.getErrorMessage(),
            )
        if self._closing():
            return
        if tooManyFailures(self._failures):
            self._err(LOGIN_FAILED + "; closing")
            self.closeConnection()
        else:
            self._err(LOGIN_FAILED)

    # -- transaction

    def do_STAT(self):
        count, octets = self.mailbox.stat()
        self._ok("{} {}".format(count, octets))

    def do_LIST(self, number=None):
        if number is not None:
            n = parseMessageNumber(number)
            self._ok("{} {}".format(n, self.mailbox.summary(n).size))
            return None
        count, octets = self.mailbox.stat()
        listed = self.mailbox.listed()
        return self._send(
            _chain(
                [wire.formatOK("{} message{} ({} octets)".format(count, _s(count), octets))],
                (b"%d %d\r\n" % (n, s.size) for n, s in listed),
                [b".\r\n"],
            )
        )

    def do_UIDL(self, number=None):
        if number is not None:
            n = parseMessageNumber(number)
            self._ok("{} {}".format(n, self.mailbox.summary(n).id))
            return None
        # twisted's formatter skips the messages given as None (marked).
        present = [
            None if self.mailbox.isMarked(i) else True for i in range(len(self.mailbox))
        ]
        return self._send(
            _chain(
                [wire.formatOK("unique-id listing follows")],
                twistedPOP3.formatUIDListLines(present, self.mailbox.getUidl),
                [b".\r\n"],
            )
        )

    def _fetch(self, number):
        n = parseMessageNumber(number)
        summary = self.mailbox.summary(n)
        sequential, self._lastRead = n == self._lastRead + 1, n
        text = self._ahead.pop(summary.id, None)
        if text is not None:
            d = defer.succeed(text)
        else:
            d = self._readAhead(n, summary, sequential)

        def gone(failure):
            failure.trap(errors.NoSuchMessage)
            raise errors.ProtocolError("no such message: deleted by another session")

        return summary, d.addErrback(gone)

    def _readAhead(self, n, summary, sequential):
        """
        Message C{n}'s text and, when the client reads in order (as mail
        programs do), the next messages' (kept in C{_ahead} for their RETR
        or TOP), in one store job.
        """
        mailbox = self.mailbox
        ids = [summary.id]
        size = summary.size
        later = n + 1
        while (sequential and later <= len(mailbox) and len(ids) < READ_AHEAD_COUNT
               and size < READ_AHEAD_BYTES):
            if not mailbox.isMarked(later - 1):
                ahead = mailbox.summary(later)
                ids.append(ahead.id)
                size += ahead.size
            later += 1

        def arrived(texts):
            self._ahead = {msgid: text for msgid, text in zip(ids[1:], texts[1:])
                           if text is not None}
            if texts[0] is None:
                raise errors.NoSuchMessage()
            return texts[0]

        return mailbox.session.fetchMessages(ids).addCallback(arrived)

    def do_RETR(self, number):
        summary, d = self._fetch(number)
        head = wire.formatOK("{} octets".format(summary.size))

        def retrieved(text):
            # RETR reads the message: \Seen (MAILBOX.md), with this
            # session's other reads (SeenMarks); TOP does not.
            self._seen.add(self.mailbox.session, summary.id)
            return self._send(messageReply(head, text))

        return d.addCallback(retrieved)

    def do_TOP(self, number, lines):
        if not (lines.isdigit() and len(lines) <= 9):
            raise errors.ProtocolError(
                "bad line count: {}".format(shownArgument(lines))
            )
        summary, d = self._fetch(number)
        head = wire.formatOK("top of message follows")
        return d.addCallback(
            lambda text: self._send(messageReply(head, topOfMessage(text, int(lines))))
        )

    def do_DELE(self, number):
        n = parseMessageNumber(number)
        self.mailbox.deleteMessage(n - 1)
        self._ok("message {} deleted".format(n))

    def do_RSET(self):
        self.mailbox.undeleteMessages()
        count, octets = self.mailbox.stat()
        self._ok("maildrop has {} message{} ({} octets)".format(count, _s(count), octets))

    # Offered by twisted's POP3, not here.
    def do_APOP(self, *args):
        raise errors.ProtocolError("APOP is not offered: use USER and PASS")

    do_AUTH = do_APOP


def _s(n):
    return "" if n == 1 else "s"


def _chain(*iterables):
    for iterable in iterables:
        yield from iterable


class POP3Factory(SessionFactory):
    """
    Builds L{POP3Server}s over one store.

    @ivar portal: the L{twisted.cred.portal.Portal} of C{--passwords}, or
        L{None}: then any password opens an existing user's mailbox.
    @ivar tlsContextFactory: offers C{STLS} when not L{None}.
    @ivar connections: the POP3 connections now open (C{--max-connections}
        counts each listener kind on its own, as for SMTP).
    """

    protocol = POP3Server
    noisy = False
    door = "a POP3"

    def refusal(self):
        return wire.formatError("[SYS/TEMP] too many connections, try later")

    def __init__(
        self,
        store,
        portal=None,
        tlsContextFactory=None,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
        maxConnections=DEFAULT_MAX_CONNECTIONS,
        reactor=None,
    ):
        SessionFactory.__init__(self, store, idleTimeout, maxConnections, reactor)
        self.portal = portal
        self.tlsContextFactory = tlsContextFactory


# -- options of twistd simplemail


def checkPOP3Options(endpoints, certificatePath=None, keyPath=None):
    """
    Check the POP3 options of C{twistd simplemail} as a whole.

    @param endpoints: the C{--pop3} endpoint descriptions.
    @raise ValueError: with a one-line message for the operator.
    """
    checkTLSOptions("pop3", endpoints, certificatePath, keyPath)


def makePOP3FactoryFromOptions(options, store, portal, reactor):
    """
    The POP3 factory for the parsed options of C{twistd simplemail}.

    @raise ValueError: if the TLS files cannot be used.
    """
    return POP3Factory(
        store,
        portal=portal,
        tlsContextFactory=tlsFromOptions(options, "pop3"),
        idleTimeout=options["idle-timeout"],
        maxConnections=options["max-connections"],
        reactor=reactor,
    )
