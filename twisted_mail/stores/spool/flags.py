"""
The store's lines in an mbox record (docs/folders.rst): the id, the UID and
the flags, where mail programs look for them.

A record the store writes begins::

    From alice@localhost Thu Nov 26 12:00:00 2026
    X-Simplemail-Id: 3q2-7wEAAAAx9f_k
    X-UID: 17
    Status: RO
    X-Status: F
    X-Keywords: $Forwarded<spaces: room for later flag changes>
    From: ...

C{Status:} (C{R} seen, C{O} old), C{X-Status:} (C{A} answered, C{F}
flagged, C{T} draft, C{D} deleted) and C{X-Keywords:} are read wherever
they are in the header section (mutt moves C{Status:}/C{X-Status:} to its
end when it rewrites a mailbox), as mutt and Dovecot read them.  Readers
never see these lines, nor C{Content-Length:} (which mutt adds), as Dovecot
hides them.  Pure functions on bytes, for the mailbox thread.
"""

import re

from twisted_mail.mail.message import ID_HEADER, unquoteFrom
from twisted_mail.mail.model import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

#: Header fields that are the store's (or other mbox tools'), never the
#: message's: hidden from readers and dropped from arriving mail.
STORE_FIELDS = (b"x-uid", b"status", b"x-status", b"x-keywords", b"x-imapbase",
                b"x-imap", b"content-length")

#: Fields left out of a record's content key, so that flag changes and a
#: rewrite by mutt (which adds Content-Length: and Lines:) keep the key.
_UNKEYED = STORE_FIELDS + (b"lines",)

#: Spaces left in X-Keywords: when a record is written, so that flags can
#: change in place (Dovecot leaves such room too).
ROOM = 64

_FLAG_FIELDS = (b"status", b"x-status", b"x-keywords")
_X_STATUS = ((ANSWERED, "A"), (FLAGGED, "F"), (DRAFT, "T"), (DELETED, "D"))
_FIELD = re.compile(rb"([!-9;-~]+):")
_OURS = re.compile(rb"X-Simplemail-Id: [^\n]*\nX-UID: [0-9]+\nStatus: [^\n]*\n"
                   rb"X-Status: [^\n]*\nX-Keywords: [^\n]*\n")
_ANY_STORE_FIELD = re.compile(
    rb"\n(?:x-uid|status|x-status|x-keywords|x-imapbase|x-imap|content-length)[ \t]*:",
    re.IGNORECASE)
_UID = re.compile(rb"[ \t]*([0-9]{1,10})[ \t\r]*\n?\Z")


class Header:
    """
    What the header section of a record says of the store's lines.

    @ivar end: the offset (in the record) just past the header section.
    @ivar uid: the C{X-UID:}, or 0.
    @ivar flags: the flags (a L{frozenset}).
    @ivar region: C{(start, end)} offsets of the lines from the first flag
        line to the end of the last, or L{None} when there is none.
    @ivar lines: the header's lines, C{(start, end, lowercased name)}, each
        end past its line feed (continuation lines have name L{None}).
    """

    __slots__ = ("end", "uid", "flags", "region", "lines")


def parseHeader(record, limit=None):
    """
    Read the store's lines of a record (separator first).

    @param limit: how far the header section may reach (the record's
        length by default).
    @rtype: L{Header}
    """
    if limit is None:
        limit = len(record)
    header = Header()
    pos = record.find(b"\n") + 1
    if pos == 0:
        pos = limit
    lines = []
    status = xstatus = keywords = b""
    uid = 0
    first = last = None
    while pos < limit:
        eol = record.find(b"\n", pos, limit)
        end = limit if eol == -1 else eol + 1
        line = record[pos:end]
        if line in (b"\n", b"\r\n"):
            pos = end
            break
        match = _FIELD.match(line)
        name = None
        if match:
            name = match.group(1).lower()
        elif line[:1] not in (b" ", b"\t"):
            # Not a header line: the header section ended without a blank
            # line (a message that is all body).
            break
        lines.append((pos, end, name))
        if name in (b"status", b"x-status", b"x-keywords"):
            value = line[match.end():].strip()
            if name == b"status":
                status = value
            elif name == b"x-status":
                xstatus = value
            else:
                keywords = value
            if first is None:
                first = pos
            last = end
        elif name == b"x-uid" and not uid:
            found = _UID.match(line, match.end())
            if found:
                uid = int(found.group(1))
        pos = end
    header.end = pos
    header.uid = uid if 0 < uid < 2 ** 32 else 0
    header.flags = flagsOf(status, xstatus, keywords)
    header.region = None if first is None else (first, last)
    header.lines = lines
    return header


#: The flags of a message with none: one set for every such entry (a
#: mailbox's entries are most of a server's objects the garbage collector
#: walks; see L{sharedFlags}).
NO_FLAGS = frozenset()

#: The sets of flags L{sharedFlags} hands out, at most L{_SHARED_MAX}.
_SHARED = {NO_FLAGS: NO_FLAGS}
_SHARED_MAX = 1024


def sharedFlags(flags):
    """
    The one set equal to C{flags} that the store's entries share (a
    mailbox has a handful of distinct sets; each set of its own was an
    object more per message for the garbage collector's full collections,
    which stop every thread: a third of what it walked after 50,000
    deliveries).
    """
    if type(flags) is not frozenset:
        flags = frozenset(flags)
    found = _SHARED.get(flags)
    if found is None:
        found = flags
        if len(_SHARED) < _SHARED_MAX:
            _SHARED[flags] = flags
    return found


def flagsOf(status, xstatus, keywords):
    """
    The flags that C{Status:}, C{X-Status:} and C{X-Keywords:} values say.
    (Remembered by the values: a mailbox's records say a handful of
    different things, and every scan of a record asks, as every process
    sharing the spool reads every other's appends: 2.3 of a record's 13 µs.)
    """
    found = _FLAGS_OF.get((status, xstatus, keywords))
    if found is None:
        found = _flagsOf(status, xstatus, keywords)
        if len(_FLAGS_OF) < _SHARED_MAX:
            _FLAGS_OF[(status, xstatus, keywords)] = found
    return found


#: L{flagsOf}'s answers, by the values.
_FLAGS_OF = {}


def _flagsOf(status, xstatus, keywords):
    flags = set()
    if b"R" in status.upper():
        flags.add(SEEN)
    xstatus = xstatus.upper()
    for flag, letter in _X_STATUS:
        if letter.encode() in xstatus:
            flags.add(flag)
    for word in re.split(rb"[\s,]+", keywords):
        if word:
            try:
                flags.add(word.decode("ascii"))
            except UnicodeDecodeError:
                continue
    return sharedFlags(flags)


def flagLines(flags, room=ROOM, old=True):
    """
    The C{Status:}, C{X-Status:} and C{X-Keywords:} lines for C{flags},
    with C{room} spaces of padding.

    @param old: whether to say C{O} (the message was seen by a mail
        program; mutt shows it as old rather than new).
    """
    status = ("R" if SEEN in flags else "") + ("O" if old or SEEN in flags else "")
    xstatus = "".join(letter for flag, letter in _X_STATUS if flag in flags)
    keywords = " ".join(sorted(f for f in flags if not f.startswith("\\")))
    return ("Status: {}\nX-Status: {}\nX-Keywords: {}{}\n".format(
        status, xstatus, keywords, " " * room)).encode("ascii")


def storeLines(uid, flags, old=False):
    """
    The store's lines written after the id line of a new record.
    """
    if not flags and not old:
        # A delivery's (made once: it was a few per cent of a delivery).
        return b"X-UID: %d\n" % (uid,) + _NEW_FLAG_LINES
    return b"X-UID: %d\n" % (uid,) + flagLines(flags, old=old)


_NEW_FLAG_LINES = flagLines(frozenset(), old=False)


def patchInPlace(record, header, flags):
    """
    The bytes to write over the header's flag region for C{flags}, keeping
    the record's length, or L{None} when they do not fit.

    The region's other lines (mutt puts Content-Length: and Lines: between
    its own) keep their order; the flag lines follow them, the padding
    shrinking or growing to fill the region.

    @return: C{(offset in the record, bytes)} or L{None}.
    """
    if header.region is None:
        return None
    start, end = header.region
    kept = b"".join(record[s:e] for s, e, name in header.lines
                    if start <= s < end and name not in _FLAG_FIELDS)
    block = flagLines(flags, room=0)
    room = (end - start) - len(kept) - len(block)
    if room < 0:
        return None
    block = block[:-1] + b" " * room + b"\n"
    return start, kept + block


def quickPatch(head, flags):
    """
    L{patchInPlace} for a record as the store writes it (its lines first,
    no other store field in its header), without parsing the header: the
    common case of a flag change, cheap enough for every read's
    C{\\Seen}.

    @param head: the record's first bytes (the whole header, or L{None} is
        returned).
    @return: C{(offset in the record, bytes)} or L{None}: then use
        L{patchInPlace}.
    """
    newline = head.find(b"\n")
    ours = _OURS.match(head, newline + 1)
    if ours is None:
        return None
    end = ours.end()
    headerEnd = head.find(b"\n\n", end - 1)
    if headerEnd == -1 or _ANY_STORE_FIELD.search(head, end - 1, headerEnd + 1):
        return None
    start = head.find(b"\nStatus: ", newline, end) + 1
    block = flagLines(flags, room=0)
    room = end - start - len(block)
    if not start or room < 0:
        return None
    return start, block[:-1] + b" " * room + b"\n"


def withStoreLines(record, msgid, uid, flags):
    """
    A record rewritten with the store's lines (for a message another
    program wrote, or one without room): the id line first (kept or made),
    then X-UID and the flag lines with room; other store lines dropped.
    """
    separator, idLine, rest = recordForCopy(record, msgid)
    return separator + idLine + storeLines(uid, flags) + rest


def readerText(record):
    """
    The RFC 5322 text of a record as readers see it: the separator, the id
    line and the store's lines removed (L{STORE_FIELDS}), the trailing blank
    line removed, C{From } quoting undone.
    """
    newline = record.find(b"\n")
    if newline == -1:
        return b""
    end = len(record)
    if record.endswith(b"\n\n"):
        end -= 1
    elif record.endswith(b"\r\n\r\n"):
        end -= 2
    # The common cases, a record as the store writes it (its lines first),
    # or with its id line alone (another program's mail, stamped), or
    # neither, and no other store field in the header: one search, in C.
    start = newline + 1
    ours = _OURS.match(record, start)
    if ours is not None:
        start = ours.end()
    elif record.startswith(ID_HEADER, start):
        start = record.find(b"\n", start) + 1 or start
    headerEnd = record.find(b"\n\n", start - 1)
    if headerEnd == -1:
        headerEnd = end
    if _QUICK_READER_TEXT and record[start:start + 1] not in (b" ", b"\t") and \
            not _ANY_STORE_FIELD.search(record, start - 1, headerEnd + 1):
        # (A line folded into the store's last line is the whole way's.)
        return unquoteFrom(record, start, max(end, start))
    return _readerTextByHeader(record, newline, end)


#: Whether L{readerText} takes its quick way (off only in the test that
#: checks it against the whole way).
_QUICK_READER_TEXT = True


def _readerTextByHeader(record, newline, end):
    """
    L{readerText} the whole way: the record's header read line by line.
    """
    header = parseHeader(record)
    hidden = [(s, e) for s, e, name in _hiddenLines(header)]
    if record.startswith(ID_HEADER, newline + 1):
        idEnd = record.find(b"\n", newline + 1) + 1
        if idEnd and (not hidden or hidden[0][0] >= idEnd):
            hidden.insert(0, (newline + 1, idEnd))
    if not hidden:
        return unquoteFrom(record, newline + 1, max(end, newline + 1))
    pieces = []
    pos = newline + 1
    for s, e in hidden:
        if s > pos:
            pieces.append(unquoteFrom(record, pos, s))
        pos = e
    pieces.append(unquoteFrom(record, pos, max(end, pos)))
    return b"".join(pieces)


def stripStoreFields(message):
    """
    An arriving message without store fields in its header section (as
    Dovecot's delivery drops them): they would be taken for its flags.

    @param message: the first piece of the message (L{bytes}); only its
        header lines are looked at.
    @rtype: L{bytes}
    """
    lowered = message[:message.find(b"\n\n") + 1 if b"\n\n" in message else len(message)].lower()
    if not any(name + b":" in lowered for name in STORE_FIELDS):
        return message
    record = b"From x\n" + message
    header = parseHeader(record)
    hidden = [(s, e) for s, e, name in _hiddenLines(header)]
    pieces = []
    pos = 0
    for s, e in hidden:
        pieces.append(record[pos:s])
        pos = e
    pieces.append(record[pos:])
    return b"".join(pieces)[len(b"From x\n"):]




def _fieldLines(header, names, inside=True):
    """
    The lines of C{header} (continuation lines with their field) whose
    field is among C{names}, or with C{inside} false, not among them.
    """
    matching = False
    for s, e, name in header.lines:
        if name is not None:
            matching = name in names
        if matching == inside:
            yield s, e, name


def _visibleLines(header):
    return _fieldLines(header, STORE_FIELDS, inside=False)


def _hiddenLines(header):
    return _fieldLines(header, STORE_FIELDS)


def keyedOut(header):
    """
    The lines of a header left out of its record's content key.
    """
    return _fieldLines(header, _UNKEYED)


def recordForCopy(record, msgid):
    """
    A stored record as the pieces L{MboxFile.append} takes, to store it in
    another folder: its separator line, the id line for C{msgid}, then its
    header (without the store's lines) and body, quoted as they are.
    """
    header = parseHeader(record)
    separatorEnd = record.find(b"\n") + 1
    kept = [record[s:e] for s, e, name in _visibleLines(header)]
    if kept and kept[0].startswith(ID_HEADER) and header.lines[0][0] == separatorEnd:
        kept = kept[1:]
    rest = record[header.lines[-1][1]:] if header.lines else record[separatorEnd:]
    return [record[:separatorEnd], ID_HEADER + msgid.encode("ascii") + b"\n",
            b"".join(kept) + rest]
