"""
The MIME structure of a message as IMAP shows it (RFC 3501 6.4.5, 7.4.2):
parts found by their byte offsets in the message text with CRLF line ends,
so that C{BODY[1.2]}, C{RFC822.SIZE} and the sizes in C{BODYSTRUCTURE}
agree octet for octet; C{ENVELOPE} and C{BODYSTRUCTURE} written as IMAP
lists.  Header fields and their parameters are read by the stdlib C{email}
package (compat32, as L{twisted_mail.mail.mime} reads them); nothing here
decodes text for display, since IMAP hands the client what was sent.
Never raises on a malformed message.
"""

import email.utils
import re
from email.parser import BytesHeaderParser
from email import policy

#: Parts nested deeper than this are shown as leaves (a hostile message).
MAX_NESTING = 40

#: What an ENVELOPE address shows for the part of an address its header
#: lacks (C{To: bob}, C{To: Al <>}), as Dovecot shows it: never NIL.
MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"

#: At most this many parts in one multipart are shown.
MAX_CHILDREN = 1000

_headerParser = BytesHeaderParser(policy=policy.compat32)
_FIELD = re.compile(rb"([^:\s]+)[ \t]*:")
_UNSAFE = re.compile(rb"[^\x20-\x7e]")

# The common address forms, read without the stdlib's general parser (the
# same answer as email.utils.getaddresses, in a seventh of the time): a bare
# dot-atom address, or one in angle brackets after a display name of atoms
# and spaces.  Anything else (quotes, comments, groups, lists) goes to it.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_ADDRESS = r"[{0}]+(?:\.[{0}]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*".format(_ATEXT)
_SIMPLE_ADDRESS = re.compile(
    r"(?:([{0}][ {0}]*)?[ \t]*<({1})>|({1}))\Z".format(_ATEXT, _ADDRESS))


def crlf(text):
    """
    A stored message (LF line ends) as IMAP counts it: CRLF line ends, and
    one after the last line, as L{twisted_mail.mail.mime.popSize} counts.
    """
    if b"\r" in text:
        text = text.replace(b"\r\n", b"\n")
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


def _headerEnd(text, start, end):
    """
    Where the header section of the entity at C{text[start:end]} ends (just
    past its blank line), and where its body starts.
    """
    if text.startswith(b"\r\n", start, end):
        return start + 2
    blank = text.find(b"\r\n\r\n", start, end)
    if blank == -1:
        return end
    return blank + 4


def _firstFields(header):
    """
    The first value of each field of a header section, by lower-case
    name: unfolded, stripped, bytes as ASCII with surrogates.
    """
    fields = {}
    name = None
    value = []
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name is not None:
            value.append(line)
            continue
        if name is not None and name not in fields:
            fields[name] = b"".join(value).strip().decode("ascii", "surrogateescape")
        name = None
        colon = line.find(b":")
        if colon > 0:
            name = line[:colon].strip().decode("ascii", "surrogateescape").lower()
            value = [line[colon + 1:]]
    if name is not None and name not in fields:
        fields[name] = b"".join(value).strip().decode("ascii", "surrogateescape")
    return fields


class Entity:
    """
    One MIME entity: a message or a body part.

    @ivar text: the whole message text (CRLF).
    @ivar start: where its header starts.
    @ivar bodyStart: where its body starts.
    @ivar end: where it ends.
    """

    def __init__(self, text, start, end, depth=0, defaultType=("text", "plain")):
        self.text = text
        self.start = start
        self.end = end
        self.bodyStart = _headerEnd(text, start, end)
        self.depth = depth
        self._defaultType = defaultType
        self._headers = None
        self._fields = None
        self._children = None
        self._encapsulated = None

    # -- header fields

    @property
    def headerBytes(self):
        return self.text[self.start:self.bodyStart]

    @property
    def body(self):
        return self.text[self.bodyStart:self.end]

    @property
    def headers(self):
        if self._headers is None:
            try:
                self._headers = _headerParser.parsebytes(self.headerBytes)
            except Exception:
                self._headers = _headerParser.parsebytes(b"")
        return self._headers

    def header(self, name):
        """
        The first C{name} field's value as sent (unfolded; 8-bit bytes kept
        as surrogates, which L{_raw} turns back into bytes), or L{None}.
        """
        if self._fields is None:
            self._fields = _firstFields(self.headerBytes)
        return self._fields.get(name.lower())

    @property
    def contentType(self):
        value = self.header("Content-Type")
        if value and "/" in value.split(";", 1)[0]:
            try:
                maintype, _, subtype = self.headers.get_content_type().partition("/")
            except Exception:
                return self._defaultType
            if maintype and subtype:
                return maintype, subtype
        return self._defaultType

    def params(self):
        """
        The Content-Type parameters, C{(name, value)} pairs.
        """
        if not self.header("Content-Type"):
            return []
        try:
            params = self.headers.get_params(failobj=[]) or []
        except Exception:
            return []
        out = []
        for name, value in params[1:]:
            if isinstance(value, tuple):
                value = email.utils.collapse_rfc2231_value(value)
            out.append((name, value))
        return out

    def param(self, name):
        for key, value in self.params():
            if key.lower() == name:
                return value
        return None

    # -- structure

    @property
    def isMultipart(self):
        return (self.contentType[0].lower() == "multipart" and self.depth < MAX_NESTING
                and bool(self.param("boundary")))

    @property
    def isMessage(self):
        return (self.contentType[0].lower() == "message"
                and self.contentType[1].lower() in ("rfc822", "global")
                and self.depth < MAX_NESTING)

    @property
    def children(self):
        if self._children is None:
            self._children = self._findChildren() if self.isMultipart else []
        return self._children

    def _findChildren(self):
        boundary = b"--" + self.param("boundary").encode("utf-8", "replace")
        text, end = self.text, self.end
        digest = self.contentType[1].lower() == "digest"
        childType = ("message", "rfc822") if digest else ("text", "plain")
        delimiters = []
        pos = self.bodyStart
        if text.startswith(boundary, pos):
            delimiters.append(pos)
        while len(delimiters) <= MAX_CHILDREN:
            found = text.find(b"\r\n" + boundary, pos, end)
            if found == -1:
                break
            delimiters.append(found + 2)
            pos = found + 2 + len(boundary)
        children = []
        for i, at in enumerate(delimiters):
            after = at + len(boundary)
            if text.startswith(b"--", after):
                break  # the close delimiter
            lineEnd = text.find(b"\r\n", after, end)
            if lineEnd == -1:
                break
            partStart = lineEnd + 2
            partEnd = delimiters[i + 1] - 2 if i + 1 < len(delimiters) else end
            if partEnd < partStart:
                partEnd = partStart
            children.append(Entity(text, partStart, partEnd, self.depth + 1, childType))
        return children

    @property
    def encapsulated(self):
        """
        The message inside a message/rfc822 part.
        """
        if self._encapsulated is None:
            self._encapsulated = Entity(self.text, self.bodyStart, self.end, self.depth + 1)
        return self._encapsulated

    def child(self, number):
        """
        Part C{number} (from 1) of this entity, as IMAP numbers parts, or
        L{None}.
        """
        if self.isMultipart:
            children = self.children
            return children[number - 1] if 0 < number <= len(children) else None
        if self.isMessage:
            return self.encapsulated.child(number)
        return self if number == 1 else None

    def headerFields(self, names, exclude=False):
        """
        The header lines whose names are (or, C{exclude}, are not) among
        C{names} (upper-case L{bytes}), folding kept, and the blank line.
        """
        lines = self.headerBytes.split(b"\r\n")
        out = []
        keep = False
        for line in lines:
            if not line:
                continue
            if line[:1] in (b" ", b"\t"):
                if keep:
                    out.append(line)
                continue
            match = _FIELD.match(line)
            name = match.group(1).upper() if match else None
            keep = name is not None and ((name in names) != exclude)
            if keep:
                out.append(line)
        return b"".join(l + b"\r\n" for l in out) + b"\r\n"


# -- rendering IMAP values


def quote(value):
    """
    An IMAP string for C{value} (L{str} or L{bytes}; L{None} is NIL): quoted
    when it can be, else a literal.
    """
    if value is None:
        return b"NIL"
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if len(value) < 1024 and not _UNSAFE.search(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(value)


def literal(value):
    return b"{%d}\r\n" % len(value) + value


def _list(items):
    return b"(" + b" ".join(items) + b")"


def _raw(value):
    """
    A header value as the bytes that were sent (surrogates back to bytes).
    """
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape")


def _addresses(entity, name):
    value = entity.header(name)
    if not value:
        return None
    out = []
    for group, text in _groups(value):
        if group is not None:
            # RFC 3501 7.4.2: a group is a start marker with its name as the
            # mailbox name, its members, and an end marker.
            out.append(_list([b"NIL", b"NIL", quote(_raw(group)), b"NIL"]))
        for display, address in _addressPairs(text) if text.strip() else ():
            if not (display or address):
                continue
            mailbox, at, host = address.rpartition("@")
            if not at:
                mailbox, host = address, ""
            # A NIL host would make the address a group's start marker
            # (RFC 3501 7.4.2), and the client would read the addresses
            # after it as the group's: what is missing is named, as Dovecot
            # names it.
            out.append(_list([
                quote(_raw(display) or None),
                b"NIL",
                quote(_raw(mailbox) or MISSING_MAILBOX),
                quote(_raw(host) or MISSING_DOMAIN),
            ]))
        if group is not None:
            out.append(b"(NIL NIL NIL NIL)")
    # env-to = "(" 1*address ")": no space between addresses.
    return b"(" + b"".join(out) + b")" if out else None


def _groups(value):
    """
    An address-list field's value cut at its groups (RFC 5322 3.4,
    C{name: member, ...;}): C{(None, addresses)} for text outside a group,
    C{(name, members)} for each group, in order. Colons and semicolons in
    quoted strings, comments and angle brackets do not count.
    """
    if ":" not in value:
        return [(None, value)]
    found = []
    start = 0  # where the text not yet given out starts
    phrase = 0  # where the phrase a colon would end starts (after a comma)
    group = None
    quoted = False
    depth = angle = 0
    i = 0
    while i < len(value):
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif depth:
            pass
        elif c == "<":
            angle += 1
        elif c == ">" and angle:
            angle -= 1
        elif angle:
            pass
        elif c == "," and group is None:
            phrase = i + 1
        elif c == ":" and group is None:
            found.append((None, value[start:phrase]))
            group = _phrase(value[phrase:i])
            start = i + 1
        elif c == ";" and group is not None:
            found.append((group, value[start:i]))
            group = None
            start = phrase = i + 1
        i += 1
    found.append((group, value[start:]))
    return [(g, text) for g, text in found if g is not None or text.strip(" \t,")]


def _phrase(text):
    """
    A group's display name: whitespace collapsed, a quoted string unquoted.
    """
    text = " ".join(text.split())
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _addressPairs(value):
    """
    The C{(display name, address)} pairs of an address-list field's value,
    as C{email.utils.getaddresses} reads them.
    """
    simple = _SIMPLE_ADDRESS.match(value)
    if simple is not None:
        display, named, bare = simple.groups()
        if bare is not None:
            return [("", bare)]
        return [(" ".join(display.split()) if display else "", named)]
    try:
        return email.utils.getaddresses([value])
    except Exception:
        return [("", value)]


def envelope(entity):
    """
    The ENVELOPE of a message entity (RFC 3501 7.4.2), as L{bytes}.
    """
    sender = _addresses(entity, "From")
    fields = [
        quote(_raw(entity.header("Date"))),
        quote(_raw(entity.header("Subject"))),
        sender or b"NIL",
        _addresses(entity, "Sender") or sender or b"NIL",
        _addresses(entity, "Reply-To") or sender or b"NIL",
        _addresses(entity, "To") or b"NIL",
        _addresses(entity, "Cc") or b"NIL",
        _addresses(entity, "Bcc") or b"NIL",
        quote(_raw(entity.header("In-Reply-To"))),
        quote(_raw(entity.header("Message-ID"))),
    ]
    return _list(fields)


def _paramList(params):
    if not params:
        return b"NIL"
    items = []
    for name, value in params:
        items.append(quote(name.upper()))
        items.append(quote(_raw(value) if isinstance(value, str) else value))
    return _list(items)


def _disposition(entity):
    value = entity.header("Content-Disposition")
    if not value:
        return b"NIL"
    kind = value.split(";", 1)[0].strip()
    try:
        message = _headerParser.parsebytes(b"Content-Disposition: " + _raw(value) + b"\r\n\r\n")
        params = message.get_params(header="content-disposition", failobj=[])[1:]
        params = [(n, email.utils.collapse_rfc2231_value(v) if isinstance(v, tuple) else v)
                  for n, v in params]
    except Exception:
        params = []
    return _list([quote(kind.upper()), _paramList(params)])


def _language(entity):
    value = entity.header("Content-Language")
    if not value:
        return b"NIL"
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if len(tags) == 1:
        return quote(tags[0])
    return _list([quote(t) for t in tags])


def _lines(body):
    """
    The number of lines of a body, counted as Dovecot counts them: its
    line ends (a part's last line, whose line end belongs to the boundary
    after it, is not counted).
    """
    return b"%d" % body.count(b"\r\n")


def bodyStructure(entity, extended=True):
    """
    The BODYSTRUCTURE (C{extended}) or BODY of an entity, as L{bytes}.
    Iterative over nested multiparts' depth is bounded by L{MAX_NESTING}.
    """
    if entity.isMultipart:
        children = entity.children
        parts = [bodyStructure(c, extended) for c in children]
        if not parts:
            # A multipart with no parts: shown as an empty text part, as
            # Dovecot does.
            parts = [b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)']
        items = [b"".join(parts), quote(entity.contentType[1].upper())]
        if extended:
            params = [(n, v) for n, v in entity.params()]
            items += [_paramList(params), _disposition(entity), _language(entity),
                      quote(entity.header("Content-Location"))]
        return _list(items)
    maintype, subtype = entity.contentType
    body = entity.body
    encoding = entity.header("Content-Transfer-Encoding")
    params = entity.params()
    if maintype.lower() == "text" and not any(n.lower() == "charset" for n, _ in params):
        # Text without a charset is US-ASCII (RFC 2045 5.2); Dovecot says so.
        params = params + [("charset", "us-ascii")]
    items = [
        quote(maintype.upper()),
        quote(subtype.upper()),
        _paramList(params),
        quote(_raw(entity.header("Content-ID"))),
        quote(_raw(entity.header("Content-Description"))),
        quote((encoding or "7BIT").upper()),
        b"%d" % len(body),
    ]
    if entity.isMessage:
        inner = entity.encapsulated
        items += [envelope(inner), bodyStructure(inner, extended), _lines(body)]
    elif maintype.lower() == "text":
        items.append(_lines(body))
    if extended:
        items += [quote(entity.header("Content-MD5")), _disposition(entity),
                  _language(entity), quote(entity.header("Content-Location"))]
    return _list(items)
