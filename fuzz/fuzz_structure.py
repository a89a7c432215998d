"""
The IMAP door's view of a message's structure
(L{twisted_mail.doors.imap.structure}): C{ENVELOPE}, C{BODYSTRUCTURE} and
C{BODY} of any bytes, and the header fields and text of each part, as a
C{FETCH} gives them.

Properties:
  - nothing raises;
  - each answer reads back, with the grammar of RFC 3501's responses (a
    reader written here: NIL, numbers, quoted strings, literals and lists,
    not the server's command reader), as exactly one list and nothing more;
  - an ENVELOPE is ten items: the date, subject, in-reply-to and message id
    NIL or a string, the six address fields NIL or a list of addresses of
    four items each, NIL or a string; an address without a host is a
    group's start marker (a name as the mailbox), and start and end
    markers (all NIL) alternate, the first a start; any other address has
    a mailbox and a host (C{MISSING_...} where its header lacks them);
  - a BODYSTRUCTURE and a BODY are nested at most as deep as the message's
    parts (L{structure.MAX_NESTING}); a leaf starts with its type and
    subtype as strings and its size, the seventh item, as a number;
  - each of the first parts lies within the message, and its header
    fields (C{BODY[n.HEADER.FIELDS (FROM SUBJECT)]}) are lines of its
    header, then a blank line.
"""

import re

from fuzz import harness

with harness.instrumented():
    from twisted_mail.doors.imap import structure

_ATOM = re.compile(rb"NIL|\d+")
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


class Unreadable(Exception):
    pass


def read(data, at=0, depth=0):
    """
    One item of a response at C{at}: C{(value, end)}, a list as a L{list},
    NIL as L{None}, a number as an L{int}, a string as L{bytes}.
    """
    if at >= len(data):
        raise Unreadable("ends early")
    c = data[at:at + 1]
    if c == b"(":
        items, at = [], at + 1
        while True:
            if data[at:at + 1] == b")":
                return items, at + 1
            if items:
                # body-type-mpart = 1*body SP media-subtype: a multipart's
                # parts follow one another without a space.
                if data[at:at + 1] == b" ":
                    at += 1
                elif not (isinstance(items[-1], list) and data[at:at + 1] == b"("):
                    raise Unreadable("no space between items at {}".format(at))
            item, at = read(data, at, depth + 1)
            items.append(item)
    if c == b'"':
        out, at = bytearray(), at + 1
        while True:
            b = data[at:at + 1]
            if b == b"":
                raise Unreadable("unended string")
            if b in (b"\r", b"\n", b"\0"):
                raise Unreadable("a line end or NUL in a quoted string")
            if b == b'"':
                return bytes(out), at + 1
            if b == b"\\":
                b = data[at + 1:at + 2]
                if b not in (b"\\", b'"'):
                    raise Unreadable("a bad escape")
                at += 1
            out += b
            at += 1
    m = _LITERAL.match(data, at)
    if m:
        end = m.end() + int(m.group(1))
        if end > len(data):
            raise Unreadable("a literal longer than what follows")
        return data[m.end():end], end
    m = _ATOM.match(data, at)
    if m:
        text = m.group(0)
        return (None if text == b"NIL" else int(text)), m.end()
    raise Unreadable("unexpected {!r} at {}".format(c, at))


def readOne(data):
    value, end = read(data)
    assert end == len(data), ("more after the list", data[end:end + 40])
    assert isinstance(value, list), value
    return value


def isString(value):
    return value is None or isinstance(value, bytes)


def checkEnvelope(value):
    assert len(value) == 10, value
    for i in (0, 1, 8, 9):
        assert isString(value[i]), (i, value[i])
    for field in value[2:8]:
        if field is None:
            continue
        assert isinstance(field, list) and field, field
        inGroup = False
        for address in field:
            assert isinstance(address, list) and len(address) == 4, address
            assert all(isString(a) for a in address), address
            if address == [None, None, None, None]:
                assert inGroup, ("a group's end without its start", field)
                inGroup = False
            elif address[3] is None:
                # A NIL host is a group's start, and nothing else.
                assert address[:2] == [None, None] and address[2] is not None, address
                assert not inGroup, ("a group inside a group", field)
                inGroup = True
            else:
                assert address[2] is not None, ("an address without a mailbox", address)
        assert not inGroup, ("a group without its end", field)


def checkBody(value, extended, depth=0):
    assert depth <= structure.MAX_NESTING + 2, depth
    if value and isinstance(value[0], list):
        # A multipart: its parts, then its subtype.
        count = 0
        for item in value:
            if not isinstance(item, list):
                break
            checkBody(item, extended, depth + 1)
            count += 1
        assert count >= 1 and count < len(value), value
        assert isinstance(value[count], bytes), value[count]
        return
    assert len(value) >= 7, value
    assert isinstance(value[0], bytes) and isinstance(value[1], bytes), value[:2]
    assert isinstance(value[6], int), value[6]


def check(data):
    text = structure.crlf(data)
    entity = structure.Entity(text, 0, len(text))
    checkEnvelope(readOne(structure.envelope(entity)))
    for extended in (True, False):
        checkBody(readOne(structure.bodyStructure(entity, extended)), extended)
    for number in range(1, 4):
        part = entity.child(number)
        if part is None:
            break
        assert 0 <= part.start <= part.bodyStart <= part.end <= len(text), (
            part.start, part.bodyStart, part.end)
        fields = part.headerFields([b"FROM", b"SUBJECT"])
        assert fields.endswith(b"\r\n\r\n") or fields == b"\r\n", fields
        lines = part.headerBytes.split(b"\r\n")
        assert all(line in lines for line in fields[:-2].split(b"\r\n")[:-1]), fields

if __name__ == "__main__":
    harness.main(check)
