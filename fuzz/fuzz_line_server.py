"""
The line-protocol server (L{twisted_mail.doors.line}) fed any bytes, in
chunks, through a L{StringTransport}, over the memory store.

The input is the byte stream a client sends; how it is cut into chunks
comes from a checksum of it.  The output is read back as a client reads
it, command by command:

  - the greeting, then for each command line one reply: a well-formed
    status line (C{+OK}/C{-ERR}, one printable line), or for C{CAPA},
    C{LSTU}, C{LSTM} and C{READM} a well-formed multi-line block;
  - after C{+OK send the message} the lines up to C{.} are a body, and the
    body gets one status line;
  - nothing is logged as a failure, no reply says "internal error";
  - a one-line C{SEND} to an existing user stores that text (its line
    ending normalised).
"""

from fuzz import harness

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

with harness.instrumented():
    from twisted_mail import errors, wire
    from twisted_mail.doors.line import MailServerFactory
    from twisted_mail.mail.message import normaliseBody
    from twisted_mail.stores.memory import MemoryStore

_MULTILINE = frozenset(["CAPA", "LSTU", "LSTM", "READM", "LSTF", "LSTMF", "SRCH"])
_LIMIT = 300
_failures = harness.FailureLog()


class _Store(MemoryStore):
    """
    The memory store, recording every message it stores (later deletes do
    not hide them).
    """

    def __init__(self, **kw):
        MemoryStore.__init__(self, **kw)
        self.delivered = []

    def deliverMessage(self, envelopeSender, receiver, message):
        d = MemoryStore.deliverMessage(self, envelopeSender, receiver, message)
        if not isinstance(message, (bytes, bytearray)):
            message = b"".join(message)
        d.addCallback(lambda result: (self.delivered.append(
            (receiver, normaliseBody(message))), result)[1])
        return d


def feed(stream):
    """
    Feed C{stream} to a fresh server in chunks; return the output and the
    store.
    """
    store = _Store(maxMessageSize=_LIMIT, clock=lambda: 1785000000)
    store.addUser("bob")
    store.addUser("alice")
    clock = Clock()
    factory = MailServerFactory(store, maxMessageSize=_LIMIT, reactor=clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    harness.feed(proto, transport, stream)
    if not transport.disconnecting:
        clock.advance(factory.idleTimeout + 1)
    proto.connectionLost(None)
    return transport.value(), store


def _lines(stream):
    """
    The complete lines of C{stream} as the server frames them (LF ends a
    line, one CR before it is dropped).
    """
    lines = stream.split(b"\n")[:-1]
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def check(stream):
    _failures.clear()
    output, store = feed(stream)
    _failures.assertNone()
    assert b"internal error" not in output, output
    replies = harness.Replies(output)
    assert replies.status() == b"+OK simplemail ready"
    lines = iter(_lines(stream))
    sent = []
    for line in lines:
        if len(line) > wire.MAX_LINE_LENGTH:
            break
        reply = replies.status()
        if reply is None:
            break
        try:
            command = wire.parseCommand(line)
        except errors.ProtocolError:
            assert reply.startswith(b"-ERR"), (line, reply)
            continue
        if reply.startswith(b"+OK") and command.verb in _MULTILINE:
            replies.block()
        if reply == b"+OK send the message, end with a line holding only .":
            assert command.verb in ("SEND", "SENDM") and command.text is None, line
            body = []
            for bodyLine in lines:
                if bodyLine == b".":
                    break
                body.append(bodyLine)
            else:
                break  # the body never ended: the idle timeout's reply follows
            reply = replies.status()
            if reply is None:
                break
        elif command.verb == "SEND" and reply.startswith(b"+OK message delivered"):
            sent.append((command.args[0].lower(), command.text.encode("utf-8")))
        if command.verb == "QUIT":
            assert reply == b"+OK bye", reply
            break
    # What is left: at most the idle timeout's or a long line's -ERR.
    rest = replies.status()
    if rest is not None:
        assert rest in (b"-ERR idle for too long, closing", b"-ERR line too long"), rest
    assert replies.atEnd(), output[replies.at:]
    for receiver, text in sent:
        stored = [m.split(b"\n\n", 1)[1] for r, m in store.delivered if r == receiver]
        # CRs before the line end are part of it (docs/protocol.rst).
        assert normaliseBody(text) in stored, (
            text, stored)


if __name__ == "__main__":
    harness.main(check)
