"""
SMTP ingress (C{--smtp}; L{twisted_mail.doors.smtp.delivery}): one
transaction to bob, its envelope sender and message from the input, through
the protocol on a L{StringTransport}, memory store.

The input's first line is the envelope sender (C{MAIL FROM:<...>}), the
rest the message, cut into lines (no CR or LF in one, at most 900 bytes),
dot-stuffed as a client sends it.  Properties:

  - every reply is well-formed (C{NNN text}, one code per reply,
    printable), nothing is logged as a failure, no "internal error";
  - the end of the data is answered 250 exactly when bob then holds one
    message; otherwise he holds none;
  - that message is, in order: one C{Return-Path: <...>} line of printable
    ASCII (RFC 5321 4.4), the C{Received:} header (its lines folded with a
    tab), C{Date:} and C{Message-ID:} lines only where the message lacked
    them, then the message exactly as sent (dot-unstuffed, LF line ends),
    with at most one empty line put in where its header section ended
    without one;
  - read back by the one reader (C{mime.parseMessage}), it has a C{Date}
    and a C{Message-ID}.
"""

import re

from fuzz import harness

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

with harness.instrumented():
    from twisted_mail.doors.smtp import makeSMTPFactory
    from twisted_mail.mail import mime
    from twisted_mail.stores.memory import MemoryStore

from fuzz.fuzz_smtp_auth import finish

_failures = harness.FailureLog()

_RETURN_PATH = re.compile(rb"Return-Path: <[\x20-\x7e]*>\n")
_RECEIVED = re.compile(rb"Received: [^\n]*\n(?:\t[^\n]*\n)+")
_DATE = re.compile(rb"Date: [^\n]*\n")
_MESSAGE_ID = re.compile(rb"Message-ID: <[^\n]*@example\.org>\n")


def session(sender, lines):
    """
    The bytes a client sends for one transaction to bob.
    """
    data = b"".join((b"." + line if line[:1] == b"." else line) + b"\r\n" for line in lines)
    return (b"EHLO client.example\r\nMAIL FROM:<" + sender + b">\r\n"
            b"RCPT TO:<bob@example.org>\r\nDATA\r\n" + data + b".\r\nQUIT\r\n")


def prefixes(stored):
    """
    Each way of reading our headers off the top of C{stored}: what is left
    after them (the Date and Message-ID lines may be ours or the message's).
    """
    m = _RETURN_PATH.match(stored)
    assert m, stored[:200]
    m = _RECEIVED.match(stored, m.end())
    assert m, stored[:400]
    at = m.end()
    found = [at]
    date = _DATE.match(stored, at)
    if date:
        found.append(date.end())
    for start in list(found):
        mid = _MESSAGE_ID.match(stored, start)
        if mid:
            found.append(mid.end())
    return [stored[start:] for start in found]


def asSent(rest, original):
    """
    Whether C{rest} is C{original}, or it with one empty line put in at a
    line boundary.
    """
    if rest == original:
        return True
    if len(rest) != len(original) + 1:
        return False
    at = 0
    while True:
        if rest[at:at + 1] == b"\n" and rest[:at] + rest[at + 1:] == original:
            return True
        at = rest.find(b"\n", at) + 1
        if at == 0 or at > len(rest):
            return False


def check(data):
    sender, _, message = data.partition(b"\n")
    sender = sender.replace(b"\r", b"")[:200]
    lines = [line[:900] for line in message.replace(b"\r", b"\n").split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()
    _failures.clear()
    store = MemoryStore(domain="example.org", clock=lambda: 1785000000)
    store.addUser("bob")
    clock = Clock()
    factory = makeSMTPFactory(store, "example.org", 100000, 60, reactor=clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    harness.feed(proto, transport, session(sender, lines))
    codes = [code for code, _ in finish(proto, transport, clock, _failures)]
    stored = store.messages("bob")
    accepted = len(codes) >= 6 and codes[4] == b"354" and codes[5] == b"250"
    assert len(stored) == (1 if accepted else 0), (codes, len(stored))
    if not accepted:
        return
    original = b"".join(line + b"\n" for line in lines)
    text = stored[0]
    assert any(asSent(rest, original) for rest in prefixes(text)), (text[:600], original[:300])
    names = {name.lower() for name, _ in mime.parseMessage(text).headers}
    assert "date" in names and "message-id" in names, (names, text[:600])


if __name__ == "__main__":
    harness.main(check)
