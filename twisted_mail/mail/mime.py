"""
Reading a message: the one place that turns RFC 5322 / MIME text into what
people see.  Pure functions on bytes and values, on the stdlib C{email}
package; no Twisted.  The stores' summaries (POP3, C{LSTM}, the web list),
the web API's message view and the console's C{Read} all come from here.

Nothing here raises on a malformed message: a header that does not decode
is shown as it stands, a MIME structure that does not parse is shown as one
text part.  Callers run it off the reactor: a large message costs about its
size to parse.
"""

import email
import email.header
import email.message
import email.utils
import re
from email import policy
from html.parser import HTMLParser

from twisted_mail.mail.dates import isoDate, isoTime
from twisted_mail.wire import oneLine

#: The longest snippet a summary holds, in characters.
SNIPPET_LENGTH = 160

#: Parts beyond this many are not listed (a hostile message may hold many).
MAX_PARTS = 1000

_SPACES = re.compile(r"\s+")

#: A MIME type as RFC 2045 writes it (lower case, as the C{email} package
#: gives it): C{type/subtype}, each a token.
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`{|}~-]+/[a-z0-9!#$%&'*+.^_`{|}~-]+\Z")
_compat = policy.compat32


class Listing:
    """
    A page of a mailbox listing.

    @ivar total: how many messages the mailbox holds (not deleted).
    @ivar messages: the L{MessageSummary} of each message of the page.
    """

    def __init__(self, total, messages):
        self.total = total
        self.messages = messages

    def __repr__(self):
        return "<Listing {} of {}>".format(len(self.messages), self.total)


class MessageSummary:
    """
    What a listing shows of one message.

    @ivar id: the stable id (see docs/mailbox-ids.rst).
    @ivar size: the POP3 size: the octets of the text with CRLF line ends,
        before dot-stuffing.
    @ivar arrived: when it was stored (POSIX seconds; the mbox C{From }
        line's time).
    @ivar sender: the decoded C{From} header, display name included.
    @ivar to: the decoded C{To} header.
    @ivar subject: the decoded C{Subject} header.
    @ivar date: the C{Date} header as an ISO 8601 UTC time, or the arrival
        time when it has none that parses.
    @ivar snippet: the start of the text, white space collapsed.
    @ivar attachments: the number of attachments.
    @ivar uid: its UID in its folder (RFC 3501 2.3.1.1), or 0 where the store
        has not given one.
    @ivar flags: its flags and keywords, a L{frozenset} of L{str}
        (C{"\\Seen"}, C{"$Forwarded"}; L{twisted_mail.mail.model}).
    @ivar folder: the canonical name of its folder.
    """

    #: Its fields, in order.
    FIELDS = ("id", "size", "arrived", "sender", "to", "subject", "date",
              "snippet", "attachments", "uid", "flags", "folder")

    __slots__ = tuple(f for f in FIELDS if f != "date") + ("_date",)

    def __init__(self, id, size, arrived, sender="", to="", subject="", date="",
                 snippet="", attachments=0, uid=0, flags=frozenset(), folder="INBOX"):
        self.id = id
        self.size = size
        self.arrived = arrived
        self.sender = sender
        self.to = to
        self.subject = subject
        self._date = date
        self.snippet = snippet
        self.attachments = attachments
        self.uid = uid
        self.flags = frozenset(flags)
        self.folder = folder

    @property
    def date(self):
        # Made from the arrival time when first asked for: a light listing
        # of many messages (IMAP SELECT) never asks.
        date = self._date
        if not date:
            date = self._date = isoTime(self.arrived)
        return date

    def replace(self, **changes):
        """
        A copy with some fields changed (C{flags}, C{uid}, C{folder}).
        """
        fields = {k: getattr(self, k) for k in self.FIELDS}
        fields.update(changes)
        return MessageSummary(**fields)

    def asDict(self):
        """
        The JSON form of the web API: C{id, from, to, subject, date, size,
        snippet, attachments}.
        """
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "subject": self.subject,
            "date": self.date,
            "size": self.size,
            "snippet": self.snippet,
            "attachments": self.attachments,
        }

    def __eq__(self, other):
        if not isinstance(other, MessageSummary):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.FIELDS)

    def __repr__(self):
        return "<MessageSummary {} {} {!r}>".format(self.id, self.size, self.subject)


def popSize(text):
    """
    The POP3 size of a message text with LF line ends: its octets once each
    line ends with CRLF (dot-stuffing not counted, as Dovecot counts).
    """
    size = len(text) + text.count(b"\n")
    if text and not text.endswith(b"\n"):
        size += 2
    return size


def decodeHeader(value):
    """
    A header value decoded from RFC 2047 encoded words (and from raw 8-bit
    UTF-8 or Latin-1), folded lines joined.  Never raises.

    Other control characters are kept (an encoded word may hold any, raw
    Latin-1 holds C1 ones): a reader shows them escaped; a summary's
    fields have them as spaces (L{ParsedMessage.summaryFields}).

    @type value: L{str} (as the C{email} package's compat32 policy gives
        it), L{bytes} or L{None}.
    @rtype: L{str}
    """
    if value is None:
        return ""
    try:
        if isinstance(value, bytes):
            value = _bytesToText(value)
        if isinstance(value, email.header.Header):
            # 8-bit bytes in a header: the parser wraps them in a Header.
            pieces = email.header.decode_header(value)
        else:
            value = value.replace("\r", "").replace("\n", " ")
            if not value.isascii() and any("\udc80" <= c <= "\udcff" for c in value):
                value = _bytesToText(value.encode("ascii", "surrogateescape"))
            if "=?" not in value:
                # (A split collapses the same white space as _SPACES.)
                return " ".join(value.split())
            pieces = email.header.decode_header(value)
        out = []
        for piece, charset in pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif charset is None:
                # Unencoded text between encoded words, as decode_header
                # gives it back.
                out.append(piece.decode("raw-unicode-escape", "replace"))
            else:
                out.append(_decodeBytes(piece, charset))
        return _SPACES.sub(" ", "".join(out)).strip()
    except Exception:
        return _SPACES.sub(" ", str(value)).strip()




def _bytesToText(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decodeBytes(data, charset):
    charset = (charset or "utf-8").strip().lower()
    if charset in ("unknown-8bit", "x-unknown"):
        return _bytesToText(data)
    try:
        return data.decode(charset, "replace")
    except (LookupError, TypeError, ValueError):
        # ValueError: a charset name with a NUL in it.
        return _bytesToText(data)


def parseBytes(text):
    """
    The C{email} message of C{text} (compat32: every header kept as sent).
    """
    # Most mail is one part: the parser then only joins the body's lines
    # back together, at about twice the cost of its headers.  So the
    # headers alone are parsed, when they are plainly headers, and the
    # body given as the payload it would have made; anything else (no
    # blank line, a line the parser would take for the body's start, a CR,
    # a multipart or message/* type) takes the parser's whole way.
    return _messageOf(text, _plainParts(text))


def _messageOf(text, plain):
    """
    L{parseBytes} of C{text}, whose L{_plainParts} are C{plain}.
    """
    if plain is not None:
        message = email.message.Message(policy=_compat)
        message._headers = plain[0]
        if message.get_content_maintype() not in ("multipart", "message"):
            message.set_payload(plain[1].decode("ascii", "surrogateescape"))
            return message
    return email.message_from_bytes(text, policy=_compat)


def _plainParts(text):
    """
    The C{(name, value)} headers the C{email} parser (compat32) would make
    of C{text} and its body's bytes, when its header is plainly headers;
    else L{None}.
    """
    end = text.find(b"\n\n")
    if end > 0:
        head = text[:end + 1]
        if b"\r" not in head and head[0] not in b" \t" and \
                all(_HEADER_LINE.match(line) for line in head[:-1].split(b"\n")):
            return (_plainHeaders(head.decode("ascii", "surrogateescape").split("\n")[:-1]),
                    text[end + 2:])
    return None


def _plainHeaders(lines):
    """
    The C{(name, value)} list the C{email} parser (compat32) makes of
    header lines that are plainly headers (each a name and a colon, or a
    continuation after one; no line ends), without its machinery: its
    C{header_source_parse} on each header's lines, line ends restored.
    """
    headers = []
    for line in lines:
        if line[0] in " \t":
            headers[-1].append(line)
        else:
            headers.append([line])
    found = []
    for each in headers:
        name, value = each[0].split(":", 1)
        value = value.lstrip(" \t")
        if len(each) > 1:
            value = "\n".join([value] + each[1:])
        found.append((name, value.rstrip("\r\n")))
    return found


#: A line the C{email} parser takes as a header or a header's continuation
#: (stricter: a name of at least one character).
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:|[ \t]")


class Part:
    """
    One leaf part of a message that is not its text: an attachment or an
    inline non-text part.

    @ivar part: its number, from 1, in the order of the message.
    @ivar filename: its file name (decoded, path removed), or a made-up one.
    @ivar contentType: its MIME type, e.g. C{application/pdf}.
    @ivar size: the size of its decoded content, in bytes.
    """

    def __init__(self, part, filename, contentType, size, message):
        self.part = part
        self.filename = filename
        self.contentType = contentType
        self.size = size
        self._message = message

    def content(self):
        """
        The decoded content (base64 and quoted-printable undone).

        @rtype: L{bytes}
        """
        return _payload(self._message)

    def asDict(self):
        return {
            "part": self.part,
            "filename": self.filename,
            "contentType": self.contentType,
            "size": self.size,
        }


class ParsedMessage:
    """
    A message as a reader sees it.

    @ivar headers: every header as C{(name, decoded value)}, in order.
    @ivar sender: the decoded C{From}.
    @ivar to: the decoded C{To}.
    @ivar cc: the decoded C{Cc}.
    @ivar subject: the decoded C{Subject}.
    @ivar date: the C{Date} header as sent.
    @ivar text: the plain text (decoded), or the HTML part turned into text
        when there is no plain part.
    @ivar html: the HTML part (decoded), or L{None}.
    @ivar parts: the attachments, a L{list} of L{Part}.
    @ivar problems: what could not be read well, one short text each (a
        damaged MIME structure, an unknown charset), for a reader's note.
    """

    def __init__(self):
        self.headers = []
        self.sender = self.to = self.cc = self.subject = self.date = ""
        self.text = ""
        self.html = None
        self.parts = []
        self.problems = []

    def summaryFields(self):
        """
        What a listing shows: printable one-line text (each of the headers'
        control characters a space, as C{LSTM} shows them), the date in ISO
        8601, the number of parts.
        """
        return {
            "sender": oneLine(self.sender),
            "to": oneLine(self.to),
            "subject": oneLine(self.subject),
            "date": isoDate(self.date),
            "snippet": snippet(self.text),
            "attachments": len(self.parts),
        }


def snippet(text, length=SNIPPET_LENGTH):
    """
    The start of C{text} on one line: white space collapsed, control
    characters removed.
    """
    # White space collapsed by a split (a regular expression costs
    # several times as much); the control characters that are not white
    # space, rare, made spaces and collapsed too: the same as
    # C{_SPACES.sub(" ", oneLine(text)).strip()}.
    text = " ".join(text[: length * 4].split())
    if not text.isprintable():
        text = " ".join(oneLine(text).split())
    if len(text) > length:
        text = text[: length - 1].rstrip() + "\u2026"
    return text


def _payload(part):
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if data is None:
        payload = part.get_payload()
        if isinstance(payload, str):
            data = payload.encode("utf-8", "surrogateescape")
        else:
            data = b""
    return data


def _partText(part, looks):
    charset = looks.charset(part)
    return _decodeBytes(_payload(part), None if charset is _FAILED else charset)


#: What L{_Looks} keeps for a question the part's header could not answer.
_FAILED = object()


class _Looks:
    """
    The content type and charset of the parts of one message, each asked
    of the C{email} package once (its parameter parse was a tenth of
    parsing a MIME message, asked two or three times a part).  Either is
    L{_FAILED} where the package raised.
    """

    def __init__(self):
        self._types = {}
        self._charsets = {}

    def contentType(self, part):
        return self._ask(self._types, part, lambda part: part.get_content_type())

    def charset(self, part):
        return self._ask(self._charsets, part, lambda part: part.get_content_charset())

    def _ask(self, answers, part, question):
        key = id(part)
        if key not in answers:
            try:
                answers[key] = question(part)
            except Exception:
                answers[key] = _FAILED
        return answers[key]


def _filename(part):
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        return None
    if "\ufffd" in str(name):
        name = _eightBitFilename(part) or name
    name = decodeHeader(name if isinstance(name, str) else str(name))
    # Only the last path component, nothing that names another place.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = oneLine(name).strip().lstrip(".")
    return name or None


def _disposition(part):
    """
    The disposition type of C{part} (C{attachment}, C{inline}), lower case,
    or C{""}.
    """
    try:
        # With 8-bit bytes in it the parser gives a Header, not a str.
        value = str(part.get("Content-Disposition") or "")
    except Exception:
        return ""
    return value.split(";")[0].strip().lower()


def _eightBitFilename(part):
    """
    The file name of a part whose headers hold raw 8-bit text (UTF-8 or
    Latin-1), which the C{email} package gives as replacement characters.
    """
    for header, value in part.raw_items():
        if str(header).lower() not in ("content-disposition", "content-type"):
            continue
        if isinstance(value, str):
            value = _bytesToText(value.encode("ascii", "surrogateescape"))
        holder = email.message.Message()
        holder[str(header)] = str(value)
        try:
            name = holder.get_filename()
        except Exception:
            name = None
        if name and "\ufffd" not in name:
            return name
    return None


def _leaves(message):
    """
    The leaf parts of C{message} in order, without recursion (a hostile
    message may nest deeply), at most L{MAX_PARTS}.
    """
    stack = [message]
    found = []
    while stack and len(found) < MAX_PARTS:
        part = stack.pop()
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed(payload))
        else:
            found.append(part)
    return found


#: Whether L{parseMessage} takes its shortcut for a message without MIME
#: headers (off only in the test that checks it against the whole way).
_SHORTCUT = True


def parseMessage(text):
    """
    Read C{text} (RFC 5322 bytes) as a reader sees it.  Never raises.

    @rtype: L{ParsedMessage}
    """
    parsed = ParsedMessage()
    # The usual shape of mail (what SEND and most clients send): a plain
    # header without MIME headers, so (RFC 2045 section 5.2) one
    # text/plain part in US-ASCII, no attachment, nothing to note: what
    # the walk below finds, without it, nor the C{email} package.
    # (The header is read once: a message with MIME headers gives the
    # parser what was read.)
    try:
        pieces = _plainParts(text)
        quick = _SHORTCUT and pieces is not None and not any(
            name[:8].lower() == "content-" for name, _ in pieces[0])
        message = None if quick else _messageOf(text, pieces)
    except Exception:
        parsed.text = _bytesToText(text)
        return parsed
    items = pieces[0] if quick else message.raw_items()
    # Raw values: 8-bit bytes kept (as surrogates) for decodeHeader.
    first = {}
    for name, value in items:
        value = decodeHeader(value)
        parsed.headers.append((oneLine(str(name)), value))
        first.setdefault(str(name).lower(), value)
    parsed.sender = first.get("from", "")
    parsed.to = first.get("to", "")
    parsed.cc = first.get("cc", "")
    parsed.subject = first.get("subject", "")
    parsed.date = first.get("date", "")
    if quick:
        parsed.text = _decodeBytes(pieces[1], None)
        return parsed
    if _SHORTCUT and not message.defects and not message.is_multipart() and not any(
            name[:8].lower() == "content-" for name in message.keys()):
        # The same shape, in a header the parser had to read.
        parsed.text = _decodeBytes(_payload(message), None)
        return parsed
    plain = []
    html = []
    try:
        leaves = _leaves(message)
    except RecursionError:
        leaves = [message]
    looks = _Looks()
    _noteProblems(parsed, message, leaves, looks)
    number = 0
    for leaf in leaves:
        ctype = looks.contentType(leaf)
        if ctype is _FAILED:
            ctype = "application/octet-stream"
        if not _CONTENT_TYPE.match(ctype):
            # Control characters or spaces in it: not a type anyone can use.
            ctype = "application/octet-stream"
        disposition = _disposition(leaf)
        filename = _filename(leaf)
        isBody = disposition != "attachment" and filename is None
        if isBody and ctype == "text/plain":
            plain.append(_partText(leaf, looks))
            continue
        if isBody and ctype == "text/html":
            html.append(_partText(leaf, looks))
            continue
        if ctype.startswith("multipart/"):
            # A multipart whose parts could not be found: its text as it is.
            plain.append(_bytesToText(_payload(leaf)))
            continue
        if leaf is message and not message.is_multipart() and ctype.startswith("text/"):
            plain.append(_partText(leaf, looks))
            continue
        number += 1
        content = _payload(leaf)
        if filename is None:
            filename = "part-{}{}".format(number, _extension(ctype))
        parsed.parts.append(Part(number, filename, ctype, len(content), leaf))
    parsed.html = "\n".join(html) if html else None
    if plain:
        parsed.text = "\n".join(plain)
    elif html:
        parsed.text = htmlToText(parsed.html)
    return parsed


_STRUCTURE_DEFECTS = (
    "NoBoundaryInMultipartDefect",
    "StartBoundaryNotFoundDefect",
    "CloseBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
    "InvalidBase64PaddingDefect",
    "InvalidBase64CharactersDefect",
    "InvalidBase64LengthDefect",
)


def _noteProblems(parsed, message, leaves, looks):
    """
    Note in C{parsed.problems} a damaged MIME structure and text in a
    charset Python does not know.
    """
    import codecs

    damaged = False
    unknown = []
    for part in [message] + leaves:
        for defect in getattr(part, "defects", ()):
            if type(defect).__name__ in _STRUCTURE_DEFECTS:
                damaged = True
        ctype = looks.contentType(part)
        if ctype is _FAILED or ctype.split("/")[0] != "text":
            continue
        charset = looks.charset(part)
        if charset is _FAILED:
            continue
        if charset and charset not in ("unknown-8bit", "x-unknown"):
            try:
                codecs.lookup(charset)
            except (LookupError, ValueError):  # ValueError: a NUL in the name
                if charset not in unknown:
                    unknown.append(charset)
    if damaged:
        parsed.problems.append("the MIME structure is damaged; shown as well as it can be")
    for charset in unknown:
        parsed.problems.append(
            "unknown charset {}; its text is shown as UTF-8 or Latin-1".format(
                oneLine(charset)[:40])
        )


def _extension(ctype):
    return {
        "text/plain": ".txt",
        "text/html": ".html",
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "image/gif": ".gif",
        "application/pdf": ".pdf",
        "message/rfc822": ".eml",
    }.get(ctype, ".bin")


def summarize(text, msgid, arrived):
    """
    The L{MessageSummary} of a message.

    @param text: the message as READM gives it (LF line ends).
    @param msgid: its stable id.
    @param arrived: when it was stored (POSIX seconds).
    """
    fields = parseMessage(text).summaryFields()
    return MessageSummary(msgid, popSize(text), arrived, **fields)


class _TextFromHTML(HTMLParser):
    _BLOCK = frozenset(
        "p div br li tr h1 h2 h3 h4 h5 h6 blockquote pre table ul ol hr section "
        "article header footer".split())
    _SKIP = frozenset(("script", "style", "head", "title"))

    def __init__(self):
        HTMLParser.__init__(self, convert_charrefs=True)
        self.out = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.out.append("\n")
        if tag == "li":
            self.out.append("* ")

    def handle_endtag(self, tag):
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self._skipping:
            self.out.append(_SPACES.sub(" ", data))


def htmlToText(html):
    """
    Readable text from HTML: scripts and styles dropped, block elements on
    lines of their own, entities decoded.  Never raises.
    """
    parser = _TextFromHTML()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        pass
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
