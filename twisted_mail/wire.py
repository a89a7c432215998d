"""
The simplemail wire format, as pure functions on bytes and values.

Nothing here imports Twisted or touches a file: the server, the client and
the tests share these functions.  See docs/protocol.rst.
"""

import re
from typing import NamedTuple, Tuple

from twisted_mail.errors import InvalidUserId, ProtocolError

#: The longest line (command or body), not counting its line ending.
MAX_LINE_LENGTH = 64 * 1024

GREETING = "simplemail ready"

_USERID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def normalizeUserId(userid):
    """
    Check a user id against the rules of the protocol and return its
    canonical (lower-case) form.

    This is the one place the rules live: 1 to 64 characters from
    C{A-Z a-z 0-9 . _ -}, starting with a letter or digit, not ending in
    C{.lock}.  No Unicode folding: only ASCII is accepted.

    @type userid: L{str}
    @rtype: L{str}
    @raise InvalidUserId: if C{userid} breaks a rule.
    """
    # A delivery checks its receiver three times (the door, the store's
    # hasUser and deliver): valid ids seen before are looked up.
    try:
        return _normalised[userid]
    except (KeyError, TypeError):
        pass
    if not isinstance(userid, str) or not userid.isascii():
        raise InvalidUserId(escapeControls(userid, keep="", limit=80))
    lowered = userid.lower()
    if (
        _USERID.match(userid) is None
        or lowered.endswith(".lock")
        # Mail tools' lock side files, e.g. Python's mailbox module makes
        # "bob.lock.<time>.<host>.<pid>" beside "bob" while it locks it.
        or ".lock." in lowered
    ):
        raise InvalidUserId(escapeControls(userid, keep="", limit=80))
    if len(_normalised) < _NORMALISED_KEPT:
        _normalised[userid] = lowered
    return lowered


#: Valid user ids already checked, and their canonical forms (at most
#: _NORMALISED_KEPT of them).
_normalised = {}
_NORMALISED_KEPT = 10000


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _shownChar(c):
    n = ord(c)
    if n < 0x20:
        return "^" + chr(n + 0x40)
    if n == 0x7F:
        return "^?"
    if n <= 0xFF:
        return "\\x{:02x}".format(n)
    if n <= 0xFFFF:
        return "\\u{:04x}".format(n)
    return "\\U{:08x}".format(n)


def _escapeLine(line, keep):
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or c in keep else _shownChar(c) for c in line)


def escapeControls(text, keep="\t\n", limit=None):
    """
    Untrusted text made safe to show, on a terminal or in a one-line error:
    every character that is not printable (C{str.isprintable}: controls,
    format characters such as bidi overrides and zero-width spaces, unassigned
    code points) shown visibly, except those in C{keep}.  C0 controls are
    shown in caret notation (C{ESC} as C{^[}, C{CR} as C{^M}), C{DEL} as
    C{^?}, the others as C{\\x9b} or C{\\u200b}.  This is the one escaper
    for display: the console, the doors' error replies and the messages'
    parse errors all use it.

    @param text: L{str} (anything else is shown as its C{repr}).
    @param keep: the characters left as they are; C{""} for text that must
        stay on one line.
    @param limit: if given, show at most this many characters of C{text},
        then C{...}.
    @rtype: L{str}
    """
    if not isinstance(text, str):
        text = repr(text)
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    if "\n" in keep:
        text = "\n".join(_escapeLine(line, keep) for line in text.split("\n"))
    else:
        text = _escapeLine(text, keep)
    return text + "..." if cut else text


def oneLine(text):
    """
    C{text} with tabs, line ends and other control characters as spaces:
    for a one-line field (a subject in a listing).
    """
    # Printable text has none of them (they are all category Cc): most
    # fields, answered without the expression.
    if text.isprintable():
        return text
    return _CONTROL.sub(" ", text)


class Command(NamedTuple):
    """
    One parsed command line.

    @ivar verb: the upper-case command name, e.g. C{"SEND"}.
    @ivar args: the space-separated arguments (never empty strings); for
        C{READM}, none or the message id.
    @ivar text: for C{SEND <id> <text>}, C{ADDU <id> <password>},
        C{PASS <password>}, C{FOLDER <folder>}, C{MOVE <id> <folder>},
        C{FLAG}/C{UNFLAG <id> <flags>} and C{SRCH <query>}: everything after
        the single space that follows the last fixed argument, exactly as
        sent; otherwise C{None}.
    """

    verb: str
    args: Tuple[str, ...] = ()
    text: object = None


#: verb -> (number of fixed arguments, "rest of line" allowed, usage)
_GRAMMAR = {
    "LSTU": (0, False, "LSTU"),
    "ADDU": (1, True, "ADDU <userid>"),
    "USER": (1, False, "USER <userid>"),
    "PASS": (0, True, "PASS <password>"),
    "READM": (0, False, "READM [id]"),
    "DELM": (0, False, "DELM"),
    "SEND": (1, True, "SEND <receiverid> [text]"),
    "DONEU": (0, False, "DONEU"),
    "QUIT": (0, False, "QUIT"),
    "CAPA": (0, False, "CAPA"),
    "LSTM": (0, False, "LSTM"),
    "SENDM": (1, False, "SENDM <receiverid>"),
    # The folder extension (CAPA FOLDERS; docs/protocol.rst, "Folders and
    # flags"): a folder name is the rest of the line, flags are words.
    "LSTF": (0, False, "LSTF"),
    "FOLDER": (0, True, "FOLDER <folder>"),
    "LSTMF": (0, False, "LSTMF"),
    "FLAG": (1, True, "FLAG <id> <flag>..."),
    "UNFLAG": (1, True, "UNFLAG <id> <flag>..."),
    "MOVE": (1, True, "MOVE <id> <folder>"),
    # The search extension (CAPA SEARCH; docs/protocol.rst, "Search").
    "SRCH": (0, True, "SRCH <query>"),
}

#: verb -> how many more arguments it may take after its fixed ones
_OPTIONAL = {"READM": 1}

VERBS = frozenset(_GRAMMAR)


def parseCommand(line):
    """
    Parse one command line (without its line ending).

    @type line: L{bytes}
    @rtype: L{Command}
    @raise ProtocolError: for bytes that are not UTF-8, an empty line, an
        unknown verb or the wrong number of arguments.  The error text is fit
        to send after C{-ERR}.
    """
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("command is not valid UTF-8")
    stripped = decoded.lstrip(" ")
    verb, sep, rest = stripped.partition(" ")
    if not verb:
        raise ProtocolError("empty command")
    # No Unicode case folding: "\u017fend".upper() is "SEND".
    verb = verb.upper() if verb.isascii() else verb
    grammar = _GRAMMAR.get(verb)
    if grammar is None:
        raise ProtocolError("unknown command")
    fixed, allowsText, usage = grammar
    args = []
    for _ in range(fixed):
        rest = rest.lstrip(" ")
        word, sep, rest = rest.partition(" ")
        if not word:
            raise ProtocolError("usage: " + usage)
        args.append(word)
    for _ in range(_OPTIONAL.get(verb, 0)):
        rest = rest.lstrip(" ")
        word, _, rest = rest.partition(" ")
        if word:
            args.append(word)
    text = None
    if fixed == 0 and allowsText:
        # PASS: the rest of the line after the verb's separating space.
        text = rest if sep else ""
        if not text.strip(" "):
            raise ProtocolError("usage: " + usage)
    elif rest.strip(" "):
        if not allowsText:
            raise ProtocolError("usage: " + usage)
        text = rest
    return Command(verb, tuple(args), text)


def formatCommand(verb, *args, text=None):
    """
    Format a command line (without its line ending) for sending.

    @rtype: L{bytes}
    """
    words = [verb] + list(args)
    line = " ".join(words)
    if text is not None:
        line += " " + text
    encoded = line.encode("utf-8")
    if b"\n" in encoded or b"\r" in encoded:
        raise ValueError("a command cannot hold a line break")
    return encoded


def formatOK(text=""):
    """
    A one-line success reply, with its CRLF.
    """
    return _replyLine(b"+OK", text)


def formatError(text):
    """
    A one-line failure reply, with its CRLF.
    """
    return _replyLine(b"-ERR", text)


def _replyLine(status, text):
    text = str(text).replace("\r", " ").replace("\n", " ")
    if text:
        return status + b" " + text.encode("utf-8") + b"\r\n"
    return status + b"\r\n"


def formatMultiline(text, lines):
    """
    A multi-line success reply: C{+OK <text>}, the data lines dot-stuffed,
    then a line holding only C{.}.

    @param lines: an iterable of L{bytes} lines without line endings.
    @rtype: L{bytes}
    """
    out = [formatOK(text)]
    for line in lines:
        out.append(stuff(line) + b"\r\n")
    out.append(b".\r\n")
    return b"".join(out)


def formatMessageReply(text, message):
    """
    A multi-line success reply carrying a whole message: C{+OK <text>}, the
    message's lines dot-stuffed with CRLF endings, then C{.}.

    Works on the message as one string (no list of lines), so a large
    message costs a few copies of itself and no per-line objects; see
    L{messageChunks} to send a large one a piece at a time.

    @param message: LF-terminated lines, L{bytes}.
    @rtype: L{bytes}
    """
    return b"".join((formatOK(text), formatMessageLines(message), b".\r\n"))


def formatMessageLines(lines):
    """
    Message lines as a multi-line reply carries them: dot-stuffed, with
    CRLF endings (a CRLF in C{lines} counts as one line ending, and a last
    line without one gets one).

    @param lines: whole lines of a message, L{bytes}; the first starts a
        line of the message.
    @rtype: L{bytes}
    """
    if b"\r\n" in lines:
        lines = lines.replace(b"\r\n", b"\n")
    if lines and not lines.endswith(b"\n"):
        lines += b"\n"
    # Dot-stuffing and CRLF with bytes.replace, at C speed.
    if b"\n." in lines:
        lines = lines.replace(b"\n.", b"\n..")
    if lines.startswith(b"."):
        lines = b"." + lines
    return lines.replace(b"\n", b"\r\n")


def messageChunks(message, size=64 * 1024):
    """
    Cut a message into pieces of whole lines of about C{size} bytes (a
    longer line makes a longer piece), for L{formatMessageLines} one at a
    time: their formatted concatenation is that of the whole message.

    @param message: L{bytes}.
    @return: an iterator of L{bytes}.
    """
    start = 0
    while start < len(message):
        end = message.rfind(b"\n", start, start + size) + 1
        if end <= start:
            end = message.find(b"\n", start + size) + 1 or len(message)
        yield message[start:end]
        start = end


def stuff(line):
    """
    Dot-stuff one data line: a line starting with C{.} gets one more.
    """
    if line[:1] == b".":
        return b"." + line
    return line


def unstuff(line):
    """
    Undo L{stuff} for one received data line.  The terminating C{.} line is
    not a data line: check for it before calling this.
    """
    if line[:1] == b".":
        return line[1:]
    return line


def splitLines(data):
    """
    Split a message into lines, accepting CRLF and LF endings.

    A final line ending does not make an extra empty line.

    @type data: L{bytes}
    @rtype: L{list} of L{bytes}
    """
    if not data:
        return []
    data = data.replace(b"\r\n", b"\n")
    if data.endswith(b"\n"):
        data = data[:-1]
    return data.split(b"\n")


class Reply(NamedTuple):
    """
    One parsed status line from the server.
    """

    ok: bool
    text: str


def parseReplyLine(line):
    """
    Parse a status line (C{+OK ...} or C{-ERR ...}).

    @type line: L{bytes}
    @rtype: L{Reply}
    @raise ProtocolError: if the line is neither.
    """
    text = line.decode("utf-8", "replace")
    for status, ok in (("+OK", True), ("-ERR", False)):
        if text == status or text.startswith(status + " "):
            return Reply(ok, text[len(status) + 1 :])
    raise ProtocolError("unexpected reply from server: " + escapeControls(text, keep="", limit=80))
