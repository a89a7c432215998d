"""
Delivery of SMTP mail into the store: who may receive it, and the message
of one transaction.

  - L{StoreDelivery}, an L{smtp.IMessageDelivery} over an L{IMailStore}: it
    accepts any sender (or, on a submission connection, only the
    authenticated user's address) and only recipients that are existing
    users at our domain (no relaying).
  - L{StoreMessage}, an L{smtp.IMessage}: one per transaction, shared by all
    its recipients.  The message is gathered in blocks, capped at the
    maximum message size, and handed to L{IMailStore.deliverMessage} once
    per distinct recipient, with C{Return-Path:} and C{Received:} headers
    and, when missing, C{Date:} and C{Message-ID:}.

A temporary failure (C{451}) after some recipients were already served means
the client retries the whole transaction, and those recipients then get a
second copy: SMTP has one reply to C{DATA} for all recipients.
"""

import os
import re
from datetime import datetime, timezone
from email.utils import format_datetime

from twisted.internet import defer
from twisted.logger import Logger
from twisted.mail import smtp
from zope.interface import implementer

from twisted_mail import errors, wire
from twisted_mail.mail.message import HEADER_FIELD, appendLine, perSecond

log = Logger()

#: The date of a Received: header, formatted once a second.
_receivedDate = perSecond(
    lambda second: format_datetime(datetime.fromtimestamp(second, timezone.utc)).encode("ascii")
)

#: How many recipients' copies of a message are handed to the store at once.
DELIVERY_CONCURRENCY = 4

# A header field line: a name of printable ASCII other than ":", then ":"
# (RFC 5322; obsolete syntax allows white space before the colon).
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# Bytes that are not printable ASCII (nor a space).
_UNPRINTABLE = re.compile(rb"[^\x20-\x7e]")
# Bytes of client-supplied text we do not copy into a Received: header.
_UNSAFE_IN_HEADER = re.compile(rb"[^\x21-\x27\x2a-\x5b\x5d-\x7e]")


def _sanitise(text, limit=255):
    """
    Client-supplied bytes made safe for a header comment: printable ASCII
    without parentheses or backslashes, at most C{limit} bytes.
    """
    return _UNSAFE_IN_HEADER.sub(b"?", text[:limit])


def returnPathHeader(sender):
    """
    The C{Return-Path:} header that final delivery puts at the top of a
    message (RFC 5321 section 4.4: a MUST): the envelope sender, so that
    a reader of the mailbox by POP3 or IMAP, which never sees the mbox
    C{From } line, still knows where bounces go.

    @param sender: the envelope sender (L{str}, ASCII); empty for C{<>}.
    @return: the header field, L{bytes} ending in LF; a byte that is not
        printable ASCII (a quoted local part may hold one) becomes C{?}.
    """
    address = _UNPRINTABLE.sub(b"?", sender.encode("ascii", "replace"))
    return b"Return-Path: <" + address + b">\n"


def _badSender(origin, code, text):
    """
    An L{smtp.SMTPBadSender} for C{origin}, whose reply (Twisted writes
    C{Cannot receive from specified address <...>: text}) shows each byte of
    the address that is not printable ASCII as C{?}: a client's NUL or
    8-bit bytes are not echoed into the reply line.
    """
    refusal = smtp.SMTPBadSender(origin, code, text)
    refusal.addr.local = _UNPRINTABLE.sub(b"?", refusal.addr.local)
    refusal.addr.domain = _UNPRINTABLE.sub(b"?", refusal.addr.domain)
    return refusal


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

    #: The factory's L{BatchedLog} (one log event per reactor iteration for
    #: all its deliveries), or L{None}: one event per delivery.
    deliveryLog = None

    def logDelivery(self, line):
        if self.deliveryLog is None:
            log.info("{line}", line=line)
        else:
            self.deliveryLog.info(line)

    #: On a submission connection, the authenticated user id (L{str}): the
    #: only sender allowed is C{<submitter>@<one of our domains>}.  L{None}
    #: on an ingress connection (any sender).
    submitter = None

    def _isSubmitter(self, origin):
        return self._isOwn(bytes(origin.local), bytes(origin.domain))

    def _isOwn(self, local, domain):
        try:
            local = wire.normalizeUserId(local.decode("ascii"))
        except (UnicodeDecodeError, errors.InvalidUserId):
            return False
        return local == self.submitter and domain.lower().rstrip(b".") in self.domains

    def foreignAuthor(self, fields):
        """
        On a submission connection, the first address of the C{From:} and
        C{Sender:} fields that is not the user's own (as
        C{reject_sender_login_mismatch} holds the envelope sender, for the
        headers a reader sees); L{None} when every one is the user's.

        @param fields: the fields' values (L{bytes}, folded lines joined).
        @return: the offending address (L{str}; C{"(none)"} for a field
            naming no address), or L{None}.
        """
        from email.utils import getaddresses

        values = [value.decode("utf-8", "replace") for value in fields]
        for name, address in getaddresses(values):
            local, at, domain = address.rpartition("@")
            if not at or not self._isOwn(
                local.encode("utf-8"), domain.encode("utf-8")
            ):
                return address or "(none)"
        return None

    @property
    def submitterAddress(self):
        """
        The user's own address on a submission connection, L{bytes}.
        """
        return "{}@{}".format(self.submitter, self.domain).encode("utf-8")

    @property
    def _peer(self):
        if self.connection is None:
            return "?"
        return self.connection.peer

    # -- IMessageDelivery

    def validateFrom(self, helo, origin):
        """
        Accept any sender whose address is ASCII (on a submission
        connection: only the authenticated user's own address, see
        L{submitter}), and start a transaction.
        """
        try:
            sender = bytes(origin).decode("ascii")
        except UnicodeDecodeError:
            raise _badSender(origin, 553, "the address must be ASCII (no SMTPUTF8 here)")
        if self.submitter is not None and not self._isSubmitter(origin):
            log.warn(
                "refused sender {sender} from {user} (from {peer})",
                sender=sender or "<>",
                user=self.submitter,
                peer=self._peer,
            )
            raise _badSender(
                origin, 553, "you may send only as {}@{}".format(self.submitter, self.domain))
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
            line and in L{returnPathHeader}).
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
        # Whether every field so far is one the one reader takes as such:
        # a Date: or Message-ID: after one it does not is not seen.
        self._strict = True
        self._hasDate = False
        self._hasMessageId = False
        self._bodyStartsAt = None
        # On submission: the values of From: and Sender:, and whether the
        # field being read (for its continuation lines) is one of them.
        self._authors = []
        self._hasFrom = False
        self._inAuthor = False

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
            if self._inAuthor:
                self._authors[-1] += b" " + line.strip()
            return
        match = _FIELD.match(line)
        if match is None:
            # Text before any blank line: the header section ended without
            # one (or there was none); a blank line goes in before this.
            self._inHeaders = False
            self._bodyStartsAt = self._stored
            return
        self._sawField = True
        # The one reader's header section ends at the first field of the
        # obsolete kind (HEADER_FIELD does not match it).
        self._strict = self._strict and HEADER_FIELD.match(line) is not None
        name = match.group(1).lower()
        self._inAuthor = name in (b"from", b"sender")
        if self._inAuthor:
            self._hasFrom = self._hasFrom or name == b"from"
            self._authors.append(line[match.end():].strip())
        if not self._strict:
            # What the mail programs read (Dovecot takes the obsolete kind
            # too) still counts as an author above; a Date: or Message-ID:
            # here would be missing for the web, the API and the console.
            return
        if name == b"date":
            self._hasDate = True
        elif name == b"message-id":
            self._hasMessageId = True

    def _compose(self):
        """
        The message to store: our headers (C{Return-Path:} first, then
        C{Received:}, as final delivery writes them), then the message as
        received.

        @return: a L{list} of L{bytes} and L{bytearray} pieces, each ending
            at a line end.
        """
        delivery = self._delivery
        transaction = self._transaction
        recipients = list(transaction.recipients.values())
        prefix = [
            returnPathHeader(transaction.sender),
            delivery.receivedHeader(
                transaction.helo, None, recipients, transaction=transaction
            ),
        ]
        if not self._hasDate:
            when = datetime.fromtimestamp(delivery.clock.seconds(), timezone.utc)
            prefix.append(b"Date: " + format_datetime(when).encode("ascii") + b"\n")
        if delivery.submitter is not None and not self._hasFrom:
            prefix.append(b"From: " + delivery.submitterAddress + b"\n")
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
        if self._delivery.submitter is not None:
            foreign = self._delivery.foreignAuthor(self._authors)
            if foreign is not None:
                self._data = None
                log.warn(
                    "refused a message from {user} naming {address} in From:/Sender: "
                    "(from {peer})",
                    user=self._delivery.submitter,
                    address=foreign,
                    peer=peer,
                )
                return defer.fail(
                    smtp.SMTPServerError(
                        550,
                        "5.7.1 From: and Sender: may name only you ({}), not {}; "
                        "nothing was sent".format(
                            self._delivery.submitterAddress.decode("utf-8"), foreign
                        ),
                    )
                )
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
                self._delivery.logDelivery(
                    "delivered {} bytes from {} to {} (id {}, from {})".format(
                        sum(len(piece) for piece in pieces),
                        transaction.sender or "<>",
                        ", ".join(stored),
                        transaction.id,
                        peer,
                    ))
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
