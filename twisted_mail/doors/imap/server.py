"""
The IMAP protocol: framing (lines and literals, RFC 3501 4.3 and RFC 7888
LITERAL+), the session's states, dispatch, login (LOGIN, AUTHENTICATE
PLAIN, STARTTLS) and the commands of any state.  The commands of the
authenticated and selected states live in L{folders} and L{selected}.

Built on L{twisted.internet.protocol.Protocol} and
L{twisted.protocols.policies.TimeoutMixin}, not on
L{twisted.mail.imap4.IMAP4Server}: see docs/imap.rst for why.
"""

import base64
import ipaddress

from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.address import UNIXAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from twisted_mail import errors, wire
from twisted_mail.doors.connections import HeldCommands, Streamer, describePeer, startConnection
from twisted_mail.doors.imap import parser
from twisted_mail.doors.imap.folders import FolderCommands
from twisted_mail.doors.imap.parser import BadCommand
from twisted_mail.doors.imap.selected import SelectedCommands
from twisted_mail.logins.portal import IMailAccount, LoginAttempt, peerAddress
from twisted_mail.logins.throttle import tooManyFailures

log = Logger()


#: A command line longer than this is answered BAD (the session goes on),
#: up to L{parser.MAX_LINE}, past which the session ends.
NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = (
    "not authenticated", "authenticated", "selected", "logout")

_ANY = frozenset(["CAPABILITY", "NOOP", "LOGOUT", "ID"])
_NOT_AUTHENTICATED = frozenset(["STARTTLS", "AUTHENTICATE", "LOGIN"])
_AUTHENTICATED = frozenset([
    "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
    "LIST", "LSUB", "STATUS", "APPEND", "NAMESPACE", "ENABLE", "IDLE"])
_SELECTED = frozenset([
    "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY",
    "MOVE", "UID"])
#: Commands during whose answer no EXPUNGE may be sent (RFC 3501 7.4.1).
_NO_EXPUNGE = frozenset(["FETCH", "STORE", "SEARCH"])

_LATER = object()


def isLoopback(transport):
    """
    Whether the peer of a connection is this machine (loopback, or a UNIX
    socket).
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return False
    if isinstance(peer, UNIXAddress):
        return True
    try:
        address = ipaddress.ip_address(getattr(peer, "host", None))
    except (ValueError, TypeError):
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class IMAPServer(HeldCommands, FolderCommands, SelectedCommands, Protocol, TimeoutMixin):
    """
    One IMAP connection.

    @ivar state: one of the four states of RFC 3501 3.
    @ivar userid: the logged-in user.
    @ivar view: the L{SelectedMailbox}, in the selected state.
    """

    # Dovecot says "* BYE Server shutting down." the same way.
    stoppingNotice = b"* BYE server stopping\r\n"

    state = NOT_AUTHENTICATED
    userid = None
    view = None
    tls = False
    _lost = False
    _processing = False
    _dropInput = False
    _idling = None
    _authenticating = None
    _unwatch = None
    _failures = 0
    _streamer = None
    _peer = "?"

    def __init__(self):
        self._buffer = bytearray()
        self._resetCommand()

    def _resetCommand(self):
        self._chunks = []
        self._literals = []
        self._literalLeft = 0
        self._literal = None
        self._commandSize = 0
        self._refusal = None  # the answer of a command whose literal was refused

    # -- connection events

    def connectionMade(self):
        self.tls = startConnection(self.transport)
        self._peer = describePeer(self.transport)
        self.factory.protocols.add(self)
        self.setTimeout(self.factory.idleTimeout)
        log.info("IMAP connection from {peer}", peer=self._peer)
        self._write(b"* OK [CAPABILITY " + self.capabilities() + b"] simplemail IMAP4rev1 ready\r\n")

    def connectionLost(self, reason):
        self._lost = True
        self.factory.connectionEnded()
        self.factory.protocols.discard(self)
        self.setTimeout(None)
        self._streamer = None
        log.info("IMAP connection from {peer} closed", peer=self._peer)
        self.endSession()

    def endSession(self):
        """
        Stop watching the store and close the selected folder.

        @return: a L{Deferred} firing when done.
        """
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        return self._deselect()

    def timeoutConnection(self):
        log.info("closing idle IMAP connection from {peer}", peer=self._peer)
        if self._streamer is not None:
            self.transport.abortConnection()
            return
        self._write(b"* BYE idle for too long\r\n")
        self.transport.loseConnection()

    # -- writing

    def _write(self, data):
        if not self._lost:
            self.transport.write(data)

    def _closing(self):
        return self._lost or self.transport.disconnecting

    def stream(self, pieces):
        """
        Write a long reply as the client reads it.

        @return: a L{Deferred} firing when it is written.
        """
        if self._lost:
            return defer.Deferred()
        self._streamer = streamer = Streamer(pieces, self.resetTimeout)

        def written(result):
            self._streamer = None
            return result

        return streamer.start(self.transport).addBoth(written)

    # -- framing

    def dataReceived(self, data):
        if self._closing():
            return
        self._buffer += data
        if self._busy:
            if len(self._buffer) > parser.MAX_LINE and not self._transportPaused:
                self._transportPaused = True
                self.transport.pauseProducing()
            return
        self._process()

    def _process(self):
        if self._processing:
            return
        self._processing = True
        try:
            while not self._busy and not self._closing():
                if not self._step():
                    break
        finally:
            self._processing = False

    def _step(self):
        """
        Consume what the buffer holds of one line or literal.

        @return: whether to go on.
        """
        buf = self._buffer
        if self._literalLeft:
            take = min(self._literalLeft, len(buf))
            if take == 0:
                return False
            if self._literal is not None:
                self._literal += buf[:take]
            del buf[:take]
            self._literalLeft -= take
            if self._literalLeft:
                return False
            self._literals.append(bytes(self._literal) if self._literal is not None else b"")
            self._literal = None
            return True
        end = buf.find(b"\n")
        if end == -1:
            if len(buf) > parser.MAX_LINE:
                self._lineTooLong()
            return False
        line = bytes(buf[:end])
        del buf[:end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > parser.MAX_LINE:
            self._lineTooLong()
            return False
        self.resetTimeout()
        if self._idling is not None:
            self._idleLine(line)
            return True
        if self._authenticating is not None:
            self._authLine(line)
            return True
        self._lineReceived(line)
        if self._dropInput:
            self._dropInput = False
            del buf[:]
        return True

    def _lineTooLong(self):
        log.warn("IMAP line too long from {peer}; closing", peer=self._peer)
        self._write(b"* BYE line too long\r\n")
        self.transport.loseConnection()

    def _lineReceived(self, line):
        self._chunks.append(line)
        self._commandSize += len(line)
        if self._commandSize > parser.MAX_LINE:
            self._resetCommand()
            self._lineTooLong()
            return
        announced = parser.literalAnnounced(line)
        if announced is None:
            chunks, literals, refusal = self._chunks, self._literals, self._refusal
            self._resetCommand()
            if refusal is not None:
                self._write(refusal)
            elif chunks != [b""]:
                self._runCommand(chunks, literals)
            return
        size, synchronising = announced
        tag, _, rest = self._chunks[0].partition(b" ")
        verb = rest.split(b" ", 1)[0].upper()
        appending = verb == b"APPEND"
        limit = self.factory.maxMessageSize if appending else parser.MAX_LITERAL
        if not appending:
            self._commandSize += size
        if size > limit or self._commandSize > parser.MAX_LINE:
            if appending:
                refusal = b"NO [TOOBIG] the message is larger than %d octets" % limit
            else:
                refusal = b"BAD literal too long"
            refusal = _tagged(tag, refusal)
            if synchronising:
                self._resetCommand()
                self._write(refusal)
                return
            # LITERAL+: the octets come anyway; read and drop them.
            self._refusal = refusal
        elif synchronising and self._refusal is None:
            self._write(b"+ ready for literal data\r\n")
        self._literalLeft = size
        self._literal = bytearray() if self._refusal is None else None
        if size == 0:
            self._literals.append(b"")

    # -- running commands

    def _runCommand(self, chunks, literals):
        try:
            tag, name, args = parser.tokenize(chunks, literals)
        except BadCommand as e:
            tag = e.args[1] if len(e.args) > 1 else None
            self._write(_tagged(tag, b"BAD " + e.args[0].encode("ascii", "replace")))
            return
        try:
            result = self._dispatch(tag, name, args)
        except Exception as e:
            self._answer(tag, name, args, self._failureAnswer(e))
            return
        if result is _LATER:
            return
        if not isinstance(result, defer.Deferred):
            self._answer(tag, name, args, result)
            return
        self._whenDone(result, lambda outcome: self._answerResult(tag, name, args, outcome))

    def _whenDone(self, d, answer):
        """
        Answer a command when its L{Deferred} fires: at once if it has, or
        else later, holding the commands that follow until then.
        """
        box = []
        d.addBoth(box.append)
        if box:
            answer(box[0])
            return
        self._busy = True
        if self._streamer is None:
            self.setTimeout(None)

        def done(_):
            answer(box[0])
            self._resume()

        d.addCallback(done)

    def _answerResult(self, tag, name, args, outcome):
        if hasattr(outcome, "trap"):
            outcome = self._failureAnswer(outcome.value, outcome)
        if outcome is not _LATER:
            self._answer(tag, name, args, outcome)

    def _failureAnswer(self, e, failure=None):
        if isinstance(e, BadCommand):
            return ("BAD", e.args[0])
        if isinstance(e, errors.TemporaryFailure):
            return ("NO", "[UNAVAILABLE] {}".format(e))
        if isinstance(e, (errors.NoSuchFolder,)):
            return ("NO", "[NONEXISTENT] {}".format(e))
        if isinstance(e, errors.FolderExists):
            return ("NO", "[ALREADYEXISTS] {}".format(e))
        if isinstance(e, (errors.InvalidFolderName, errors.FolderNotChangeable)):
            return ("NO", "[CANNOT] {}".format(e))
        if isinstance(e, errors.MessageTooLarge):
            return ("NO", "[TOOBIG] {}".format(e))
        if isinstance(e, errors.TooManyKeywords):
            return ("NO", "[LIMIT] {}".format(e))
        if isinstance(e, errors.MailError):
            return ("NO", str(e))
        log.failure("unexpected error serving IMAP client {peer}", failure, peer=self._peer)
        return ("NO", "[SERVERBUG] internal error")

    def _answer(self, tag, name, args, outcome):
        if self._closing():
            return
        status, text = outcome
        if self.view is not None:
            allowExpunge = name not in _NO_EXPUNGE
            for line in self.view.flush(allowExpunge):
                self._write(line)
        self._write(_tagged(tag, status.encode("ascii") + b" " + text.encode("utf-8", "replace")))

    def _processHeld(self):
        self._process()

    def _dispatch(self, tag, name, args):
        if name in _ANY:
            pass
        elif name in _NOT_AUTHENTICATED:
            if self.state != NOT_AUTHENTICATED:
                raise BadCommand("already logged in")
        elif name in _AUTHENTICATED:
            if self.state == NOT_AUTHENTICATED:
                raise BadCommand("log in first")
        elif name in _SELECTED:
            if self.state == NOT_AUTHENTICATED:
                raise BadCommand("log in first")
            if self.state != SELECTED:
                raise BadCommand("select a folder first")
        else:
            raise BadCommand("unknown command")
        return getattr(self, "do_" + name)(tag, args)

    # -- any state

    def capabilities(self):
        caps = [b"IMAP4rev1", b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE",
                b"NAMESPACE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"UNSELECT",
                b"CHILDREN"]
        if self.state == NOT_AUTHENTICATED:
            if self._canStartTLS():
                caps.append(b"STARTTLS")
            if self._loginDisabled():
                caps.append(b"LOGINDISABLED")
            else:
                caps.append(b"AUTH=PLAIN")
        return b" ".join(caps)

    def do_CAPABILITY(self, tag, args):
        parser.expectCount(args, 0)
        self._write(b"* CAPABILITY " + self.capabilities() + b"\r\n")
        return ("OK", "CAPABILITY completed")

    def do_NOOP(self, tag, args):
        parser.expectCount(args, 0)
        return ("OK", "NOOP completed")

    def do_LOGOUT(self, tag, args):
        parser.expectCount(args, 0)
        self._write(b"* BYE simplemail logging out\r\n")
        self._write(_tagged(tag, b"OK LOGOUT completed"))
        self.state = LOGOUT
        self.transport.loseConnection()
        return _LATER

    def do_ID(self, tag, args):
        parser.expectCount(args, 1)
        self._write(b'* ID ("name" "simplemail")\r\n')
        return ("OK", "ID completed")

    # -- not authenticated

    def _canStartTLS(self):
        return (self.state == NOT_AUTHENTICATED and not self.tls
                and self.factory.tlsContextFactory is not None)

    def _loginDisabled(self):
        """
        LOGINDISABLED: passwords are checked and would cross the network in
        clear (Dovecot's default: allowed on loopback).
        """
        return (self.factory.portal is not None and not self.tls
                and not isLoopback(self.transport))

    def do_STARTTLS(self, tag, args):
        parser.expectCount(args, 0)
        if self.tls:
            raise BadCommand("TLS already active")
        if not self._canStartTLS():
            raise BadCommand("STARTTLS not available")
        self._write(_tagged(tag, b"OK begin TLS negotiation now"))
        self.transport.startTLS(self.factory.tlsContextFactory)
        self.tls = True
        self._dropInput = True
        log.info("IMAP TLS started with {peer}", peer=self._peer)
        return _LATER

    def do_LOGIN(self, tag, args):
        parser.expectCount(args, 2)
        if self._loginDisabled():
            return ("NO", "[PRIVACYREQUIRED] use STARTTLS first")
        user, password = parser.astring(args[0]), parser.astring(args[1])
        return self._login(user, password)

    def do_AUTHENTICATE(self, tag, args):
        parser.expectCount(args, 1, 2)
        if parser.atom(args[0]) != "PLAIN":
            return ("NO", "[CANNOT] only AUTHENTICATE PLAIN is offered")
        if self._loginDisabled():
            return ("NO", "[PRIVACYREQUIRED] use STARTTLS first")
        if len(args) == 2:
            return self._plain(parser.astring(args[1]))
        self._authenticating = tag
        self._write(b"+ \r\n")
        return _LATER

    def _authLine(self, line):
        tag, self._authenticating = self._authenticating, None
        if line == b"*":
            self._write(_tagged(tag, b"BAD authentication cancelled"))
            return
        self._runContinuation(tag, "AUTHENTICATE", lambda: self._plain(line))

    def _runContinuation(self, tag, name, call):
        """
        Finish a command that waited for a continuation line.
        """
        try:
            result = call()
        except Exception as e:
            result = self._failureAnswer(e)
        if not isinstance(result, defer.Deferred):
            result = defer.succeed(result)
        self._whenDone(result, lambda outcome: self._answerResult(tag, name, [], outcome))

    def _plain(self, response):
        try:
            decoded = base64.b64decode(response, validate=True) if response != b"=" else b""
            _, user, password = decoded.split(b"\0")
        except ValueError:
            raise BadCommand("bad AUTHENTICATE PLAIN response")
        return self._login(user, password)

    def _login(self, user, password):
        portal = self.factory.portal
        store = self.factory.store
        try:
            userid = wire.normalizeUserId(user.decode("utf-8"))
        except (UnicodeDecodeError, errors.InvalidUserId):
            userid = None
        if portal is None:
            d = defer.fail(errors.InvalidUserId()) if userid is None else store.hasUser(userid)
        else:
            credentials = LoginAttempt(user, password, peerAddress(self.transport))
            d = portal.login(credentials, None, IMailAccount)
            d.addCallback(lambda result: store.hasUser(result[1].userid))
        return d.addCallbacks(self._loggedIn, self._loginFailed)

    def _loggedIn(self, userid):
        if self._lost:
            return _LATER
        self.userid = userid
        self.state = AUTHENTICATED
        log.info("IMAP login as {user} from {peer}", user=userid, peer=self._peer)
        self._unwatch = self.factory.store.watch(userid, self._eventReceived)
        return ("OK", "[CAPABILITY " + self.capabilities().decode("ascii") + "] logged in")

    def _loginFailed(self, failure):
        failure.trap(LoginFailed, UnauthorizedLogin, errors.NoSuchUser, errors.InvalidUserId)
        self._failures += 1
        if self.factory.portal is None:
            log.info("IMAP login failed from {peer}", peer=self._peer)
        if tooManyFailures(self._failures) and not self._closing():
            self._write(b"* BYE too many failed logins\r\n")
            self.transport.loseConnection()
        return ("NO", "[AUTHENTICATIONFAILED] invalid user name or password")

    # -- changes made elsewhere, and IDLE

    def _eventReceived(self, event):
        view = self.view
        if view is None or self._lost:
            self._noteSelecting(event)
            return
        view.eventReceived(event)
        if self._idling is not None:
            for line in view.flush(True):
                self._write(line)

    def do_IDLE(self, tag, args):
        parser.expectCount(args, 0)
        self._idling = tag
        self._write(b"+ idling\r\n")
        if self.view is not None:
            for line in self.view.flush(True):
                self._write(line)
        # RFC 3501 5.4: an IDLE client is kept at least 30 minutes.
        self.setTimeout(max(self.factory.idleTimeout, 30 * 60))
        return _LATER

    def _idleLine(self, line):
        tag, self._idling = self._idling, None
        self.setTimeout(self.factory.idleTimeout)
        if line.upper() != b"DONE":
            self._write(_tagged(tag, b"BAD expected DONE"))
            return
        self._answer(tag, "IDLE", [], ("OK", "IDLE terminated"))


def _tagged(tag, text):
    return (tag or b"*") + b" " + text + b"\r\n"
