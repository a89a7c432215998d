"""
The header section of a message submitted whole (C{SENDM}, the web's
send): L{twisted_mail.mail.message} C{splitHeaderSection},
C{parseHeaderSection} and C{buildSubmittedMessage}.

The input is the submitted message, cut into blocks of whole lines as the
line protocol hands them over (where, comes from a checksum).  Properties:

  - either L{MalformedMessage} or a stored message whose header section,
    read by the C{email} package (compat32, as every reader here does),
    has exactly one C{From:}, C{To:}, C{Date:} and C{Message-ID:}, the
    server's own, and otherwise only the kept fields
    (C{Subject}, C{MIME-Version}, C{Content-*}, C{In-Reply-To},
    C{References});
  - no header value holds a CR or LF once its folding is undone;
  - the body is stored as submitted (line endings normalised);
  - C{parseHeaderSection}'s fields cover the section exactly, each a name
    and its lines.
"""

import zlib

from fuzz import harness

with harness.instrumented():
    from email import message_from_bytes
    from email.policy import compat32

    from twisted_mail.errors import MalformedMessage
    from twisted_mail.mail import message

OURS = {
    "from": "bob@example.org",
    "to": "carol@example.org",
    "date": "Sat, 25 Jul 2026 17:20:00 GMT",
    "message-id": "<fuzz@example.org>",
}

#: The bare-CR bypass (issue 23, item 2) is fixed (message.py refuses a
#: header section holding a bare CR): header sections with a CR are fuzzed.
SKIP_BARE_CR = False


def blocks(text):
    """
    C{text} cut into pieces that end at line ends, as the line protocol's
    body lines arrive.
    """
    checksum = zlib.crc32(text)
    lines = text.split(b"\n")
    pieces = []
    piece = bytearray()
    for i, line in enumerate(lines):
        piece += line + (b"\n" if i < len(lines) - 1 else b"")
        if (checksum >> (i % 32)) & 1:
            pieces.append(piece)
            piece = bytearray()
    pieces.append(piece)
    return pieces


def check(text):
    head, body = message.splitHeaderSection([message.normaliseBody(text)])
    if SKIP_BARE_CR and b"\r" in head:
        return
    try:
        fields = message.parseHeaderSection(head)
    except MalformedMessage:
        fields = None
    else:
        whole = head if head.endswith(b"\n") or not head else head + b"\n"
        assert b"".join(field for _, field in fields) == whole, (head, fields)
        for name, field in fields:
            assert field.startswith(name + b":"), (name, field)
            assert field.endswith(b"\n"), field
    try:
        stored = b"".join(message.buildSubmittedMessage(
            "bob", "carol", "example.org", blocks(text), when=1785000000,
            messageId="<fuzz@example.org>"))
    except MalformedMessage:
        assert fields is None, (text, fields)
        return
    assert fields is not None, text
    at = stored.index(b"\n\n")
    storedHead, storedBody = stored[:at + 1], stored[at + 2:]
    # The store adds the last line's LF (normaliseBody) when it writes.
    assert message.normaliseBody(storedBody) == message.normaliseBody(
        b"".join(body)), (storedBody, body)
    parsed = message_from_bytes(storedHead + b"\n", policy=compat32)
    names = [name.lower() for name in parsed.keys()]
    for name, value in OURS.items():
        assert parsed.get_all(name) == [value], (name, parsed.get_all(name), text)
    for name in names:
        assert name in OURS or message._isKept(name.encode("latin-1")), (name, text)
    for name, value in parsed.items():
        value = str(value)
        unfolded = value.replace("\r\n ", " ").replace("\r\n\t", "\t")
        unfolded = unfolded.replace("\n ", " ").replace("\n\t", "\t")
        assert "\r" not in unfolded and "\n" not in unfolded, (name, value, text)


if __name__ == "__main__":
    harness.main(check)
