"""
The simplemail server protocol and its factory.

The protocol frames lines, parses them with L{twisted_mail.wire} and
dispatches each command to a C{do_<VERB>} method.  Every storage operation is
delegated to an L{IMailStore}; while one is outstanding the protocol is
paused, so pipelined commands are answered one at a time, in order.
"""


from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin

from twisted_mail.logins import throttle
from twisted_mail import errors, wire
from twisted_mail.logins.portal import IMailAccount, LoginAttempt, peerAddress
from twisted_mail.logins.signup import createAccount
from twisted_mail.mail.message import buildSubmittedMessage
from twisted_mail.doors.linefolders import MESSAGE_ID, FolderCommands, listingLine
from twisted_mail.doors.linemessages import (
    STREAM_THRESHOLD,
    Body,
    DeliveredReply,
    MessageSender,
)
from twisted_mail.doors.linesearch import SearchCommands
from twisted_mail.doors.connections import (
    Closing,
    BatchedLog,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE,
    SessionFactory,
    describePeer,
    writeNow,
)

log = Logger()



class MailServerProtocol(Closing, FolderCommands, SearchCommands, LineReceiver, TimeoutMixin):
    """
    One client connection.

    @ivar session: the L{IMailboxSession} of the selected user, or L{None}.
    """

    delimiter = b"\n"
    # A line may end with CRLF: leave room for the CR.
    MAX_LENGTH = wire.MAX_LINE_LENGTH + 1

    session = None
    _pendingUser = None
    _loginFailures = 0
    _closeAfterReply = False
    _stopping = False
    _body = None
    _lost = False
    _peer = "?"

    # -- connection events

    def connectionMade(self):
        # Replies are small and often pipelined: don't let Nagle's algorithm
        # hold one back until the client's delayed ACK (40 ms).
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:
                pass
        self._peer = describePeer(self.transport)
        self.factory.protocols.add(self)
        self.setTimeout(self.factory.idleTimeout)
        log.info("connection from {peer}", peer=self._peer)
        self.transport.write(wire.formatOK(wire.GREETING))

    def connectionLost(self, reason):
        self._lost = True
        self.connectionClosed()
        self.factory.connectionEnded()
        self.factory.protocols.discard(self)
        self.setTimeout(None)
        self._body = None
        log.info("connection from {peer} closed", peer=self._peer)
        self._endSession()

    def timeoutConnection(self):
        if self._outstanding:
            # A command is still being answered: the idle time counts from
            # its reply (see _replied).
            self.setTimeout(self.factory.idleTimeout)
            return
        log.info("closing idle connection from {peer}", peer=self._peer)
        self.transport.write(wire.formatError("idle for too long, closing"))
        self.closeConnection()

    # -- holding input while a command is outstanding

    _transportPaused = False
    # A command is being answered: the connection is not idle.  (A flag
    # rather than stopping and restarting the idle timer: a delayed call
    # cancelled and another made per command were a few per cent of the
    # door's CPU.)
    _outstanding = False

    def _holdInput(self):
        """
        Read no further line until the outstanding reply is written.

        Only the protocol pauses at first: what is already buffered waits.
        The transport (and so TCP) is paused only if a client sends more
        than a line's worth meanwhile, which saves two epoll changes per
        command in the usual case.
        """
        self.paused = True
        if len(self._buffer) > self.MAX_LENGTH:
            self._pauseTransport()

    def _pauseTransport(self):
        if not self._transportPaused:
            self._transportPaused = True
            self.transport.pauseProducing()

    def _releaseInput(self):
        self.paused = False
        if self._transportPaused:
            self._transportPaused = False
            self.transport.resumeProducing()
        self.dataReceived(b"")

    # -- framing

    def dataReceived(self, data):
        """
        Split C{data} into lines and hand them to L{lineReceived}, stopping
        while the protocol is paused.

        Unlike L{LineReceiver.dataReceived}, this scans the buffer with an
        offset instead of copying the rest of it for every line, so a large
        message arriving in one burst costs time linear in its size.
        """
        if self._busyReceiving or self.paused:
            self._buffer += data
            if self.paused and len(self._buffer) > self.MAX_LENGTH:
                self._pauseTransport()
            return
        if not data and not self._buffer:
            return  # released after a reply with nothing waiting: the usual case
        self._busyReceiving = True
        # Take body lines in bulk only when a line may have been completed:
        # not at every byte of a long line trickling in.
        bulk = b"\n" in data or not data
        try:
            buf = self._buffer + data if self._buffer else data
            self._buffer = b""
            start = 0
            while not self.paused and not self.hangingUp and not self.transport.disconnecting:
                if self._body is not None and bulk:
                    taken = self._takeBodyLines(buf, start)
                    if taken is not None:
                        start = taken
                        continue
                end = buf.find(b"\n", start)
                if end == -1:
                    if len(buf) - start > self.MAX_LENGTH:
                        self._buffer = b""
                        return self.lineLengthExceeded(buf[start:])
                    break
                line = buf[start:end]
                start = end + 1
                if len(line) > self.MAX_LENGTH:
                    self._buffer = b""
                    return self.lineLengthExceeded(line)
                self.lineReceived(line)
            if self.hangingUp or self.transport.disconnecting:
                self._buffer = b""
            else:
                # Data that arrived while lineReceived ran went to _buffer.
                self._buffer = buf[start:] + self._buffer
        finally:
            self._busyReceiving = False

    def _takeBodyLines(self, buf, start):
        """
        Take the body lines at hand in bulk, up to the C{.} line if it is
        there, at most a line's length limit at a time: line endings and
        dot-stuffing undone with C{bytes.replace}, the same result as line
        by line for a fraction of the work.  Each byte is looked at once,
        so a big body costs time linear in its size, in slices short enough
        not to hold the reactor up.

        @return: where the input not taken starts, or L{None} to go on line
            by line (the C{.} line itself, a line not complete yet or too
            long, a body past the size limit).
        """
        body = self._body
        if not body.bulk or body.tooLarge or start >= len(buf):
            return None
        if buf.startswith(b".\r\n", start) or buf.startswith(b".\n", start):
            return None  # the end: the line path ends the body
        # Short enough that no line in it can be over-long.
        window = start + self.MAX_LENGTH - 1
        # The usual body has no line but the last starting with ".": one
        # scan finds that, and there is nothing to unstuff.
        stuffed = False
        dot = buf.find(b"\n.", start, window + 1)
        if dot == -1:
            ends = False
            end = buf.rfind(b"\n", start, window) + 1
            if not end:
                return None
        elif buf.startswith(b".\r\n", dot + 1) or buf.startswith(b".\n", dot + 1):
            ends = True
            end = dot + 1
        else:
            stuffed = True
            # The first line that is just "." ends the body.
            ends = [
                i
                for i in (buf.find(b"\n.\r\n", start, window + 3),
                          buf.find(b"\n.\n", start, window + 2))
                if i != -1
            ]
            if ends:
                end = min(ends) + 1
            else:
                end = buf.rfind(b"\n", start, window) + 1
                if not end:
                    return None
        text = buf[start:end]
        if b"\r\n" in text:
            text = text.replace(b"\r\n", b"\n")
        if text.startswith(b"."):
            text = text[1:]
        if stuffed and b"\n." in text:
            text = text.replace(b"\n.", b"\n")
        if body.size + len(text) > body.limit:
            body.bulk = False
            return None
        body.addBlock(text)
        if not ends:
            self.resetTimeout()
            return end
        # The reply restarts the idle timer (see _replied).
        self._bodyLineReceived(b".")
        return end + (3 if buf.startswith(b".\r\n", end) else 2)

    def lineLengthExceeded(self, line):
        log.warn(
            "line of more than {limit} bytes from {peer}; closing",
            limit=wire.MAX_LINE_LENGTH,
            peer=self._peer,
        )
        self.transport.write(wire.formatError("line too long"))
        self.closeConnection()

    def lineReceived(self, line):
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > wire.MAX_LINE_LENGTH:
            return self.lineLengthExceeded(line)
        self.resetTimeout()
        if self._body is not None:
            self._bodyLineReceived(line)
            return
        try:
            command = wire.parseCommand(line)
        except errors.ProtocolError as e:
            self.transport.write(wire.formatError(e))
            return
        handler = getattr(self, "do_" + command.verb)
        self._respond(handler, command)

    # -- running commands

    def _respond(self, handler, *args, reply=None):
        """
        Run a handler and write its reply.  A handler returns reply bytes or
        a L{Deferred} firing with them; while it is outstanding, no further
        line is read and the connection does not time out as idle.

        @param reply: if given, the handler's L{Deferred} fires with a
            result this makes the reply bytes of (in the one callback).
        """
        try:
            result = handler(*args)
        except Exception as e:
            self.transport.write(self._errorReply(e))
            return
        if not isinstance(result, defer.Deferred):
            self._replyAtOnce(result)
            return
        # One callback does it all (this runs for every command).
        box = []

        def settled(outcome):
            if isinstance(outcome, Failure):
                outcome = self._errorReply(outcome.value, outcome)
            elif reply is not None:
                try:
                    outcome = reply(outcome)
                except Exception as e:
                    outcome = self._errorReply(e)
            if not box:
                box.append(outcome)  # answered at once: the caller writes it
                return
            try:
                self._replyReady(outcome)
            except Exception:
                # Resuming runs the pipelined lines that follow: a bug there
                # must be logged now, not when the Deferred is collected.
                log.failure("unexpected error serving {peer}", peer=self._peer)

        result.addBoth(settled)
        if box:
            # Answered at once (an in-memory store): no need to pause.
            self._replyAtOnce(box[0])
            return
        box.append(None)
        self._holdInput()
        self._outstanding = True

    def _replyAtOnce(self, reply):
        """
        Write a reply ready when its command was read: bytes at once; a
        L{MessageSender}'s reply while input is held, as for a reply that
        waits for the store.
        """
        if isinstance(reply, MessageSender):
            self._holdInput()
            self._outstanding = True
            self._replyReady(reply)
        else:
            self._write(reply)

    def _write(self, reply):
        writeNow(self.transport, reply)
        if self._closeAfterReply:
            self._hangUp()

    def _hangUp(self):
        """
        Close the connection after the last reply (C{QUIT}), telling the
        client first if the server is stopping.
        """
        if self._stopping:
            self.transport.write(wire.formatError("server stopping, closing"))
        self.closeConnection()

    def _replyReady(self, reply):
        if self._lost:
            return
        if isinstance(reply, MessageSender):
            reply.start(self.transport).addCallback(lambda _: self._replied())
            return
        self._write(reply)
        self._replied()

    def _replied(self):
        if self._lost or self.hangingUp or self.transport.disconnecting:  # QUIT
            return
        if self._closeAfterReply:  # a streamed reply as the server stops
            self._hangUp()
            return
        self._outstanding = False
        self.resetTimeout()
        self._releaseInput()

    def _errorReply(self, exc, failure=None):
        if isinstance(exc, errors.MailError):
            return wire.formatError(exc)
        if failure is None:
            log.failure("unexpected error serving {peer}", peer=self._peer)
        else:
            log.failure(
                "unexpected error serving {peer}", failure=failure, peer=self._peer
            )
        return wire.formatError("internal error")

    def _requireSession(self):
        if self.session is None:
            if self.factory.portal is not None:
                raise errors.LoginRequired()
            raise errors.NoUserSelected()
        return self.session

    def stopServing(self):
        """
        The server is stopping: take no further command, answer the one
        under way, say so and close the connection, then end the user
        session, if any (deletes made in it are expunged before the mailbox
        threads stop).  Ending the session first would answer commands
        still arriving as if the client had never chosen a user.
        """
        if not (self._lost or self.hangingUp):
            self._stopping = True
            if self._outstanding:
                # Its reply is written, then the connection closed.
                self._closeAfterReply = True
            else:
                self._hangUp()
        return self._endSession()

    def _endSession(self):
        # The reads are marked, then the folder and the session closed.
        folder = self._closeFolder()
        session, self.session = self.session, None
        if session is None:
            return folder
        return folder.addCallback(lambda _: self._flushSeen()).addCallback(
            lambda _: session.close())

    # -- commands

    def do_CAPA(self, command):
        capabilities = [
            "PIPELINING",
            "SIZE {}".format(self.factory.maxMessageSize),
            "IMPLEMENTATION simplemail",
        ]
        if self.factory.portal is not None:
            capabilities.append("AUTH")
        capabilities.extend(["LSTM", "SENDM", "FOLDERS", "SEARCH"])
        return wire.formatMultiline(
            "capabilities follow", [c.encode("ascii") for c in capabilities]
        )

    def do_LSTU(self, command):
        if self.factory.portal is not None:
            self._requireSession()

        def listed(users):
            return wire.formatMultiline(
                "{} users".format(len(users)), [u.encode("ascii") for u in users]
            )

        return self.factory.store.listUsers().addCallback(listed)

    def do_ADDU(self, command):
        if not self.factory.signup:
            raise errors.SignupClosed()
        passwords = self.factory.passwordFile
        if passwords is None and command.text is not None:
            raise errors.ProtocolError("passwords are not enabled on this server")
        if passwords is not None and command.text is None:
            raise errors.ProtocolError("usage: ADDU <userid> <password>")
        userid = wire.normalizeUserId(command.args[0])
        d = createAccount(
            self.factory.store, userid, command.text, passwords, self.factory.inThread,
            self.factory.portal, peerAddress(self.transport),
        )

        def added(userid):
            log.info("added user {user} (for {peer})", user=userid, peer=self._peer)
            return wire.formatOK("user {} created".format(userid))

        return d.addCallback(added)

    def do_USER(self, command):
        userid = wire.normalizeUserId(command.args[0])
        if self.factory.portal is not None:
            self._pendingUser = userid
            return self._endSession().addCallback(
                lambda _: wire.formatOK("send PASS <password> for " + userid)
            )
        return self.factory.store.openMailbox(userid).addCallback(self._selected)

    def _selected(self, session):
        if self._lost:
            session.close()
            return b""
        d = self._endSession()
        self.session = session
        log.info("{peer} selected {user}", peer=self._peer, user=session.userid)
        return d.addCallback(
            lambda _: wire.formatOK(
                "{} has {} message{}".format(
                    session.userid, session.count, "" if session.count == 1 else "s"
                )
            )
        )

    def do_PASS(self, command):
        portal = self.factory.portal
        if portal is None:
            raise errors.ProtocolError("passwords are not enabled on this server")
        userid, self._pendingUser = self._pendingUser, None
        if userid is None:
            raise errors.ProtocolError("send USER <userid> first")
        credentials = LoginAttempt(
            userid.encode("ascii"), command.text.encode("utf-8"),
            peerAddress(self.transport),
        )

        def loggedIn(result):
            interface, account, logout = result
            return self.factory.store.openMailbox(account.userid)

        def refused(f):
            # The throttle logged the refusal (once, for every door).
            f.trap(UnauthorizedLogin, errors.NoSuchUser)
            self._loginFailures += 1
            if throttle.tooManyFailures(self._loginFailures):
                log.info(
                    "closing connection from {peer} after {n} failed logins",
                    peer=self._peer,
                    n=self._loginFailures,
                )
                self._closeAfterReply = True
            raise errors.LoginFailed()

        d = portal.login(credentials, None, IMailAccount)
        d.addCallback(loggedIn)
        d.addErrback(refused)
        return d.addCallback(self._selected)

    def do_LSTM(self, command):
        view = self._view()

        def listed(listing):
            lines = [listingLine(m) for m in listing.messages]
            count = len(lines)
            return wire.formatMultiline(
                "{} message{}".format(count, "" if count == 1 else "s"), lines
            )

        return view.listMessages().addCallback(listed)

    def do_READM(self, command):
        session = self._view()

        def read(text):
            self._markRead(session)
            status = "message follows ({} bytes)".format(len(text))
            if len(text) > STREAM_THRESHOLD:
                return MessageSender(wire.formatOK(status), text)
            return wire.formatMessageReply(status, text)

        if command.args:
            msgid = command.args[0]
            if not MESSAGE_ID.match(msgid):
                raise errors.NoSuchMessage()
            return session.selectMessage(msgid).addCallback(read)
        return session.readMessage().addCallback(read)

    def do_DELM(self, command):
        session = self._view()

        def deleted(_):
            log.info("{peer} deleted a message of {user}", peer=self._peer,
                     user=session.userid)
            return wire.formatOK("message deleted")

        return session.deleteMessage().addCallback(deleted)

    def do_SEND(self, command):
        session = self._requireSession()
        receiver = wire.normalizeUserId(command.args[0])
        d = self.factory.store.hasUser(receiver)
        if command.text is not None:
            body = command.text.encode("utf-8")

            def deliver(_):
                if len(body) > self.factory.maxMessageSize:
                    raise errors.MessageTooLarge(self.factory.maxMessageSize)
                return self._deliver(session.userid, receiver, body)

            return d.addCallback(deliver)

        return d.addCallback(self._startBody, receiver)

    def do_SENDM(self, command):
        self._requireSession()
        receiver = wire.normalizeUserId(command.args[0])
        d = self.factory.store.hasUser(receiver)
        return d.addCallback(self._startBody, receiver, whole=True)

    def _startBody(self, _, receiver, whole=False):
        self._body = Body(receiver, self.factory.maxMessageSize, whole)
        return wire.formatOK("send the message, end with a line holding only .")

    def _bodyLineReceived(self, line):
        if line != b".":
            self._body.add(wire.unstuff(line))
            return
        body, self._body = self._body, None
        if body.tooLarge:
            log.info(
                "refused a message over {limit} bytes from {peer}",
                limit=body.limit,
                peer=self._peer,
            )
            self.transport.write(wire.formatError(errors.MessageTooLarge(body.limit)))
            return
        session = self.session
        if session is None:  # pragma: no cover - SEND requires a session
            self.transport.write(wire.formatError(errors.NoUserSelected()))
            return
        # The blocks themselves, not a joined copy: nothing else holds them.
        if body.whole:
            self._respond(self._deliverWhole, session.userid, body.receiver, body.blocks)
        else:
            self._respond(self.factory.store.deliver, session.userid, body.receiver,
                          body.blocks, reply=DeliveredReply(
                              self.factory.deliveryLog, session.userid, body.receiver,
                              body.size))

    def _deliverWhole(self, sender, receiver, blocks):
        """
        Store a message submitted whole (C{SENDM}), with the headers the
        server sets (see L{buildSubmittedMessage}).
        """
        domain = self.factory.domain
        message = buildSubmittedMessage(
            sender, receiver, domain, blocks, self.factory.reactor.seconds()
        )
        size = sum(map(len, message))

        def delivered(_):
            self.factory.deliveryLog.info(
                "delivered a {} byte message from {} to {}".format(size, sender, receiver))
            return wire.formatOK("message delivered to {}".format(receiver))

        d = self.factory.store.deliverMessage(
            "{}@{}".format(sender, domain), receiver, message
        )
        return d.addCallback(delivered)

    def _deliver(self, sender, receiver, body):
        return self.factory.store.deliver(sender, receiver, body).addCallback(
            DeliveredReply(self.factory.deliveryLog, sender, receiver, len(body)))

    def do_DONEU(self, command):
        self._requireSession()
        userid = self.session.userid
        return self._endSession().addCallback(
            lambda _: wire.formatOK("goodbye {}".format(userid))
        )

    def do_QUIT(self, command):
        def closed(_):
            self.transport.write(wire.formatOK("bye"))
            self.closeConnection()
            return b""

        return self._endSession().addCallback(closed)


class MailServerFactory(SessionFactory):
    """
    Builds L{MailServerProtocol}s that share one store.

    @ivar store: the L{IMailStore}.
    @ivar domain: the mail domain of the addresses in the headers the
        server writes (C{SENDM}); by default the store's.
    @ivar connections: the number of connections now open.
    """

    protocol = MailServerProtocol
    noisy = False
    door = "a line-protocol"

    def refusal(self):
        return wire.formatError("too many connections, try later")

    def __init__(
        self,
        store,
        maxMessageSize=DEFAULT_MAX_MESSAGE_SIZE,
        idleTimeout=DEFAULT_IDLE_TIMEOUT,
        maxConnections=DEFAULT_MAX_CONNECTIONS,
        reactor=None,
        portal=None,
        passwordFile=None,
        domain=None,
        signup=True,
    ):
        SessionFactory.__init__(self, store, idleTimeout, maxConnections, reactor)
        # False with --no-signup: ADDU is refused, whatever the name.
        self.signup = signup
        if domain is None:
            domain = getattr(store, "domain", "localhost")
        self.domain = domain
        self.portal = portal
        self.passwordFile = passwordFile
        self.maxMessageSize = maxMessageSize
        # One log event per reactor iteration for all its deliveries.
        self.deliveryLog = BatchedLog(log, self.reactor)

    def inThread(self, f, *args):
        """
        Run blocking work (the password file) in the reactor's thread pool.
        """
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)
