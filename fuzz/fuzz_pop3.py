"""
The POP3 door (L{twisted_mail.doors.pop3}) fed any bytes, in chunks,
through a string transport, over the memory store (bob has three messages;
passwords off, so any password opens an existing mailbox).

The output is read back as a POP3 client reads it:

  - the greeting, then for each command line one reply: a well-formed
    status line (C{+OK}/C{-ERR}, one printable line), and after C{+OK} to
    C{CAPA}, C{LIST}/C{UIDL} without argument, C{RETR} and C{TOP} a
    well-formed multi-line block;
  - C{RETR} gives a stored message exactly, C{TOP} a prefix of one;
  - messages are deleted only by a C{QUIT} after C{DELE}, and then exactly
    those marked; nothing is logged as a failure.
"""

import functools

from fuzz import harness

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

with harness.instrumented():
    from twisted_mail.doors.pop3.server import POP3Factory
    from twisted_mail.stores import memory
    from twisted_mail.stores.memory import MemoryStore


MESSAGES = (
    b"Subject: one\n\nfirst line\n.starts with a dot\n",
    b"Subject: two\r\nX: y\r\n\r\ntext with a bare \r inside\r\n\r\nend",
    b"no header section at all\n..\n.\n",
)

_failures = harness.FailureLog()


class _Transport(StringTransport):
    def abortConnection(self):
        self.loseConnection()


def _pump(transport):
    for _ in range(10000):
        producer = transport.producer
        if producer is None:
            return
        producer.resumeProducing()
    raise AssertionError("a reply never ended")


def feed(stream):
    store = MemoryStore(clock=lambda: 1785000000)
    store.addUser("bob")
    store.addUser("alice")
    for body in MESSAGES:
        store.deliverMessage("alice@localhost", "bob", body)
    stored = list(store.messages("bob"))
    clock = Clock()
    factory = POP3Factory(store, idleTimeout=600, maxConnections=10, reactor=clock)
    proto = factory.buildProtocol(None)
    transport = _Transport()
    proto.makeConnection(transport)
    harness.feed(proto, transport, stream, lambda: _pump(transport))
    if not transport.disconnecting:
        clock.advance(601)
    proto.connectionLost(None)
    return transport.value(), store, stored


def _lines(stream):
    lines = stream.split(b"\n")[:-1]
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _multiline(verb, args):
    return verb in (b"CAPA", b"RETR", b"TOP") or (verb in (b"LIST", b"UIDL") and not args)


def check(stream):
    _failures.clear()
    output, store, stored = feed(stream)
    _failures.assertNone()
    assert b"internal error" not in output, output
    replies = harness.Replies(output)
    assert replies.status() == b"+OK simplemail POP3 server ready"
    texts = [t.replace(b"\n", b"\r\n") for t in stored]
    marked = set()
    loggedIn = quit = False
    for line in _lines(stream):
        if len(line) > 64 * 1024:
            break
        reply = replies.status()
        if reply is None:
            break
        verb, _, rest = line.partition(b" ")
        verb = verb.upper()
        args = rest.split()
        if reply.startswith(b"+OK") and _multiline(verb, args):
            block = b"".join(l + b"\r\n" for l in replies.block())
            if verb == b"RETR":
                assert block in texts, (line, block)
            elif verb == b"TOP":
                assert any(t.startswith(block) for t in texts), (line, block)
        if reply.startswith(b"+OK") and verb == b"PASS":
            loggedIn = True
        elif reply.startswith(b"+OK message") and verb == b"DELE":
            marked.add(int(args[0]))
        elif reply.startswith(b"+OK") and verb == b"RSET":
            marked.clear()
        if reply.startswith(b"+OK") and verb == b"QUIT":
            quit = loggedIn
            break
        if reply.endswith(b"; closing"):
            break
    rest = replies.status()
    if rest is not None:
        assert rest in (b"-ERR idle for too long, closing", b"-ERR line too long"), rest
    assert replies.atEnd(), output[replies.at:]
    left = store.messages("bob")
    if quit:
        assert left == [t for n, t in enumerate(stored, 1) if n not in marked], (
            marked, left)
    else:
        assert left == stored, left


if __name__ == "__main__":
    # The same messages are summarized (parsed) in every run: once is
    # enough (the mime target fuzzes the parsing).
    memory.summarize = functools.lru_cache(maxsize=16)(memory.summarize)
    harness.main(check)
