"""
Building stored messages and the mboxrd format, as pure functions on bytes.

A message as the server hands it out (C{READM}) is RFC 5322 text with LF line
endings: headers, a blank line, the body.  In a spool file each message is
preceded by a C{From } separator line, has C{^>*From } lines quoted with one
more C{>} (mboxrd, RFC 4155) and is followed by a blank line.
"""

import re
import time
import uuid
from email.utils import formatdate

_FROM_QUOTED = re.compile(rb"^(>*From )", re.MULTILINE)
_FROM_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_UNSAFE = re.compile(rb"[\x00-\x20\x7f]")
_CR_BEFORE_LF = re.compile(rb"\r+\n")


def normaliseBody(body):
    """
    Normalise the line endings of a body: CR LF (and any run of CRs before
    an LF) becomes LF, and a last line without a line ending gets one.  Every
    other byte is kept as it is (a lone CR inside a line is data).  Applying
    it twice changes nothing more.

    Copies the body only when something must change.

    @type body: L{bytes}
    @rtype: L{bytes}
    """
    if body and not body.endswith(b"\n"):
        body = body + b"\n"
    if b"\r\n" in body:
        body = _CR_BEFORE_LF.sub(b"\n", body)
    return body


def buildHeaders(sender, receiver, domain, when=None, messageId=None):
    """
    The header block (ending with its blank line) of a message from
    C{sender} to C{receiver}.

    @param sender: the sending user id.
    @param receiver: the receiving user id.
    @param domain: the mail domain for addresses.
    @param when: POSIX time of delivery (default: now).
    @param messageId: the Message-ID (default: a fresh unique one).
    @rtype: L{bytes}
    """
    if when is None:
        when = time.time()
    if messageId is None:
        messageId = "<{}@{}>".format(uuid.uuid4().hex, domain)
    headers = (
        "From: {s}@{d}\n"
        "To: {r}@{d}\n"
        "Date: {date}\n"
        "Message-ID: {mid}\n"
        "\n".format(
            s=sender,
            r=receiver,
            d=domain,
            date=formatdate(when, localtime=False, usegmt=True),
            mid=messageId,
        )
    )
    return headers.encode("utf-8")


def buildMessage(sender, receiver, body, domain, when=None, messageId=None):
    """
    Build the RFC 5322 text of a message from C{sender} to C{receiver}: the
    headers of L{buildHeaders}, then the body with its line endings
    normalised.

    @rtype: L{bytes}, LF line endings.
    """
    return buildHeaders(sender, receiver, domain, when, messageId) + normaliseBody(body)


def separatorLine(sender, when=None):
    """
    The mbox C{From } line for a message from C{sender} (an address).

    Spaces and control characters in the sender become C{-}, so a sender can
    never forge a line.

    @type sender: L{bytes}
    @rtype: L{bytes}, without a line ending.
    """
    if when is None:
        when = time.time()
    sender = _UNSAFE.sub(b"-", sender) or b"MAILER-DAEMON"
    stamp = time.asctime(time.gmtime(when)).encode("ascii")
    return b"From " + sender + b" " + stamp


def quoteFrom(text):
    """
    mboxrd quoting: every line matching C{^>*From } gets one more C{>}.
    Returns C{text} itself (no copy) when there is nothing to quote.
    """
    if _FROM_QUOTED.search(text) is None:
        return text
    return _FROM_QUOTED.sub(rb">\1", text)


def unquoteFrom(text):
    """
    Undo L{quoteFrom}: every line matching C{^>+From } loses one C{>}.
    (For an mboxo file this also restores its quoted C{From } lines.)
    """
    return _FROM_UNQUOTE.sub(rb"\1", text)


def toMboxRecord(separator, message):
    """
    The bytes one message occupies in an mbox: separator line, quoted
    message with LF endings, then a blank line.

    @param separator: the C{From } line, without its line ending.
    @param message: RFC 5322 text (LF line endings).
    """
    return b"".join(mboxRecordChunks(separator, message))


def mboxRecordChunks(separator, *parts):
    """
    L{toMboxRecord} as a list of byte strings to write one after the other,
    so that a large message is not copied to build its record.

    @param parts: the message in consecutive pieces (for example headers,
        then body), each ending with a line ending or empty; the last is
        normalised like a body.
    """
    chunks = [separator + b"\n"]
    for part in parts[:-1]:
        chunks.append(quoteFrom(part))
    chunks.append(quoteFrom(normaliseBody(parts[-1])))
    chunks.append(b"\n")
    return chunks


def fromMboxRecord(record):
    """
    The RFC 5322 text of one mbox record (as L{toMboxRecord} or another mail
    tool wrote it): the separator line and the trailing blank line removed,
    C{From } quoting undone.
    """
    newline = record.find(b"\n")
    if newline == -1:
        return b""
    text = record[newline + 1 :]
    if text.endswith(b"\n\n"):
        text = text[:-1]
    elif text.endswith(b"\r\n\r\n"):
        text = text[:-2]
    return unquoteFrom(text)
