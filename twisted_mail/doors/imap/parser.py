"""
The IMAP command grammar (RFC 3501 9, RFC 7888 literals), as pure functions
on bytes: no Twisted, no transport.

The protocol frames a command as text chunks and literals (a chunk ending
in C{{n}} or C{{n+}} is followed by the literal's n octets); L{tokenize}
turns that into a tag, a command name and a list of arguments, each an
L{Atom}, a L{String} (quoted or literal) or a L{list} (parenthesised).
The helpers below read the argument kinds commands take (astrings,
sequence sets, flag lists, dates) and raise L{BadCommand} with a reason
the client may read.
"""

import bisect
import calendar
import re
import time

#: A line longer than this (not counting literals) ends the session: BYE.
MAX_LINE = 1024 * 1024

#: A literal of a command other than APPEND may be at most this long.
MAX_LITERAL = 64 * 1024

#: Parentheses nested deeper than this are refused (BAD).
MAX_DEPTH = 64

_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}\Z")
_ATOM_RUN = re.compile(rb'[^ (){"\x00-\x1f\x7f\[]*')
_TAG = re.compile(rb"[!#$&',-.0-9:;<=>?@A-Z\[^_`a-z|~\]]+\Z")


class BadCommand(Exception):
    """
    A command that does not parse: a tagged C{BAD} with this text.
    """


class Atom(bytes):
    """
    An atom (or NIL, a number, a flag, a sequence set: any unquoted word).
    """


class String(bytes):
    """
    A quoted string or a literal.
    """


def literalAnnounced(line):
    """
    The literal a command line ends with.

    @param line: one line, without its line end.
    @return: C{(size, synchronising)}, or L{None} if it announces none.
    """
    match = _LITERAL.search(line)
    if match is None:
        return None
    return int(match.group(1)), not match.group(2)


class _Reader:
    def __init__(self, chunks, literals):
        self.chunks = chunks
        self.literals = literals
        self.index = 0
        self.pos = 0

    @property
    def text(self):
        return self.chunks[self.index]

    def atEnd(self):
        return self.index == len(self.chunks) - 1 and self.pos >= len(self.text)

    def skipSpaces(self):
        text = self.text
        while self.pos < len(text) and text[self.pos] == 0x20:
            self.pos += 1

    def peek(self):
        return self.text[self.pos:self.pos + 1]


def tokenize(chunks, literals=()):
    """
    Read one command.

    @param chunks: the command's text, split where literals were.
    @param literals: the literals' octets, one after each chunk but the last.
    @return: C{(tag, name, arguments)}: the tag as L{bytes}, the name
        upper-cased as L{str}, the arguments as a L{list} of tokens.
    @raise BadCommand: with the tag (when one was read) as C{args[1]}.
    """
    reader = _Reader(list(chunks), list(literals))
    tag = _readAtom(reader)
    if not tag or not _TAG.match(tag) or tag.startswith(b"+"):
        raise BadCommand("bad or missing tag", None)
    try:
        if reader.peek() != b" ":
            raise BadCommand("missing command")
        reader.pos += 1
        name = _readAtom(reader)
        if not name or not name.isalpha():
            raise BadCommand("missing command")
        args = _readList(reader, 0, None)
    except BadCommand as e:
        raise BadCommand(e.args[0], tag)
    return tag, name.decode("ascii").upper(), args


def _readAtom(reader):
    text = reader.text
    start = reader.pos
    pos = start
    while True:
        pos = _ATOM_RUN.match(text, pos).end()
        if text[pos:pos + 1] != b"[":
            break
        # [ ... ] is part of an atom (BODY[HEADER.FIELDS (A B)]).
        close = text.find(b"]", pos)
        if close == -1:
            raise BadCommand("missing ]")
        pos = close + 1
    reader.pos = pos
    return Atom(text[start:pos])


def _readQuoted(reader):
    text = reader.text
    pos = reader.pos + 1
    out = bytearray()
    while True:
        if pos >= len(text):
            raise BadCommand("unterminated quoted string")
        c = text[pos]
        if c == 0x22:
            reader.pos = pos + 1
            return String(out)
        if c == 0x5C:
            pos += 1
            if pos >= len(text) or text[pos] not in b'"\\':
                raise BadCommand("bad escape in quoted string")
            c = text[pos]
        elif c in (0x0D, 0x0A, 0):
            raise BadCommand("bad character in quoted string")
        out.append(c)
        pos += 1


def _readList(reader, depth, closer):
    items = []
    while True:
        reader.skipSpaces()
        if reader.atEnd():
            if closer is not None:
                raise BadCommand("missing )")
            return items
        c = reader.peek()
        if c == b"(":
            if depth >= MAX_DEPTH:
                raise BadCommand("parentheses nested too deep")
            reader.pos += 1
            items.append(_readList(reader, depth + 1, b")"))
        elif c == b")":
            if closer is None:
                raise BadCommand("unexpected )")
            reader.pos += 1
            return items
        elif c == b'"':
            items.append(_readQuoted(reader))
        elif c == b"{":
            match = _LITERAL.match(reader.text, reader.pos)
            if match is None or reader.index >= len(reader.literals):
                raise BadCommand("bad literal")
            items.append(String(reader.literals[reader.index]))
            reader.index += 1
            reader.pos = 0
        elif c == b"":
            raise BadCommand("unexpected end of command")
        else:
            atom = _readAtom(reader)
            if not atom:
                raise BadCommand("unexpected character")
            items.append(atom)


# -- argument kinds


def expectCount(args, fewest, most=None):
    """
    Check how many arguments a command got.
    """
    most = fewest if most is None else most
    if not fewest <= len(args) <= (most if most >= 0 else len(args)):
        raise BadCommand("wrong number of arguments")


def astring(token):
    """
    An astring (atom, quoted string or literal) as L{bytes}.
    """
    if isinstance(token, list):
        raise BadCommand("expected a string, got a list")
    return bytes(token)


def nstring(token):
    """
    An astring, or L{None} for NIL.
    """
    if isinstance(token, Atom) and token.upper() == b"NIL":
        return None
    return astring(token)


def atom(token):
    """
    An atom as upper-case L{str}.
    """
    if not isinstance(token, Atom):
        raise BadCommand("expected an atom")
    return token.decode("ascii", "replace").upper()


def number(token, bits=32):
    """
    A number (RFC 3501 nz-number or number), at most 2**bits - 1.
    """
    if not isinstance(token, Atom) or not token.isdigit() or len(token) > 20:
        raise BadCommand("expected a number")
    value = int(token)
    if value >= 2 ** bits:
        raise BadCommand("number too large")
    return value


def flagList(token):
    """
    A flag or a parenthesised list of flags, as L{str}s.
    """
    tokens = token if isinstance(token, list) else [token]
    flags = []
    for t in tokens:
        if not isinstance(t, Atom) or not t:
            raise BadCommand("bad flag")
        flags.append(t.decode("ascii", "replace"))
    return flags


_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_DATE_TIME = re.compile(
    rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z")


def date(token):
    """
    A search date (C{1-Feb-1994}) as C{(year, month, day)}.
    """
    if isinstance(token, list):
        raise BadCommand("bad date")
    match = _DATE.match(bytes(token))
    month = match and _MONTHS.get(match.group(2).upper().decode("ascii"))
    if not month:
        raise BadCommand("bad date")
    day, year = int(match.group(1)), int(match.group(3))
    try:
        time.strptime("{} {} {}".format(year, month, day), "%Y %m %d")
    except ValueError:
        raise BadCommand("bad date")
    return (year, month, day)


def dateTime(token):
    """
    An APPEND date-time (C{"17-Jul-1996 02:44:25 -0700"}) as POSIX seconds.
    """
    match = None if isinstance(token, list) else _DATE_TIME.match(bytes(token))
    month = match and _MONTHS.get(match.group(2).upper().decode("ascii"))
    if not month:
        raise BadCommand("bad date-time")
    day, year, hh, mm, ss = (int(match.group(i)) for i in (1, 3, 4, 5, 6))
    sign = 1 if match.group(7) == b"+" else -1
    offset = sign * (int(match.group(8)) * 3600 + int(match.group(9)) * 60)
    try:
        time.strptime("{} {} {} {} {} {}".format(year, month, day, hh, mm, ss),
                      "%Y %m %d %H %M %S")
    except ValueError:
        raise BadCommand("bad date-time")
    return calendar.timegm((year, month, day, hh, mm, ss, 0, 0, 0)) - offset


# -- sequence sets


_SEQ_PART = re.compile(rb"(\d{1,10}|\*)(?::(\d{1,10}|\*))?\Z")


class SequenceSet:
    """
    A sequence set (C{1:3,5,9:*}) of message sequence numbers or UIDs.

    Kept as ranges: a set of a hundred thousand numbers costs a sorted list
    of ranges and a binary search per message.
    """

    def __init__(self, ranges):
        self._ranges = ranges  # (low, high), None for *

    @classmethod
    def parse(cls, token):
        if not isinstance(token, Atom) or not token:
            raise BadCommand("bad sequence set")
        ranges = []
        for part in token.split(b","):
            match = _SEQ_PART.match(part)
            if match is None:
                raise BadCommand("bad sequence set")
            low, high = match.group(1), match.group(2)
            low = None if low == b"*" else int(low)
            high = low if high is None else (None if high == b"*" else int(high))
            if low == 0 or high == 0 or (low or 0) >= 2 ** 32 or (high or 0) >= 2 ** 32:
                raise BadCommand("bad sequence set: numbers start at 1")
            ranges.append((low, high))
        return cls(ranges)

    @property
    def usesStar(self):
        return any(low is None or high is None for low, high in self._ranges)

    def resolve(self, largest):
        """
        The set with C{*} standing for C{largest}, as sorted, merged
        C{(low, high)} pairs.
        """
        spans = []
        for low, high in self._ranges:
            low = largest if low is None else low
            high = largest if high is None else high
            if low > high:
                low, high = high, low
            spans.append((low, high))
        spans.sort()
        merged = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return merged

    def highest(self, largest):
        """
        The highest number in the set, C{*} standing for C{largest}.
        """
        spans = self.resolve(largest)
        return spans[-1][1] if spans else 0

    def matching(self, values, largest):
        """
        The positions (from 0) in the ascending L{list} C{values} of the
        values in the set, in order.
        """
        positions = []
        for low, high in self.resolve(largest):
            first = bisect.bisect_left(values, low)
            last = bisect.bisect_right(values, high)
            positions.extend(range(first, last))
        return positions
