"""
FETCH (RFC 3501 6.4.5, 7.4.2): reading the items a client asks for, and
writing one message's untagged FETCH response.  Pure: the session hands in
the summary and, when an item needs it, the message text.
"""

import re
import time
from collections import OrderedDict

from twisted_mail.doors.imap import structure
from twisted_mail.doors.imap.parser import Atom, BadCommand

_MACROS = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SIMPLE = frozenset(["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                     "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"])
_SECTION = re.compile(
    rb"(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d{1,10})\.(\d{1,10})>)?\Z", re.IGNORECASE)
_PART_PATH = re.compile(rb"(\d{1,5}(?:\.\d{1,5}){0,40})(?:\.(.*))?\Z", re.DOTALL)
_FIELD_NAME = re.compile(rb"[!-9;-~]+\Z")


class FetchItem:
    """
    One item of a FETCH.

    @ivar name: C{UID}, C{FLAGS}, ... or C{SECTION} for C{BODY[...]}.
    @ivar path: the part numbers of a section.
    @ivar spec: C{""}, C{HEADER}, C{HEADER.FIELDS}, C{HEADER.FIELDS.NOT},
        C{TEXT} or C{MIME}.
    @ivar fields: the header field names (upper-case bytes).
    @ivar partial: C{(origin, count)} or L{None}.
    @ivar peek: whether it leaves C{\\Seen} alone.
    """

    def __init__(self, name, path=(), spec="", fields=(), partial=None, peek=True,
                 label=b""):
        self.name = name
        self.path = path
        self.spec = spec
        self.fields = fields
        self.partial = partial
        self.peek = peek
        self.label = label

    @property
    def needsText(self):
        return self.name not in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE")

    @property
    def setsSeen(self):
        return self.name in ("RFC822", "RFC822.TEXT") or (
            self.name == "SECTION" and not self.peek)


def parseItems(token):
    """
    The items of a FETCH's argument (a macro, an item, or a list of items).

    @rtype: L{list} of L{FetchItem}
    """
    if isinstance(token, Atom) and token.upper().decode("ascii", "replace") in _MACROS:
        return [FetchItem(n) for n in _MACROS[token.upper().decode("ascii")]]
    tokens = token if isinstance(token, list) else [token]
    if not tokens:
        raise BadCommand("no FETCH items")
    return [_parseItem(t) for t in tokens]


def _parseItem(token):
    if not isinstance(token, Atom):
        raise BadCommand("bad FETCH item")
    upper = token.upper().decode("ascii", "replace")
    if upper in _SIMPLE:
        return FetchItem(upper)
    match = _SECTION.match(token)
    if match is None:
        raise BadCommand("unknown FETCH item: {}".format(upper[:40]))
    peek = match.group(1).upper() == b"BODY.PEEK"
    section = match.group(2)
    partial = None
    if match.group(3) is not None:
        count = int(match.group(4))
        if count == 0:
            raise BadCommand("a partial FETCH of 0 octets")
        partial = (int(match.group(3)), count)
    path, spec, fields = _parseSection(section)
    label = b"BODY[" + _sectionLabel(path, spec, fields) + b"]"
    return FetchItem("SECTION", path, spec, fields, partial, peek, label)


def _parseSection(section):
    path = ()
    rest = section
    match = _PART_PATH.match(section)
    if match is not None and section[:1].isdigit():
        path = tuple(int(n) for n in match.group(1).split(b"."))
        if 0 in path:
            raise BadCommand("part numbers start at 1")
        rest = match.group(2) or b""
    upper = rest.upper()
    if upper in (b"", b"HEADER", b"TEXT") or (upper == b"MIME" and path):
        return path, upper.decode("ascii"), ()
    for spec in (b"HEADER.FIELDS.NOT", b"HEADER.FIELDS"):
        if upper.startswith(spec + b" (") and upper.endswith(b")"):
            names = upper[len(spec) + 2:-1].replace(b'"', b"").split()
            if not names or not all(_FIELD_NAME.match(n) for n in names):
                raise BadCommand("bad header field list")
            return path, spec.decode("ascii"), tuple(names)
    raise BadCommand("bad section")


def _sectionLabel(path, spec, fields):
    parts = [".".join(str(n) for n in path)] if path else []
    if spec:
        parts.append(spec)
    label = ".".join(parts).encode("ascii")
    if fields:
        label += b" (" + b" ".join(fields) + b")"
    return label


def formatFlags(flags, recent=False):
    ordered = sorted(flags, key=lambda f: (not f.startswith("\\"), f))
    if recent:
        ordered.append("\\Recent")
    return b"(" + " ".join(ordered).encode("ascii", "replace") + b")"


def internalDate(seconds):
    """
    POSIX seconds as an IMAP date-time, in UTC.
    """
    try:
        stamp = time.gmtime(int(seconds))
    except (ValueError, OverflowError, OSError, TypeError):
        stamp = time.gmtime(0)
    return time.strftime('"%d-%b-%Y %H:%M:%S +0000"', stamp).encode("ascii")


class StructureCache:
    """
    ENVELOPE and BODYSTRUCTURE of recent messages, shared by the sessions of
    one server, so that each message is parsed once: keyed by user, folder,
    UIDVALIDITY and UID (a message under one key never changes).
    """

    def __init__(self, size=50000):
        self.size = size
        self._entries = OrderedDict()

    def get(self, key, name):
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.get(name)

    def put(self, key, name, value):
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = {}
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        entry[name] = value


def _section(entity, item):
    node = entity
    for n in item.path:
        node = node.child(n)
        if node is None:
            return b""
    spec = item.spec
    if spec == "MIME":
        return node.headerBytes
    if spec == "":
        if not item.path:
            return node.text[node.start:node.end]
        return node.body
    # HEADER, TEXT and HEADER.FIELDS of a message: the part itself or the
    # message a message/rfc822 part holds.
    if item.path:
        if not node.isMessage:
            return b""
        node = node.encapsulated
    if spec == "HEADER":
        return node.headerBytes
    if spec == "TEXT":
        return node.body
    return node.headerFields(frozenset(item.fields), exclude=spec == "HEADER.FIELDS.NOT")


def renderMessage(number, items, summary, text, flags, recent=False, cache=None,
                  cacheKey=None):
    """
    The untagged FETCH response of one message, as L{bytes} pieces.

    @param number: its sequence number.
    @param summary: its L{MessageSummary}.
    @param text: its text with CRLF line ends (L{structure.crlf}), or
        L{None} if no item needs it.
    @param flags: its flags as the session shows them now.
    """
    out = []
    entity = None
    for item in items:
        name = item.name
        if name == "UID":
            out.append(b"UID %d" % summary.uid)
        elif name == "FLAGS":
            out.append(b"FLAGS " + formatFlags(flags, recent))
        elif name == "INTERNALDATE":
            out.append(b"INTERNALDATE " + internalDate(summary.arrived))
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % summary.size)
        elif name in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
            value = cache.get(cacheKey, name) if cache is not None else None
            if value is None:
                if entity is None:
                    entity = structure.Entity(text, 0, len(text))
                if name == "ENVELOPE":
                    value = structure.envelope(entity)
                else:
                    value = structure.bodyStructure(entity, name == "BODYSTRUCTURE")
                if cache is not None:
                    cache.put(cacheKey, name, value)
            out.append(name.encode("ascii") + b" " + value)
        elif name == "RFC822":
            out.append(b"RFC822 " + structure.literal(text))
        elif name in ("RFC822.HEADER", "RFC822.TEXT"):
            if entity is None:
                entity = structure.Entity(text, 0, len(text))
            data = entity.headerBytes if name == "RFC822.HEADER" else entity.body
            out.append(name.encode("ascii") + b" " + structure.literal(data))
        else:
            if entity is None:
                entity = structure.Entity(text, 0, len(text))
            data = _section(entity, item)
            label = item.label
            if item.partial is not None:
                origin, count = item.partial
                data = data[origin:origin + count]
                label += b"<%d>" % origin
            out.append(label + b" " + structure.literal(data))
    return [b"* %d FETCH (" % number + b" ".join(out) + b")\r\n"]
