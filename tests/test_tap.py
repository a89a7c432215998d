"""
Tests for L{twisted_mail.service.tap} and the twistd plugin: the command line of
C{twistd simplemail} and the service it builds.

Real twistd processes are covered elsewhere; here the service is built on a
L{MemoryReactor}, so nothing listens on a real port.
"""

import os

from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.testing import MemoryReactor
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.service import tap
from twisted_mail.doors.line import MailServerFactory


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{tap.Options}.
    """

    def parse(self, *argv):
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def assertUsageError(self, *argv):
        """
        Assert that C{argv} is refused with a one-line usage error.

        @return: the error text.
        """
        exc = self.assertRaises(usage.UsageError, self.parse, *argv)
        text = str(exc)
        self.assertTrue(text)
        self.assertNotIn("\n", text)
        self.assertNotIn("Traceback", text)
        return text

    def test_defaults(self):
        """
        Without options the server listens on loopback port 9025, spools to
        ./MAILSERVER, uses the domain localhost and a 10 MiB message limit.
        """
        options = self.parse()
        self.assertEqual(options["listen"], ["tcp:9025:interface=127.0.0.1"])
        self.assertEqual(options["spool"], "MAILSERVER")
        self.assertEqual(options["domain"], "localhost")
        self.assertEqual(options["max-message-size"], 10 * 1024 * 1024)

    def test_extensionDefaults(self):
        """
        The idle timeout defaults to 600 seconds, the connection cap to
        10,000, and passwords are off.
        """
        options = self.parse()
        self.assertEqual(options["idle-timeout"], 600)
        self.assertEqual(options["max-connections"], 10000)
        self.assertIsNone(options["passwords"])

    def test_listenRepeatable(self):
        """
        --listen may be given more than once; every endpoint is kept, in
        order, and the default is not added.
        """
        options = self.parse(
            "--listen", "tcp:9025", "--listen", r"tcp:9026:interface=\:\:1", "-l", "unix:mail.sock"
        )
        self.assertEqual(
            options["listen"], ["tcp:9025", r"tcp:9026:interface=\:\:1", "unix:mail.sock"]
        )

    def test_badEndpoint(self):
        """
        An endpoint description Twisted cannot parse is a one-line usage
        error naming it.
        """
        for description in ["bogus:9025", "tcp:notaport", "tcp", "tcp:9025:colour=blue"]:
            text = self.assertUsageError("--listen", description)
            self.assertIn(description, text)

    def test_sslEndpointMissingFiles(self):
        """
        An ssl: endpoint whose key and certificate files do not exist is a
        one-line usage error, not a traceback.
        """
        missing = FilePath(self.mktemp()).child("missing.pem").path
        description = "ssl:9995:privateKey={0}:certKey={0}".format(missing)
        self.assertUsageError("--listen", description)

    def test_maxMessageSize(self):
        """
        --max-message-size takes a number of bytes.
        """
        self.assertEqual(self.parse("--max-message-size", "2048")["max-message-size"], 2048)

    def test_maxMessageSizeNotANumber(self):
        """
        A --max-message-size that is not a whole number is a usage error.
        """
        for value in ["abc", "1.5", "10MiB", ""]:
            self.assertUsageError("--max-message-size", value)

    def test_maxMessageSizeNotPositive(self):
        """
        A zero or negative --max-message-size is a usage error.
        """
        self.assertUsageError("--max-message-size", "0")
        self.assertUsageError("--max-message-size=-1")

    def test_otherLimitsNotPositive(self):
        """
        A zero --idle-timeout or --max-connections is a usage error.
        """
        self.assertUsageError("--idle-timeout", "0")
        self.assertUsageError("--max-connections", "0")
        self.assertUsageError("--max-connections", "many")

    def test_domain(self):
        """
        --domain sets the mail domain; an empty one or one with spaces is a
        usage error.
        """
        self.assertEqual(self.parse("--domain", "example.org")["domain"], "example.org")
        self.assertUsageError("--domain", "")
        self.assertUsageError("--domain", "example org")

    def test_unknownOption(self):
        """
        An option the server does not have is a usage error.
        """
        self.assertUsageError("--colour", "blue")


def listeners(service):
    """
    The listening services among C{service}'s children.
    """
    return [child for child in service if hasattr(child, "factory")]


class MakeServiceTests(SynchronousTestCase):
    """
    Tests for L{tap.makeService}.
    """

    def setUp(self):
        self.reactor = MemoryReactor()
        self.spool = FilePath(self.mktemp()).child("spool")

    def makeService(self, *argv):
        options = tap.Options()
        options.parseOptions(["--spool", self.spool.path] + list(argv))
        service = tap.makeService(options, reactor=self.reactor)
        for child in listeners(service):
            self.addCleanup(child.factory.store.close)
        return service

    def start(self, service):
        service.startService()
        self.addCleanup(service.stopService)

    def test_defaultListen(self):
        """
        By default the server listens on port 9025 of 127.0.0.1 only.
        """
        service = self.makeService()
        self.assertIsInstance(service, MultiService)
        self.assertEqual(len(listeners(service)), 1)
        self.start(service)
        [(port, factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (9025, "127.0.0.1"))
        self.assertIsInstance(factory, MailServerFactory)

    def test_oneChildPerListen(self):
        """
        Each --listen gives one listening service, all serving one store.
        """
        socket = FilePath(self.mktemp()).path
        service = self.makeService(
            "--listen",
            "tcp:9025",
            "--listen",
            r"tcp:9026:interface=\:\:1",
            "--listen",
            "unix:" + socket,
        )
        self.assertEqual(len(listeners(service)), 3)
        self.start(service)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in self.reactor.tcpServers],
            [(9025, ""), (9026, "::1")],
        )
        [unix] = self.reactor.unixServers
        self.assertEqual(unix[0], socket)
        factories = {entry[1] for entry in self.reactor.tcpServers} | {unix[1]}
        self.assertEqual(len(factories), 1)
        [factory] = factories
        self.assertEqual(len({id(child.factory.store) for child in listeners(service)}), 1)
        self.assertIs(factory.store, listeners(service)[0].factory.store)

    def test_spoolCreated(self):
        """
        The spool directory is created when the server is built.
        """
        self.assertFalse(self.spool.exists())
        self.makeService()
        self.assertTrue(self.spool.isdir())

    def test_spoolUnusable(self):
        """
        A spool path that cannot be a directory is a one-line usage error.
        """
        self.spool.parent().makedirs()
        self.spool.setContent(b"not a directory")
        exc = self.assertRaises(usage.UsageError, self.makeService)
        self.assertNotIn("\n", str(exc))

    def test_optionsReachServer(self):
        """
        The domain and the limits given on the command line are the ones
        the server uses.
        """
        service = self.makeService(
            "--domain",
            "example.org",
            "--max-message-size",
            "4096",
            "--idle-timeout",
            "30",
            "--max-connections",
            "5",
        )
        factory = listeners(service)[0].factory
        self.assertEqual(factory.maxMessageSize, 4096)
        self.assertEqual(factory.idleTimeout, 30)
        self.assertEqual(factory.maxConnections, 5)
        self.assertIs(factory.reactor, self.reactor)
        self.assertEqual(factory.store.domain, "example.org")
        self.assertEqual(factory.store.maxMessageSize, 4096)
        self.assertEqual(os.path.abspath(factory.store.path), self.spool.path)
        self.assertIsNone(factory.portal)


class PluginTests(SynchronousTestCase):
    """
    The twistd plugin.
    """

    def test_found(self):
        """
        twistd finds exactly one plugin named simplemail, built from
        L{tap.Options} and L{tap.makeService}.
        """
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "simplemail"]
        self.assertEqual(len(makers), 1)
        [maker] = makers
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)
        self.assertTrue(maker.description)


class RepairAtStartTests(SynchronousTestCase):
    def test_repairBeforeListening(self):
        """
        Starting the server repairs what a crash left in the spool before it
        listens: a dead process's dot-lock is gone before any client comes.
        """
        reactor = MemoryReactor()
        spool = FilePath(self.mktemp())
        options = tap.Options()
        options.parseOptions(["--spool", spool.path])
        service = tap.makeService(options, reactor=reactor)
        self.addCleanup(listeners(service)[0].factory.store.close)
        spool.child("bob").setContent(b"")
        spool.child("bob.lock").setContent(b"999999999\n")  # no such process
        spool.child("carol").setContent(b"")
        spool.child("carol.lock").setContent(b"%d\n" % (os.getppid(),))  # alive
        service.startService()
        self.addCleanup(service.stopService)
        self.assertFalse(os.path.exists(spool.child("bob.lock").path))
        self.assertTrue(os.path.exists(spool.child("carol.lock").path))
        self.assertEqual(len(reactor.tcpServers), 1)


class ThreadPoolTests(SynchronousTestCase):
    def test_mailboxThreadsStopWithTheServer(self):
        """
        The server's mailbox thread runs while it runs and is gone once it
        stops, so nothing keeps the process alive after shutdown.
        """
        options = tap.Options()
        options.parseOptions(["--spool", self.mktemp()])
        service = tap.makeService(options, reactor=MemoryReactor())
        store = listeners(service)[0].factory.store
        self.addCleanup(store.close)
        pool = store._threadpool
        service.startService()
        self.assertTrue(pool.started)
        done = []
        pool.callInThread(done.append, True)
        service.stopService()
        self.assertFalse(pool.started)
        self.assertFalse([t for t in pool.threads if t.is_alive()])
        self.assertEqual(done, [True])
