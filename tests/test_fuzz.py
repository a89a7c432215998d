"""
Fuzzing the server protocol: any bytes, in any chunks, against the memory
store and the spool store, never produce a logged traceback, an "internal
error" or a reply that is not the protocol's.

CI runs a bounded number of examples; for a longer run by hand::

    SIMPLEMAIL_FUZZ_EXAMPLES=20000 python -m twisted.trial tests.test_fuzz
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.doors.line import MailServerFactory
from twisted_mail.stores.memory import MemoryStore

from .test_store import makeSpoolStore

EXAMPLES = int(os.environ.get("SIMPLEMAIL_FUZZ_EXAMPLES", "500"))

_words = st.sampled_from(
    [
        b"LSTU", b"ADDU", b"USER", b"READM", b"DELM", b"SEND", b"DONEU", b"QUIT",
        b"CAPA", b"PASS", b"readm", b"send", b"bob", b"alice", b"Bob", b"..",
        b"a/b", b"x" * 65, b"bob.lock", b".", b"..x", b"From ", b"\xff\xfe",
        b"\x00", b"\xc3\xa9", b"\xc5\xbfend", b" ", b"  ", b"\t", b"\r",
    ]
)
_line = st.lists(st.one_of(_words, st.binary(max_size=12)), max_size=6).map(
    lambda parts: b" ".join(parts)
)
_ending = st.sampled_from([b"\r\n", b"\n", b"\r\n", b"\r\r\n", b""])
_stream = st.lists(st.tuples(_line, _ending), max_size=25).map(
    lambda pairs: b"".join(line + ending for line, ending in pairs)
)
_cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=8)


class ServerFuzzTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        observer = self.events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def feed(self, store, stream, cuts):
        clock = Clock()
        factory = MailServerFactory(store, maxMessageSize=300, reactor=clock)
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
        for start, end in zip(points, points[1:]):
            if transport.disconnecting:
                break
            proto.dataReceived(stream[start:end])
        clock.advance(factory.idleTimeout + 1)
        proto.connectionLost(None)
        return transport.value()

    def check(self, output):
        failures = [e for e in self.events if "log_failure" in e]
        self.events[:] = []
        self.assertEqual(failures, [])
        self.assertNotIn(b"internal error", output)
        self.assertNotIn(b"Traceback", output)
        lines = output.split(b"\r\n")
        self.assertEqual(lines[0], b"+OK simplemail ready")
        self.assertEqual(lines[-1], b"")

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_stream, _cuts)
    def test_memoryStore(self, stream, cuts):
        """
        Random command streams against the memory store never produce a
        traceback or an internal error.
        """
        store = MemoryStore(maxMessageSize=300)
        store.addUser("bob")
        self.check(self.feed(store, stream, cuts))

    @settings(max_examples=max(EXAMPLES // 3, 10), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_stream, _cuts)
    def test_spoolStore(self, stream, cuts):
        """
        Random command streams against the mbox spool store never produce a
        traceback or an internal error, and never a file outside the spool.
        """
        store = makeSpoolStore(self, maxMessageSize=300)
        try:
            store.addUser("bob")
            self.check(self.feed(store, stream, cuts))
            parent = os.path.dirname(os.path.abspath(store.path))
            self.assertEqual(os.listdir(parent), [os.path.basename(store.path)])
        finally:
            store.close()  # long runs make thousands of stores
