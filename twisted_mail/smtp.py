"""
SMTP ingress: an RFC 5321 ESMTP listener that delivers mail for existing
local users into the store, built on L{twisted.mail.smtp}.

The pieces:

  - L{StoreDelivery}, an L{smtp.IMessageDelivery} over an L{IMailStore}: it
    accepts any sender and only recipients that are existing users at our
    domain (no relaying).
  - L{StoreMessage}, an L{smtp.IMessage}: one per transaction, shared by all
    its recipients.  The message is gathered into one C{bytearray}, capped at
    the maximum message size, and handed to
    L{IMailStore.deliverMessage} once per distinct recipient, with a
    C{Received:} header and, when missing, C{Date:} and C{Message-ID:}.
  - L{SMTPServerProtocol}, an L{smtp.ESMTP} with its own framing (its
    docstring lists the Twisted behaviours it replaces, and why) and its own
    handling of the end of the message: C{250} only once every recipient's copy is durable,
    C{451} when the store failed for a reason that may pass.
  - L{makeSMTPFactory}, what C{twistd simplemail --smtp ENDPOINT} listens
    with.

A temporary failure (C{451}) after some recipients were already served means
the client retries the whole transaction, and those recipients then get a
second copy: SMTP has one reply to C{DATA} for all recipients.
"""

import os
import re
from datetime import datetime, timezone
from email.utils import format_datetime

from twisted.internet import defer
from twisted.internet.interfaces import INegotiated, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.mail import smtp
from zope.interface import implementer

from twisted_mail import errors, wire
from twisted_mail.interfaces import IMailStore
from twisted_mail.message import appendLine, perSecond
from twisted_mail.server import describePeer

log = Logger()

#: The date of a Received: header, formatted once a second.
_receivedDate = perSecond(
    lambda second: format_datetime(datetime.fromtimestamp(second, timezone.utc)).encode("ascii")
)

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

#: How many recipients' copies of a message are handed to the store at once.
DELIVERY_CONCURRENCY = 4

_COMMAND, _DATA = smtp.COMMAND, smtp.DATA

# A header field line: a name of printable ASCII other than ":", then ":"
# (RFC 5322; obsolete syntax allows white space before the colon).
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# Bytes of client-supplied text we do not copy into a Received: header.
_UNSAFE_IN_HEADER = re.compile(rb"[^\x21-\x27\x2a-\x5b\x5d-\x7e]")


def _sanitise(text, limit=255):
    """
    Client-supplied bytes made safe for a header comment: printable ASCII
    without parentheses or backslashes, at most C{limit} bytes.
    """
    return _UNSAFE_IN_HEADER.sub(b"?", text[:limit])


def _peerLiteral(transport):
    """
    The client's address as an RFC 5321 address literal (C{[192.0.2.1]},
    C{[IPv6:2001:db8::1]}), or C{b"local"} for a Unix socket or anything
    else without an IP address.
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return b"unknown"
    host = getattr(peer, "host", None)
    if not isinstance(host, str) or not host:
        return b"local"
    if ":" in host:
        return ("[IPv6:" + host + "]").encode("ascii", "replace")
    return ("[" + host + "]").encode("ascii", "replace")


def _asciiDomain(domain):
    """
    The domain as ASCII bytes (IDNA for an internationalised name).

    @raise ValueError: if it cannot be written in ASCII.
    """
    try:
        return domain.encode("ascii").lower()
    except UnicodeEncodeError:
        pass
    try:
        return domain.encode("idna").lower()
    except UnicodeError:
        raise ValueError("the domain {!r} is not a valid host name".format(domain))


class _Transaction:
    """
    One mail transaction (C{MAIL FROM} to the end of C{DATA}).

    @ivar id: a short random id, for the logs and the C{Received:} header.
    @ivar helo: the client's C{HELO}/C{EHLO} argument (bytes) or L{None}.
    @ivar sender: the envelope sender address, L{str}; empty for C{<>}.
    @ivar recipients: canonical user id -> the address it was named by, in
        the order first named; a user named twice is one recipient.
    """

    def __init__(self, delivery, helo, sender):
        self.id = os.urandom(8).hex()
        self.delivery = delivery
        self.helo = helo
        self.sender = sender
        self.recipients = {}
        self.message = None

    def messageFor(self, userid, address):
        """
        The L{StoreMessage} of this transaction, with C{userid} added to its
        recipients.  Called by the protocol once per accepted C{RCPT TO}
        when C{DATA} starts; every call returns the same message.
        """
        self.recipients.setdefault(userid, address)
        if self.message is None:
            self.message = StoreMessage(self.delivery, self)
        return self.message


@implementer(smtp.IMessageDelivery)
class StoreDelivery:
    """
    The L{smtp.IMessageDelivery} of one SMTP connection: decides who may
    receive mail, and builds the L{StoreMessage} of each transaction.

    @param store: the L{IMailStore}.
    @param domains: the domains we receive mail for, lower-case L{bytes}.
    @param domain: our own domain, L{str} (for C{Message-ID:} and
        C{Received:}).
    @param maxMessageSize: the largest message accepted, in bytes, as
        received (CRLF line endings, after dot-unstuffing).
    @param clock: an L{IReactorTime}, for the date of C{Received:} and
        C{Date:}.
    @param connection: the L{SMTPServerProtocol} this serves, or L{None}
        (it tells the peer's address and whether TLS is on).
    """

    def __init__(self, store, domains, domain, maxMessageSize, clock, connection=None):
        self.store = store
        self.domains = frozenset(domains)
        self.domain = domain
        self.maxMessageSize = maxMessageSize
        self.clock = clock
        self.connection = connection
        self._transaction = None

    @property
    def _peer(self):
        if self.connection is None:
            return "?"
        return self.connection.peer

    # -- IMessageDelivery

    def validateFrom(self, helo, origin):
        """
        Accept any sender whose address is ASCII, and start a transaction.
        """
        try:
            sender = bytes(origin).decode("ascii")
        except UnicodeDecodeError:
            raise smtp.SMTPBadSender(
                origin, 553, "the address must be ASCII (no SMTPUTF8 here)"
            )
        self._transaction = _Transaction(self, helo[0] if helo else None, sender)
        return origin

    def validateTo(self, user):
        """
        Accept an existing user at one of our domains.

        @return: a L{Deferred} firing with a callable that returns the
            transaction's L{StoreMessage}; or failing with
            L{smtp.SMTPBadRcpt} (550: another domain, or no such user) or
            L{smtp.SMTPServerError} (451/450: try again later).
        """
        transaction = self._transaction
        address = user.dest
        printable = bytes(address).decode("ascii", "replace")
        domain = address.domain.lower().rstrip(b".")
        if domain not in self.domains:
            log.warn(
                "refused relaying from {peer} to {address} (sender {sender})",
                peer=self._peer,
                address=printable,
                sender=transaction.sender if transaction else "?",
            )
            raise smtp.SMTPBadRcpt(
                address,
                550,
                "relaying denied: this server only takes mail for its users",
            )
        try:
            userid = wire.normalizeUserId(address.local.decode("ascii"))
        except (UnicodeDecodeError, errors.InvalidUserId):
            return self._unknownRecipient(address, printable)

        def accepted(userid):
            def factory():
                return transaction.messageFor(userid, printable)

            factory.userid = userid
            return factory

        d = defer.maybeDeferred(self.store.hasUser, userid)
        d.addCallbacks(
            accepted, self._recipientFailed, errbackArgs=(address, printable)
        )
        return d

    def _unknownRecipient(self, address, printable):
        log.info(
            "refused mail for unknown recipient {address} from {peer}",
            address=printable,
            peer=self._peer,
        )
        raise smtp.SMTPBadRcpt(address, 550, "no such user here")

    def _recipientFailed(self, failure, address, printable):
        if failure.check(errors.NoSuchUser, errors.InvalidUserId):
            return self._unknownRecipient(address, printable)
        if failure.check(errors.MailboxUnavailable):
            log.error(
                "mail for {address} deferred: its mailbox is unavailable",
                address=printable,
            )
            raise smtp.SMTPServerError(450, "mailbox unavailable, try again later")
        if failure.check(errors.TemporaryFailure):
            log.warn(
                "mail for {address} deferred: {why}",
                address=printable,
                why=failure.value,
            )
        else:
            log.failure(
                "checking recipient {address} failed", failure, address=printable
            )
        raise smtp.SMTPServerError(451, "local error, try again later")

    def receivedHeader(self, helo, origin, recipients, transaction=None):
        """
        The C{Received:} header of a message (RFC 5321 section 4.4).

        @param helo: the client's C{HELO}/C{EHLO} argument (bytes) or
            L{None}, or the C{(argument, address)} pair Twisted passes.
        @param origin: unused (the envelope sender is in the mbox C{From }
            line).
        @param recipients: the addresses (L{str}) of the message; the C{for}
            clause names one only when there is exactly one, so that no
            recipient learns of the others.
        @param transaction: the transaction whose id to use; default the
            current one.
        @return: the header field, L{bytes} with LF line endings, folded.
        """
        if isinstance(helo, tuple):
            helo = helo[0]
        if transaction is None:
            transaction = self._transaction
        connection = self.connection
        if connection is not None:
            literal = _peerLiteral(connection.transport)
            withProtocol = connection.withProtocol
        else:
            literal, withProtocol = b"unknown", b"ESMTP"
        when = _receivedDate(int(self.clock.seconds()))
        by = (
            b"\tby " + _asciiDomain(self.domain) + b" (simplemail) with " + withProtocol
        )
        if transaction is not None:
            by += b" id " + transaction.id.encode("ascii")
        lines = [
            b"Received: from "
            + (_sanitise(helo) if helo else b"unknown")
            + b" ("
            + literal
            + b")",
            by,
        ]
        if len(recipients) == 1:
            address = _sanitise(recipients[0].encode("ascii", "replace"))
            lines.append(b"\tfor <" + address + b">;")
        else:
            lines[-1] += b";"
        lines.append(b"\t" + when)
        return b"\n".join(lines) + b"\n"


@implementer(smtp.IMessage)
class StoreMessage:
    """
    The message of one transaction, for all its recipients: gathered in
    blocks of whole lines (never more than the maximum message size of it)
    and delivered to each recipient's mailbox by L{eomReceived}, as those
    blocks: a big message is never joined into one more copy.

    @ivar tooLarge: whether the message passed the maximum size; nothing
        more of it is kept and L{eomReceived} refuses it.
    """

    def __init__(self, delivery, transaction):
        self._delivery = delivery
        self._transaction = transaction
        self._limit = delivery.maxMessageSize
        # The blocks (bytearrays), or None once the message is dropped.
        self._data = [bytearray()]
        self._stored = 0
        self._size = 0
        self.tooLarge = False
        # Header section tracking, to add Date: and Message-ID: only when
        # missing and to keep a blank line between headers and body.
        self._inHeaders = True
        self._sawField = False
        self._hasDate = False
        self._hasMessageId = False
        self._bodyStartsAt = None

    def lineReceived(self, line):
        """
        One line of the message, without its line ending, dot-unstuffed.
        Its size counts with a CRLF, as the client reckons it for C{SIZE=}.
        """
        if self._data is None:
            return
        self._size += len(line) + 2
        if self._size > self._limit:
            self.tooLarge = True
            self._data = None
            return
        if self._inHeaders:
            self._headerLine(line)
        appendLine(self._data, line)
        self._stored += len(line) + 1

    def textReceived(self, text):
        """
        Many lines at once: C{text} is whole lines, each ending in CRLF,
        dot-stuffed, with no other CR or LF and no line of just C{.}.  The
        same as L{lineReceived} for each line, for a fraction of the work:
        the header section line by line, the rest in one piece (a block).
        """
        pos = 0
        while self._inHeaders and pos < len(text):
            end = text.index(b"\r\n", pos)
            line = text[pos:end]
            self.lineReceived(line[1:] if line[:1] == b"." else line)
            pos = end + 2
        if self._data is None or pos == len(text):
            return
        rest = text[pos:].replace(b"\r\n", b"\n")
        if rest[:1] == b".":
            rest = rest[1:]
        if b"\n." in rest:
            rest = rest.replace(b"\n.", b"\n")
        # As lineReceived counts: each line with a CRLF.
        self._size += len(rest) + rest.count(b"\n")
        if self._size > self._limit:
            self.tooLarge = True
            self._data = None
            return
        self._data.append(rest)
        self._stored += len(rest)

    def _headerLine(self, line):
        if not line:
            self._inHeaders = False
            return
        if line[:1] in (b" ", b"\t") and self._sawField:
            return
        match = _FIELD.match(line)
        if match is None:
            # Text before any blank line: the header section ended without
            # one (or there was none); a blank line goes in before this.
            self._inHeaders = False
            self._bodyStartsAt = self._stored
            return
        self._sawField = True
        name = match.group(1).lower()
        if name == b"date":
            self._hasDate = True
        elif name == b"message-id":
            self._hasMessageId = True

    def _compose(self):
        """
        The message to store: our headers, then the message as received.

        @return: a L{list} of L{bytes} and L{bytearray} pieces, each ending
            at a line end.
        """
        delivery = self._delivery
        transaction = self._transaction
        recipients = list(transaction.recipients.values())
        prefix = [
            delivery.receivedHeader(
                transaction.helo, None, recipients, transaction=transaction
            )
        ]
        if not self._hasDate:
            when = datetime.fromtimestamp(delivery.clock.seconds(), timezone.utc)
            prefix.append(b"Date: " + format_datetime(when).encode("ascii") + b"\n")
        if not self._hasMessageId:
            prefix.append(
                b"Message-ID: <"
                + transaction.id.encode("ascii")
                + os.urandom(8).hex().encode("ascii")
                + b"@"
                + _asciiDomain(delivery.domain)
                + b">\n"
            )
        blocks, self._data = self._data, None
        at = self._bodyStartsAt
        if at is not None:
            # The header section ended without a blank line: put one in, at
            # a line boundary, in whichever block holds it.
            for i, block in enumerate(blocks):
                if at <= len(block):
                    blocks[i : i + 1] = [block[:at], b"\n", block[at:]]
                    break
                at -= len(block)
        return prefix + [block for block in blocks if len(block)]

    def eomReceived(self):
        """
        Deliver the message to every recipient.

        @return: a L{Deferred} firing with the transaction id once every
            copy is stored for good, or failing with an
            L{smtp.SMTPServerError}: 552 (too large), 451 (a temporary
            failure for at least one recipient: the client will retry, and
            recipients already served get the message again), 550 (a
            permanent failure for at least one recipient).
        """
        transaction = self._transaction
        peer = self._delivery._peer
        if self.tooLarge:
            log.info(
                "refused a message over {limit} bytes from {peer} (sender {sender})",
                limit=self._limit,
                peer=peer,
                sender=transaction.sender,
            )
            return defer.fail(
                smtp.SMTPServerError(
                    552,
                    "message too large (limit {} bytes); nothing was stored".format(
                        self._limit
                    ),
                )
            )
        if self._data is None:
            return defer.fail(smtp.SMTPServerError(451, "message lost, try again"))
        pieces = self._compose()
        store = self._delivery.store
        userids = list(transaction.recipients)
        # A store builds each recipient's copy (its mbox record) when asked:
        # a few at a time bounds the memory one message can take.
        semaphore = defer.DeferredSemaphore(DELIVERY_CONCURRENCY)
        attempts = [
            semaphore.run(store.deliverMessage, transaction.sender, userid, pieces)
            for userid in userids
        ]

        def done(results):
            stored, temporary, permanent = [], [], []
            for userid, (ok, result) in zip(userids, results):
                if ok:
                    stored.append(userid)
                elif result.check(
                    errors.NoSuchUser, errors.InvalidUserId, errors.MessageTooLarge
                ):
                    permanent.append((userid, result))
                else:
                    if not result.check(
                        errors.TemporaryFailure, errors.MailboxUnavailable
                    ):
                        log.failure("delivering to {user} failed", result, user=userid)
                    temporary.append((userid, result))
            if stored:
                log.info(
                    "delivered {size} bytes from {sender} to {recipients} "
                    "(id {id}, from {peer})",
                    size=sum(len(piece) for piece in pieces),
                    sender=transaction.sender or "<>",
                    recipients=", ".join(stored),
                    id=transaction.id,
                    peer=peer,
                )
            failed = temporary + permanent
            for userid, result in failed:
                log.warn(
                    "message {id} from {sender} not delivered to {user}: {why}",
                    id=transaction.id,
                    sender=transaction.sender or "<>",
                    user=userid,
                    why=(
                        result.value
                        if result.check(errors.MailError)
                        else "internal error"
                    ),
                )
            if not failed:
                return transaction.id
            note = ""
            if stored:
                note = " ({} of {} recipients already have it)".format(
                    len(stored), len(userids)
                )
            if temporary:
                raise smtp.SMTPServerError(
                    451, "temporary local failure, try again later" + note
                )
            if all(result.check(errors.MessageTooLarge) for _, result in permanent):
                raise smtp.SMTPServerError(
                    552, "message too large for the mailbox" + (note or "; not stored")
                )
            raise smtp.SMTPServerError(550, "message not delivered" + note)

        return defer.DeferredList(attempts, consumeErrors=True).addCallback(done)

    def connectionLost(self):
        """
        The transaction was abandoned: forget the message.
        """
        self._data = None


class SMTPServerProtocol(smtp.ESMTP):
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
        self.factory.connections -= 1
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
        self.transport.loseConnection()

    # -- framing

    def _closing(self):
        return self._lost or self.transport.disconnecting

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
                    self.transport.loseConnection()
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
        self.transport.loseConnection()

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
                self.transport.loseConnection()

    def _reply(self, code, message=b""):
        if self._lost:
            return
        smtp.ESMTP.sendCode(self, code, message)

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
        if self.startedTLS:
            self.withProtocol = b"ESMTPS"
        else:
            self.withProtocol = b"ESMTP" if extended else b"SMTP"
        text = self.host + b" hello " + self._peerLiteral
        if extended:
            text += b"\n" + self.listExtensions()
        self.sendCode(250, text)

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
            + (b" STARTTLS" if self.ctx is not None else b""),
        )

    def ext_AUTH(self, rest):
        self.sendCode(
            502, b"no authentication here: mail is accepted for local users only"
        )

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


class _RefuseSMTP(Protocol):
    """
    Tells an SMTP client the server is full (421, so it retries later) and
    closes the connection.
    """

    def __init__(self, host):
        self.host = host

    def connectionMade(self):
        self.transport.write(
            b"421 " + self.host + b" too many connections, try again later\r\n"
        )
        self.transport.loseConnection()


def _asBytes(text):
    if isinstance(text, bytes):
        return text
    return str(text).encode("ascii", "replace")


class SMTPFactory(smtp.SMTPFactory):
    """
    Builds L{SMTPServerProtocol}s delivering into one store.

    @ivar tlsContextFactory: the context factory for C{STARTTLS}, or L{None}
        (no C{STARTTLS}).
    """

    protocol = SMTPServerProtocol
    noisy = False

    def __init__(
        self,
        store,
        domain,
        maxMessageSize,
        idleTimeout,
        reactor,
        tlsContextFactory=None,
        maxConnections=None,
    ):
        smtp.SMTPFactory.__init__(self)
        self.store = IMailStore(store)
        self.maxConnections = maxConnections
        self.connections = 0
        self.domain = domain
        self._host = _asciiDomain(domain)
        self.domains = {self._host, b"localhost"}
        self.maxMessageSize = maxMessageSize
        self.timeout = idleTimeout
        self.reactor = reactor
        self.tlsContextFactory = tlsContextFactory

    def buildProtocol(self, addr):
        if self.maxConnections is not None and self.connections >= self.maxConnections:
            log.warn(
                "refused an SMTP connection from {addr}: {n} connections open",
                addr=addr,
                n=self.connections,
            )
            p = _RefuseSMTP(self._host)
            p.factory = self
            return p
        self.connections += 1
        p = self.protocol(contextFactory=self.tlsContextFactory)
        p.factory = self
        p.host = self._host
        p.timeout = self.timeout
        p.callLater = self.reactor.callLater
        p.maxMessageSize = self.maxMessageSize
        p.delivery = StoreDelivery(
            self.store,
            self.domains,
            self.domain,
            self.maxMessageSize,
            self.reactor,
            connection=p,
        )
        return p


def makeSMTPFactory(
    store,
    domain,
    maxMessageSize,
    idleTimeout,
    reactor=None,
    tlsContextFactory=None,
    maxConnections=None,
):
    """
    The factory that C{twistd simplemail --smtp ENDPOINT} listens with.

    @param store: the L{IMailStore} to deliver into.
    @param domain: our mail domain (L{str}); mail for C{user@domain} and
        C{user@localhost} is accepted when C{user} exists.
    @param maxMessageSize: the largest message accepted, in bytes (as
        received: CRLF line endings, after dot-unstuffing); advertised as
        C{SIZE}.
    @param idleTimeout: seconds without a complete line before the
        connection is closed.
    @param reactor: the reactor (its clock and C{callLater}).
    @param tlsContextFactory: enables C{STARTTLS} (see
        L{loadTLSContextFactory}).
    @param maxConnections: connections past this many get C{421} and are
        closed (L{None}: no limit).
    @raise ValueError: if C{domain} cannot be written in ASCII.
    """
    if reactor is None:
        from twisted.internet import reactor
    return SMTPFactory(
        store,
        domain,
        maxMessageSize,
        idleTimeout,
        reactor,
        tlsContextFactory,
        maxConnections,
    )


def loadTLSContextFactory(certificatePath, keyPath=None):
    """
    A TLS context factory for C{STARTTLS} from PEM files.

    @param certificatePath: the server certificate, followed by any
        intermediate certificates (a "full chain" file); it may hold the
        private key too.
    @param keyPath: the private key (unencrypted PEM); default: the
        certificate file.
    @return: a L{twisted.internet.ssl.CertificateOptions}.
    @raise ValueError: with a message fit for the operator when a file
        cannot be read, holds no certificate or key, or the key does not
        match the certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from OpenSSL import SSL
    from twisted.internet import ssl

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError("cannot read {}: {}".format(path, e.strerror))

    certificateData = read(certificatePath)
    keyPath = keyPath or certificatePath
    keyData = certificateData if keyPath == certificatePath else read(keyPath)
    try:
        certificates = x509.load_pem_x509_certificates(certificateData)
    except ValueError:
        raise ValueError("no PEM certificate in {}".format(certificatePath))
    match = re.search(
        rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----.*?"
        rb"-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----",
        keyData,
        re.DOTALL,
    )
    if match is None:
        raise ValueError("no PEM private key in {}".format(keyPath))
    try:
        key = serialization.load_pem_private_key(match.group(0), password=None)
    except (ValueError, TypeError) as e:
        raise ValueError("cannot load the private key in {}: {}".format(keyPath, e))
    # pyOpenSSL takes cryptography's objects (its own are deprecated);
    # CertificateOptions hands them to it as they are.
    options = ssl.CertificateOptions(
        privateKey=key,
        certificate=certificates[0],
        extraCertChain=certificates[1:],
    )
    try:
        options.getContext()
    except SSL.Error:
        raise ValueError(
            "the private key in {} does not match the certificate in {}".format(
                keyPath, certificatePath
            )
        )
    return options


def checkSMTPOptions(endpoints, domain, certificatePath=None, keyPath=None):
    """
    Check the SMTP options of C{twistd simplemail} as a whole.

    @param endpoints: the C{--smtp} endpoint descriptions.
    @param domain: C{--domain}.
    @param certificatePath: C{--smtp-tls-cert} or L{None}.
    @param keyPath: C{--smtp-tls-key} or L{None}.
    @raise ValueError: with a one-line message for the operator.
    """
    if (certificatePath or keyPath) and not endpoints:
        raise ValueError("--smtp-tls-cert and --smtp-tls-key need --smtp")
    if keyPath and not certificatePath:
        raise ValueError("--smtp-tls-key needs --smtp-tls-cert")
    if endpoints:
        _asciiDomain(domain)
    if certificatePath:
        loadTLSContextFactory(certificatePath, keyPath)


def makeSMTPFactoryFromOptions(options, store, reactor):
    """
    The SMTP factory for the parsed options of C{twistd simplemail}.

    @raise ValueError: if the TLS files or the domain cannot be used.
    """
    tls = None
    if options.get("smtp-tls-cert"):
        tls = loadTLSContextFactory(
            options["smtp-tls-cert"], options.get("smtp-tls-key")
        )
    return makeSMTPFactory(
        store,
        options["domain"],
        options["max-message-size"],
        options["idle-timeout"],
        reactor=reactor,
        tlsContextFactory=tls,
        maxConnections=options.get("max-connections"),
    )
