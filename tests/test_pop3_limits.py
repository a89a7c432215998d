"""
Tests for L{twisted_mail.doors.pop3.server}: its limits (line length, idle time,
connections), bad input (a fuzz test), C{STLS}, and the C{twistd
simplemail} options that build it.  The helpers are those of
L{tests.test_pop3}.
"""

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.doors.pop3 import server as pop3
from twisted_mail import errors

from .test_pop3 import Connection, POP3TestCase


class LimitTests(POP3TestCase):
    def test_lineTooLong(self):
        """
        A 70 KiB line gets C{-ERR line too long} and the connection closes.
        """
        c = self.connect()
        c.protocol.dataReceived(b"USER " + b"a" * 70 * 1024)
        self.assertEqual(c.output(), b"-ERR line too long\r\n")
        self.assertTrue(c.transport.disconnecting)

    def test_longestLineAllowed(self):
        """
        A line of 64 KiB is still answered.
        """
        c = self.connect()
        self.assertEqual(c.command(b"X" * (64 * 1024)), b"-ERR unknown command\r\n")

    def test_bareLineFeeds(self):
        """
        Lines ended by a bare LF are accepted.
        """
        c = self.connect()
        c.protocol.dataReceived(b"STAT\nCAPA\n")
        self.assertTrue(c.output().startswith(
            b"-ERR log in first (USER and PASS)\r\n+OK capability list follows"))

    def test_idleTimeout(self):
        """
        A connection idle for C{--idle-timeout} seconds is told so and closed.
        """
        c = self.connect(idleTimeout=30)
        self.clock.advance(29)
        c.command(b"NOOP")
        self.clock.advance(29)
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(2)
        self.assertEqual(c.output(), b"-ERR idle for too long, closing\r\n")
        self.assertTrue(c.transport.disconnecting)

    def test_stalledReaderTimedOut(self):
        """
        A client that stops reading a reply is cut off after the idle
        timeout.
        """
        self.deliver(b"z" * 1000000)
        c = self.connect(idleTimeout=30)
        self.login(c)
        c.protocol.dataReceived(b"RETR 1\r\n")
        c.transport.producer.resumeProducing()
        self.clock.advance(31)
        self.assertTrue(c.transport.aborted)

    def test_maxConnections(self):
        """
        Connections beyond C{--max-connections} are refused with C{-ERR}.
        """
        factory = self.factory(maxConnections=1)
        first = Connection(factory)
        second = Connection(factory)
        self.assertEqual(
            second.output(), b"-ERR [SYS/TEMP] too many connections, try later\r\n"
        )
        self.assertTrue(second.transport.disconnecting)
        first.lose()
        self.assertTrue(Connection(factory).output().startswith(b"+OK"))

    def test_storeFailureAtLogin(self):
        """
        A store failure while listing the mailbox at login answers
        C{-ERR [SYS/TEMP]} and ends the session.
        """
        c = self.connect()
        self.store.failNext = errors.TemporaryFailure()
        reply = c.command(b"USER bob", b"PASS x")
        self.assertTrue(reply.startswith(b"+OK send PASS\r\n-ERR [SYS/TEMP] "), reply)
        self.assertEqual(self.store.calls, [("close",)])
        self.login(c)


class STLSTests(POP3TestCase):
    def connectTLS(self):
        return self.connect(tlsContextFactory=object())

    def test_capaListsSTLS(self):
        """
        CAPA lists STLS when a certificate is configured and TLS is not on
        yet; not after STLS.
        """
        c = self.connectTLS()
        self.assertIn(b"\r\nSTLS\r\n", c.command(b"CAPA"))
        c.command(b"STLS")
        self.assertNotIn(b"STLS", c.command(b"CAPA"))

    def test_stls(self):
        """
        STLS answers C{+OK}, starts TLS with the configured context and
        forgets a USER given before it.
        """
        c = self.connectTLS()
        c.command(b"USER bob")
        self.assertEqual(c.command(b"STLS"), b"+OK begin TLS negotiation\r\n")
        self.assertIs(c.transport.tlsStarted, c.factory.tlsContextFactory)
        self.assertEqual(c.command(b"PASS x"), b"-ERR send USER first\r\n")
        self.login(c)

    def test_inputAfterSTLSDropped(self):
        """
        Commands sent in clear in the same packet as STLS are not run.
        """
        c = self.connectTLS()
        self.assertEqual(c.command(b"STLS", b"USER bob", b"PASS x"),
                         b"+OK begin TLS negotiation\r\n")
        self.assertEqual(c.command(b"PASS x"), b"-ERR send USER first\r\n")
        self.assertEqual(c.command(b"STAT"), b"-ERR log in first (USER and PASS)\r\n")

    def test_stlsTwice(self):
        """
        A second STLS is refused.
        """
        c = self.connectTLS()
        c.command(b"STLS")
        self.assertEqual(c.command(b"STLS"), b"-ERR TLS already active\r\n")

    def test_stlsWithoutCertificate(self):
        """
        STLS without a configured certificate is refused.
        """
        c = self.connect()
        self.assertEqual(c.command(b"STLS"), b"-ERR STLS not available\r\n")


class TapTests(SynchronousTestCase):
    """
    The POP3 options of C{twistd simplemail} and the listeners they build.
    """

    def parse(self, *argv):
        from twisted_mail.service import tap

        options = tap.Options()
        options.parseOptions(["--spool", FilePath(self.mktemp()).path] + list(argv))
        return options

    def assertUsageError(self, *argv):
        from twisted.python import usage

        e = self.assertRaises(usage.UsageError, self.parse, *argv)
        self.assertNotIn("\n", str(e))
        return str(e)

    def test_offByDefault(self):
        """
        No POP3 listener unless --pop3 is given.
        """
        options = self.parse()
        self.assertEqual(options["pop3"], [])

    def test_badOptions(self):
        """
        A bad endpoint, TLS files without --pop3, a key without a
        certificate and an unreadable certificate are one-line usage errors.
        """
        self.assertIn("bogus:110", self.assertUsageError("--pop3", "bogus:110"))
        self.assertIn("need --pop3", self.assertUsageError("--pop3-tls-cert", "c.pem"))
        self.assertIn(
            "needs --pop3-tls-cert",
            self.assertUsageError("--pop3", "tcp:110", "--pop3-tls-key", "k.pem"),
        )
        self.assertIn(
            "cannot read",
            self.assertUsageError("--pop3", "tcp:110", "--pop3-tls-cert", "missing.pem"),
        )

    def test_oneListenerPerEndpoint(self):
        """
        Each --pop3 gives one listener, all with one POP3 factory over the
        server's store, with the limits and the portal of the other
        listeners.
        """
        from twisted.internet.testing import MemoryReactor

        from .certs import makeCertificate
        from twisted_mail.service import tap

        certs = makeCertificate(self.mktemp())
        reactor = MemoryReactor()
        passwords = FilePath(self.mktemp())
        options = self.parse(
            "--pop3", "tcp:9110:interface=127.0.0.1", "--pop3", "tcp:9111",
            "--pop3-tls-cert", certs.child("cert.pem").path,
            "--pop3-tls-key", certs.child("key.pem").path,
            "--idle-timeout", "42", "--max-connections", "7",
            "--passwords", passwords.path,
        )
        service = tap.makeService(options, reactor=reactor)
        service.startService()
        self.addCleanup(service.stopService)
        popPorts = [
            (port, factory) for port, factory, _, _ in reactor.tcpServers
            if isinstance(factory, pop3.POP3Factory)
        ]
        self.assertEqual([port for port, _ in popPorts], [9110, 9111])
        [factory] = {factory for _, factory in popPorts}
        mailFactory = [f for _, f, _, _ in reactor.tcpServers if f is not factory][0]
        self.assertIs(factory.store, mailFactory.store)
        self.assertIs(factory.portal, mailFactory.portal)
        self.assertIsNotNone(factory.tlsContextFactory)
        self.assertEqual((factory.idleTimeout, factory.maxConnections), (42, 7))
        factory.store.close()

    def test_helpMentionsPOP3(self):
        """
        --help lists the POP3 options.
        """
        from twisted_mail.service import tap

        text = str(tap.Options())
        for option in ("--pop3=", "--pop3-tls-cert=", "--pop3-tls-key="):
            self.assertIn(option, text)


class FuzzTests(POP3TestCase):
    """
    Random command streams, cut into random packets.
    """

    def setUp(self):
        POP3TestCase.setUp(self)
        from twisted.logger import globalLogPublisher

        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def test_randomStreams(self):
        """
        Random command streams never produce a traceback, an internal error
        or a delete that QUIT did not confirm.
        """
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        words = st.sampled_from([
            b"USER", b"PASS", b"STAT", b"LIST", b"RETR", b"DELE", b"NOOP", b"RSET",
            b"QUIT", b"UIDL", b"TOP", b"CAPA", b"STLS", b"APOP", b"AUTH", b"user",
            b"bob", b"1", b"2", b"0", b"-1", b"99", b"x", b"\xff\xfe", b"\x00", b" ",
        ])
        line = st.lists(st.one_of(words, st.binary(max_size=8)), max_size=4).map(
            b" ".join)
        ending = st.sampled_from([b"\r\n", b"\n", b"\r\r\n"])
        stream = st.lists(st.tuples(line, ending), max_size=20).map(
            lambda pairs: b"".join(l + e for l, e in pairs))
        cuts = st.lists(st.integers(min_value=0, max_value=500), max_size=6)
        self.deliver(b"one\n", b".two\n")

        @settings(max_examples=300, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(stream, cuts)
        def run(data, cuts):
            before = len(self.texts())
            c = Connection(self.factory(tlsContextFactory=object()))
            points = sorted({p % (len(data) + 1) for p in cuts} | {0, len(data)})
            for start, end in zip(points, points[1:]):
                if c.transport.disconnecting:
                    break
                c.protocol.dataReceived(data[start:end])
                c.pump()
            output = c.output()
            self.clock.advance(601)
            c.lose()
            failures = [e for e in self.events if "log_failure" in e]
            self.events[:] = []
            self.assertEqual(failures, [])
            self.assertNotIn(b"internal error", output)
            if b"deleted, bye" not in output:
                self.assertEqual(len(self.texts()), before)
            if len(self.texts()) < 2:
                self.store.deliver("alice", "bob", b"again\n")

        run()
