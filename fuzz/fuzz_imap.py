"""
The IMAP door's command grammar (L{twisted_mail.doors.imap.parser}) and
folder-name encoding (L{twisted_mail.doors.imap.utf7}), pure.

The input is framed as the server frames it: lines ended by LF (a CR
before it dropped); a line ending in C{{n}} or C{{n+}} is followed by n
octets of literal.  Properties:

  - C{tokenize} gives a tag (a valid tag), an upper-case alphabetic command
    name and arguments (atoms, strings, lists nested at most C{MAX_DEPTH});
    the arguments written back (strings as literals) tokenize to the same;
    or it raises L{BadCommand} with a short printable reason;
  - each argument read as an astring, nstring, atom, number, flag list,
    date, date-time or sequence set gives a value of its kind or
    L{BadCommand}, never another exception; a number fits its bits; a
    sequence set resolves to sorted disjoint ranges and matches what a
    brute-force reading matches;
  - modified UTF-7: C{decode} gives a name that C{encode} writes back
    exactly, or L{BadUTF7}; any text survives C{encode} then C{decode}.
"""

from fuzz import harness

with harness.instrumented():
    from twisted_mail.doors.imap import parser, utf7
    from twisted_mail.doors.imap.parser import Atom, BadCommand, String


def frame(data):
    """
    The chunks and literals of the first command in C{data}.
    """
    chunks, literals = [], []
    while True:
        end = data.find(b"\n")
        line, data = (data, b"") if end == -1 else (data[:end], data[end + 1:])
        if line.endswith(b"\r"):
            line = line[:-1]
        chunks.append(line)
        announced = parser.literalAnnounced(line)
        if announced is None or end == -1 or announced[0] > parser.MAX_LITERAL:
            return chunks, literals
        literals.append(data[:announced[0]])
        data = data[announced[0]:]


def write(tag, name, args):
    """
    A command written back: its chunks and literals.
    """
    chunks, literals = [bytearray(tag + b" " + name.encode("ascii"))], []

    def add(token):
        if isinstance(token, list):
            chunks[-1] += b"("
            for i, item in enumerate(token):
                if i:
                    chunks[-1] += b" "
                add(item)
            chunks[-1] += b")"
        elif isinstance(token, String):
            chunks[-1] += b"{%d}" % len(token)
            literals.append(bytes(token))
            chunks.append(bytearray())
        else:
            chunks[-1] += token

    for arg in args:
        chunks[-1] += b" "
        add(arg)
    return [bytes(c) for c in chunks], literals


def _depth(token):
    if isinstance(token, list):
        return 1 + max([_depth(t) for t in token] or [0])
    assert isinstance(token, (Atom, String)), token
    return 0


def checkToken(token):
    for read in (parser.astring, parser.nstring, parser.atom, parser.flagList,
                 parser.date, parser.dateTime):
        try:
            read(token)
        except BadCommand as e:
            assert harness.isOneLineText(e.args[0]), e.args
    try:
        value = parser.number(token)
    except BadCommand:
        pass
    else:
        assert 0 <= value < 2 ** 32
    try:
        sequence = parser.SequenceSet.parse(token)
    except BadCommand:
        return
    largest = 7
    spans = sequence.resolve(largest)
    for (low, high), after in zip(spans, spans[1:] + [None]):
        assert 1 <= low <= high, spans
        assert after is None or high + 1 < after[0], spans
    values = list(range(1, 12))
    wanted = []
    for part in bytes(token).split(b","):
        low, _, high = part.partition(b":")
        low = largest if low == b"*" else int(low)
        high = low if not high else (largest if high == b"*" else int(high))
        low, high = min(low, high), max(low, high)
        wanted.extend(i for i, v in enumerate(values) if low <= v <= high)
    assert sequence.matching(values, largest) == sorted(set(wanted)), (token, spans)


def checkCommand(data):
    chunks, literals = frame(data)
    try:
        tag, name, args = parser.tokenize(chunks, literals)
    except BadCommand as e:
        assert harness.isOneLineText(e.args[0]) and e.args[0].isascii(), e.args
        return
    assert parser._TAG.match(tag) and not tag.startswith(b"+"), tag
    assert name.isalpha() and name == name.upper(), name
    assert _depth(args) <= parser.MAX_DEPTH + 1, args
    again = parser.tokenize(*write(tag, name, args))
    assert again == (tag, name, args), (chunks, literals, again)
    flat = list(args)
    while flat:
        token = flat.pop()
        if isinstance(token, list):
            flat.extend(token)
        checkToken(token)


def checkUTF7(data):
    try:
        name = utf7.decode(data)
    except utf7.BadUTF7:
        pass
    else:
        assert utf7.encode(name) == data, (data, name)
    text = data.decode("utf-8", "replace")
    assert utf7.decode(utf7.encode(text)) == text, text


def check(data):
    checkCommand(data)
    checkUTF7(data)


if __name__ == "__main__":
    harness.main(check)
