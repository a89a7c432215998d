"""
Building stored messages and the mboxrd format, as pure functions on bytes.

A message as the server hands it out (C{READM}) is RFC 5322 text with LF line
endings: headers, a blank line, the body.  In a spool file each message is
preceded by a C{From } separator line, has C{^>*From } lines quoted with one
more C{>} (mboxrd, RFC 4155) and is followed by a blank line.
"""

import os
import re
import time
from email.utils import formatdate

from twisted_mail.wire import escapeControls

_UNSAFE = re.compile(rb"[\x00-\x20\x7f]")


def perSecond(format):
    """
    Cache the last result of C{format(second)}: deliveries arrive many a
    second, and formatting a date costs more than the rest of the headers.
    """
    last = [None, None]

    def cached(second):
        if last[0] != second:
            last[1] = format(second)
            last[0] = second
        return last[1]

    return cached


_headerDate = perSecond(lambda second: formatdate(second, localtime=False, usegmt=True))
_separatorDate = perSecond(
    lambda second: time.asctime(time.gmtime(second)).encode("ascii")
)


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
    # bytes.replace runs at C speed; each pass shortens every CR run by one.
    while findInWindows(body, b"\r\n") != -1:
        body = body.replace(b"\r\n", b"\n")
    return body


#: How many bytes one search call covers in L{findInWindows}.
FIND_WINDOW = 1024 * 1024


def findInWindows(text, sub, start=0, end=None):
    """
    C{text.find(sub, start, end)}, a window of L{FIND_WINDOW} bytes at a
    time.  One C{find} over a 10 MiB message holds the GIL for about 14 ms
    (more on a busy machine), and a store thread doing that stalls the
    reactor as long; between windows the GIL can change hands.
    """
    if end is None:
        end = len(text)
    while start < end:
        stop = min(end, start + FIND_WINDOW + len(sub) - 1)
        found = text.find(sub, start, stop)
        if found != -1:
            return found
        start += FIND_WINDOW
    return -1


#: The size of the blocks a message is gathered in (see L{appendLine}).
BLOCK_SIZE = 64 * 1024


def appendLine(blocks, line):
    """
    Append C{line} and a LF to the last of C{blocks}, a L{list} of byte
    strings whose last is the L{bytearray} being filled; a new one is
    started when that one would pass L{BLOCK_SIZE} or is not a bytearray.
    A big message is so kept in blocks of whole lines, never one string
    grown (and copied) again and again, nor joined.
    """
    block = blocks[-1]
    if not isinstance(block, bytearray) or (len(block) + len(line) >= BLOCK_SIZE and block):
        block = bytearray()
        blocks.append(block)
    block += line
    block += b"\n"


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
        messageId = "<{}@{}>".format(os.urandom(16).hex(), domain)
    headers = (
        "From: {s}@{d}\n"
        "To: {r}@{d}\n"
        "Date: {date}\n"
        "Message-ID: {mid}\n"
        "\n".format(
            s=sender,
            r=receiver,
            d=domain,
            date=_headerDate(int(when)),
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
    stamp = _separatorDate(int(when))
    return b"From " + sender + b" " + stamp


def _fromLineStarts(text, start=0, end=None):
    """
    The offsets of the lines of C{text[start:end]} that match C{^>*From }
    (offsets in C{text}; C{start} is a line start).

    Found with C{bytes.find} rather than a multi-line regular expression:
    on a 10 MiB message that is milliseconds instead of a tenth of a second
    holding the GIL (and a window at a time, L{findInWindows}).
    """
    if end is None:
        end = len(text)
    found = []
    i = findInWindows(text, b"From ", start, end)
    while i != -1:
        j = i
        while j > start and text[j - 1] == 0x3E:  # ">"
            j -= 1
        if j == start or text[j - 1] == 0x0A:  # at the start of a line
            found.append(j)
        i = findInWindows(text, b"From ", i + 5, end)
    return found


def _splice(text, offsets, insert, start=0, end=None):
    """
    C{text[start:end]} with C{insert} put at each offset (or, when
    C{insert} is empty, the byte at each offset removed).
    """
    view = memoryview(text)  # slices without copies; join copies once
    pieces = []
    last = start
    for offset in offsets:
        pieces.append(view[last:offset])
        pieces.append(insert)
        last = offset if insert else offset + 1
    pieces.append(view[last:end])
    return b"".join(pieces)


def quoteFrom(text):
    """
    mboxrd quoting: every line matching C{^>*From } gets one more C{>}.
    Returns C{text} itself (no copy) when there is nothing to quote.
    """
    offsets = _fromLineStarts(text)
    if not offsets:
        return text
    return _splice(text, offsets, b">")


def unquoteFrom(text, start=0, end=None):
    """
    Undo L{quoteFrom} on C{text[start:end]}: every line matching
    C{^>+From } loses one C{>}.  (For an mboxo file this also restores its
    quoted C{From } lines.)  Returns C{text} itself when it is all that is
    asked for and there is nothing to undo; else one copy.
    """
    offsets = [j for j in _fromLineStarts(text, start, end) if text[j] == 0x3E]
    if not offsets:
        if start == 0 and end in (None, len(text)):
            return text
        return text[start:end]
    return _splice(text, offsets, b"", start, end)


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
        then the body's blocks), each but the last ending at the end of a
        line; all are normalised like a body (the last may lack its final
        line ending).
    """
    chunks = [separator + b"\n"]
    for part in parts[:-1]:
        if b"\r\n" in part:
            part = normaliseBody(part)
        chunks.append(quoteFrom(part))
    chunks.append(quoteFrom(normaliseBody(parts[-1])) if parts else b"")
    chunks.append(b"\n")
    return chunks


#: The header line that carries a message's stable id in a spool file: the
#: first line after the separator, hidden from readers (docs/mailbox-ids.rst).
ID_HEADER = b"X-Simplemail-Id: "

_ID = re.compile(rb"[A-Za-z0-9_-]{1,64}\Z")


def idHeaderLine(msgid):
    """
    The id header line (with its line feed) for C{msgid}.

    @type msgid: L{str}
    @rtype: L{bytes}
    """
    return ID_HEADER + msgid.encode("ascii") + b"\n"


def recordId(record):
    """
    The stable id an mbox record carries in its first header line, or
    L{None} when it has none (another program wrote it) or it is not a
    valid id.

    @param record: the record, or at least its first two lines.
    @type record: L{bytes}
    @rtype: L{str} or L{None}
    """
    newline = record.find(b"\n")
    if newline == -1 or not record.startswith(ID_HEADER, newline + 1):
        return None
    start = newline + 1 + len(ID_HEADER)
    end = record.find(b"\n", start, start + 80)
    if end == -1:
        return None
    value = record[start:end].rstrip(b"\r")
    if not _ID.match(value):
        return None
    return value.decode("ascii")


def fromMboxRecord(record):
    """
    The RFC 5322 text of one mbox record (as L{toMboxRecord} or another mail
    tool wrote it): the separator line, the id header line (if any) and the
    trailing blank line removed, C{From } quoting undone.
    """
    newline = record.find(b"\n")
    if newline == -1:
        return b""
    if record.startswith(ID_HEADER, newline + 1):
        after = record.find(b"\n", newline + 1)
        if after != -1:
            newline = after
    end = len(record)
    if record.endswith(b"\n\n"):
        end -= 1
    elif record.endswith(b"\r\n\r\n"):
        end -= 2
    # One copy of what may be a large message, not a slice and then more.
    return unquoteFrom(record, newline + 1, max(end, newline + 1))


#: The headers of a submitted message (C{SENDM}) that are kept; the server
#: writes C{From:}, C{To:}, C{Date:} and C{Message-ID:} itself and drops
#: every other header.
KEPT_HEADERS = frozenset(
    [b"subject", b"mime-version", b"in-reply-to", b"references"]
)

#: The longest header section a submitted message may have (Postfix's
#: header_size_limit is 100 KiB): parsing a longer one would hold the
#: server up for no mail anyone writes.
MAX_HEADER_SECTION = 256 * 1024

#: A header field line as the one reader (the C{email} package) takes it: a
#: name of printable ASCII other than C{:}, then C{:} with no white space
#: before it (RFC 5322's obsolete syntax allows some; the reader does not).
HEADER_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def _isKept(name):
    name = name.lower()
    return name in KEPT_HEADERS or name.startswith(b"content-")


def splitHeaderSection(blocks):
    """
    Split a submitted message, given as consecutive pieces of whole lines
    (LF line endings), into its header section and its body.

    @param blocks: a L{list} of bytes-like pieces, each but the last ending
        at the end of a line.
    @return: a 2-tuple: the header section (L{bytes}, its lines each
        ending with LF, without the empty line) and the body as a L{list}
        of pieces (the same objects where possible: a large body is not
        copied).  A message without an empty line is all header section.
    """
    head = bytearray()
    for i, block in enumerate(blocks):
        block = bytes(block)
        if block.startswith(b"\n"):
            # Pieces end at line ends: the empty line starts this one.
            return bytes(head), [block[1:]] + list(blocks[i + 1 :])
        at = block.find(b"\n\n")
        if at != -1:
            head += block[: at + 1]
            return bytes(head), [block[at + 2 :]] + list(blocks[i + 1 :])
        head += block
        if len(head) > MAX_HEADER_SECTION:
            break  # parseHeaderSection refuses it; no need to look further.
    return bytes(head), []


def parseHeaderSection(head):
    """
    Check a submitted header section and cut it into fields.

    @param head: the header lines (LF endings; the last may lack its LF),
        without the empty line.
    @return: a L{list} of C{(name, field)}: the field's name (L{bytes}) and
        its lines as sent (continuation lines included, each ending with
        LF).
    @raise MalformedMessage: a line holds a CR (not part of its line
        ending), or is neither a header field nor the continuation of one,
        or the C{email} package finds the section broken.
    """
    from email import errors as emailErrors
    from email.parser import BytesParser
    from email.policy import compat32

    from twisted_mail.errors import MalformedMessage

    if len(head) > MAX_HEADER_SECTION:
        raise MalformedMessage(
            "it is longer than {} bytes".format(MAX_HEADER_SECTION))
    if b"\r" in head:
        # A CR not before a LF: the email package (and many mail programs)
        # would end a line there, and the header filter below would not.
        # Refused, as Postfix-style strictness: no reader may see a header
        # the filter did not (docs/protocol.rst).
        raise MalformedMessage("a header line holds a bare CR")
    fields = []
    lines = head.split(b"\n") if head else []
    if lines and not lines[-1]:
        lines.pop()
    # A last line without its LF (a message that ends in its header
    # section) is checked like any other and gets one.
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MalformedMessage("the first header line is a continuation")
            name, text = fields[-1]
            fields[-1] = (name, text + line + b"\n")
        elif HEADER_FIELD.match(line):
            fields.append((line.split(b":", 1)[0], line + b"\n"))
        else:
            raise MalformedMessage("not a header line: " + escapeControls(line.decode("utf-8", "replace"), keep="", limit=40))
    try:
        # The whole parser, not only the header one: with a multipart
        # Content-Type it reads the parameters too, and some RFC 2231
        # ones ('boundary*;x*') make it raise (CPython's email.utils).
        parsed = BytesParser(policy=compat32).parsebytes(head + b"\n")
    except Exception:
        raise MalformedMessage("the email package cannot read it")
    for defect in parsed.defects:
        if isinstance(
            defect,
            (
                emailErrors.MissingHeaderBodySeparatorDefect,
                emailErrors.FirstHeaderLineIsContinuationDefect,
                emailErrors.MisplacedEnvelopeHeaderDefect,
            ),
        ):
            raise MalformedMessage("the email package cannot read it")
    return fields


def buildSubmittedHeaders(sender, receiver, domain, head, when=None, messageId=None):
    """
    The header section the server stores for a message submitted whole
    (C{SENDM}): its own C{From:}, C{To:}, C{Date:} and C{Message-ID:}, then
    the submitted C{Subject:}, C{MIME-Version:}, C{Content-*:},
    C{In-Reply-To:} and C{References:} fields as sent, then the empty line.

    @param head: the submitted header section (see L{splitHeaderSection}).
    @rtype: L{bytes}
    @raise MalformedMessage: see L{parseHeaderSection}.
    """
    fields = parseHeaderSection(head)
    ours = buildHeaders(sender, receiver, domain, when, messageId)[:-1]
    kept = b"".join(text for name, text in fields if _isKept(name))
    return ours + kept + b"\n"


def buildSubmittedMessage(sender, receiver, domain, text, when=None, messageId=None):
    """
    The RFC 5322 text stored for C{text}, a whole message submitted by
    C{sender} for C{receiver} (see L{buildSubmittedHeaders}).

    @param text: the submitted message, L{bytes} or a L{list} of pieces
        of whole lines.
    @return: the message as a L{list} of pieces (the body's pieces kept as
        given, not copied), for L{IMailStore.deliverMessage}.
    @raise MalformedMessage: its header section does not parse.
    """
    blocks = [text] if isinstance(text, (bytes, bytearray)) else text
    blocks = [normaliseBody(bytes(b)) if b"\r" in b else b for b in blocks]
    head, body = splitHeaderSection(blocks)
    headers = buildSubmittedHeaders(sender, receiver, domain, head, when, messageId)
    return [headers] + [piece for piece in body if piece]


_SUBJECT_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def composeMessage(subject, body):
    """
    A whole RFC 5322 message for C{SENDM}, as the console sends it:
    L{textMessageContent}, refusing a subject with control characters (the
    console says so rather than change what was typed).

    @type subject: L{str}
    @param body: the text as UTF-8 L{bytes}, any line endings.
    @rtype: L{bytes}
    @raise ValueError: the subject holds control characters (a line break
        would start another header).
    """
    if _SUBJECT_CONTROL.search(subject):
        raise ValueError("a subject cannot hold control characters")
    return textMessageContent(subject, body)


_HEADER_CONTROLS = re.compile("[\x00-\x1f\x7f]")


def encodeSubject(subject):
    """
    A C{Subject:} header value for C{subject} (L{str}): control characters
    (line ends above all, so that no header can be smuggled in) become
    spaces; text that is not ASCII, or holds C{=?}, is encoded as RFC 2047
    words in UTF-8; long values are folded.

    @rtype: L{str} (ASCII), without a line ending.
    """
    from email.header import Header

    subject = _HEADER_CONTROLS.sub(" ", subject).strip()
    # ASCII that looks like an encoded word ("=?utf-8?q?...?=") is itself
    # encoded, or a reader would decode it into something else.
    if subject.isascii() and "=?" not in subject:
        return Header(subject, "us-ascii", header_name="Subject").encode(linesep="\n")
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\n")


def textMessageContent(subject, text):
    """
    The part of a plain-text message that its writer chooses, as C{SENDM}
    takes it after its own headers: C{Subject:} (L{encodeSubject}; none
    when C{subject} is empty), C{MIME-Version:}, C{Content-Type: text/plain;
    charset=...}, C{Content-Transfer-Encoding:}, a blank line, then the
    text.  ASCII text with short lines goes as C{7bit}, other text as UTF-8,
    C{8bit} when every line is at most 998 octets and has no control
    characters but tab, else quoted-printable.

    @type subject: L{str}
    @param text: the text, L{str} or UTF-8 L{bytes} (any line endings).
    @rtype: L{bytes}, LF line endings.
    """
    import quopri

    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    data = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    lines = data.split(b"\n")
    plain = all(len(line) <= 998 for line in lines) and not re.search(
        rb"[\x00-\x08\x0b-\x1f\x7f]", data
    )
    charset = "utf-8"
    if plain:
        encoding = "7bit" if data.isascii() else "8bit"
    else:
        encoding = "quoted-printable"
        data = quopri.encodestring(data)
    headers = []
    subject = encodeSubject(subject or "")
    if subject:
        headers.append("Subject: " + subject)
    headers += [
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=" + charset,
        "Content-Transfer-Encoding: " + encoding,
    ]
    return ("\n".join(headers) + "\n\n").encode("ascii") + data


def buildMessageWithSubject(sender, receiver, subject, text, domain, when=None,
                            messageId=None):
    """
    The RFC 5322 text of a plain-text message with a subject, from
    C{sender} to C{receiver}, as C{SENDM} stores it: L{textMessageContent}
    submitted through L{buildSubmittedMessage} (the server's C{From:},
    C{To:}, C{Date:} and C{Message-ID:}, then the kept headers).  What the
    web API's send stores.

    @param subject: the subject (L{str}, any characters; empty for none).
    @param text: the text (L{str}).
    @rtype: L{bytes}, LF line endings.
    """
    return b"".join(buildSubmittedMessage(
        sender, receiver, domain, textMessageContent(subject, text), when, messageId))
