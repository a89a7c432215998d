"""
Modified UTF-7 (RFC 3501 5.1.3), the encoding of IMAP folder names on the
wire: printable ASCII stands for itself (C{&} as C{&-}), anything else is
UTF-16 in modified base64 between C{&} and C{-}.  Strict: a name that is
not in canonical modified UTF-7 is refused, as Dovecot refuses it.
"""

import base64
import re

_PRINTABLE = frozenset(range(0x20, 0x7F))
_SHIFTED = re.compile(rb"&([A-Za-z0-9+,]*)-")


class BadUTF7(ValueError):
    """
    A folder name that is not valid modified UTF-7.
    """


def encode(name):
    """
    A folder name (L{str}) in modified UTF-7 (L{bytes}).
    """
    out = []
    pending = []

    def flush():
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append(b"&" + base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",") + b"-")
            del pending[:]

    for c in name:
        if ord(c) in _PRINTABLE:
            flush()
            out.append(b"&-" if c == "&" else c.encode("ascii"))
        else:
            pending.append(c)
    flush()
    return b"".join(out)


def decode(data):
    """
    The folder name (L{str}) a modified UTF-7 name (L{bytes}) stands for.

    @raise BadUTF7: for bytes outside printable ASCII, an unterminated or
        non-canonical shifted run, or UTF-16 that does not decode.
    """
    if any(b not in _PRINTABLE for b in data):
        raise BadUTF7("folder names are 7-bit (modified UTF-7)")
    out = []
    pos = 0
    while True:
        amp = data.find(b"&", pos)
        if amp == -1:
            out.append(data[pos:].decode("ascii"))
            break
        out.append(data[pos:amp].decode("ascii"))
        match = _SHIFTED.match(data, amp)
        if match is None:
            raise BadUTF7("unterminated & in folder name")
        run = match.group(1)
        if not run:
            out.append("&")
        else:
            padded = run.replace(b",", b"/") + b"=" * (-len(run) % 4)
            try:
                raw = base64.b64decode(padded, validate=True)
                text = raw.decode("utf-16-be")
            except (ValueError, UnicodeDecodeError):
                raise BadUTF7("bad modified UTF-7 in folder name")
            if (len(raw) % 2 or not text
                    or any(ord(c) in _PRINTABLE for c in text)
                    or encode(text) != b"&" + run + b"-"):
                raise BadUTF7("non-canonical modified UTF-7 in folder name")
            out.append(text)
            if data.startswith(b"&", match.end()) and not data.startswith(b"&-", match.end()):
                # Two shifted runs side by side say what one would: not
                # canonical (Dovecot refuses "&...-&" too).
                raise BadUTF7("non-canonical modified UTF-7 in folder name")
        pos = match.end()
    return "".join(out)
