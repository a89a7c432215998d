"""
Self-service sign-up made safe (issue 23, item 4): C{--no-signup} on the
line protocol and the web API, a sign-up naming an existing user counted as
a failed login, and account creation limited per address.
"""

from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail import errors
from twisted_mail.doors.line import MailServerFactory
from twisted_mail.doors.web import makeWebFactory
from twisted_mail.logins import portal as auth
from twisted_mail.logins import throttle
from twisted_mail.logins.portal import MailRealm
from twisted_mail.service.options import Options
from twisted_mail.stores.memory import MemoryStore

from .test_store import SynchronousThreads
from .test_web import FakePasswordFile, syncThread
from .webclient import WebClient

REFUSAL = "-ERR " + str(errors.SignupClosed())


class LineSignupTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.successResultOf(self.store.addUser("bob"))
        self.passwords = auth.PasswordFile(self.mktemp())
        self.clock = SynchronousThreads()

    def factory(self, passwords=True, signup=True):
        portal = auth.makePortal(self.passwords, reactor=self.clock) if passwords else None
        return MailServerFactory(
            self.store, reactor=self.clock, portal=portal,
            passwordFile=self.passwords if passwords else None, signup=signup)

    def send(self, factory, *lines):
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        transport.clear()
        proto.dataReceived(b"".join(line + b"\r\n" for line in lines))
        self.clock.pump([1.0] * 30)
        return transport.value().decode("utf-8").split("\r\n")[:-1]

    def test_noSignupOneRefusal(self):
        """
        With --no-signup, ADDU gets one refusal whatever the name (taken,
        free or invalid), with passwords on or off, and creates nothing.
        """
        for passwords in (True, False):
            factory = self.factory(passwords=passwords, signup=False)
            password = b" pw" if passwords else b""
            replies = self.send(
                factory, b"ADDU bob" + password, b"ADDU carol" + password,
                b"ADDU ../x" + password)
            self.assertEqual(replies, [REFUSAL] * 3)
        self.assertEqual(self.successResultOf(self.store.listUsers()), ["bob"])
        self.assertIsNone(self.passwords.lookup("carol"))

    def test_existingNameCountsAsFailedLogin(self):
        """
        With passwords, ADDU of a name that exists is a failed login of the
        client's address: answered after the failure delay and counted.
        """
        factory = self.factory()
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        transport.clear()
        proto.dataReceived(b"ADDU bob pw\r\n")
        self.clock.advance(throttle.FAILURE_DELAY - 0.1)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assertEqual(transport.value(), b"-ERR user already exists: bob\r\n")
        self.assertGreater(factory.portal.throttle.addressScore("192.168.1.1"), 0.9)

    def test_creationLimitedPerAddress(self):
        """
        An address creates SIGNUP_BURST accounts, then is refused for a
        while; nothing is created for the refused ones.
        """
        names = [b"user%d" % i for i in range(throttle.SIGNUP_BURST + 2)]
        replies = self.send(self.factory(), *[b"ADDU " + name + b" pw" for name in names])
        self.assertEqual(replies[: throttle.SIGNUP_BURST],
                         ["+OK user {} created".format(n.decode())
                          for n in names[: throttle.SIGNUP_BURST]])
        self.assertEqual(replies[throttle.SIGNUP_BURST:],
                         ["-ERR " + str(errors.SignupLimited())] * 2)
        self.assertEqual(len(self.successResultOf(self.store.listUsers())),
                         1 + throttle.SIGNUP_BURST)

    def test_option(self):
        """
        --no-signup is a flag of twistd simplemail, off by default.
        """
        options = Options()
        options.parseOptions([])
        self.assertFalse(options["no-signup"])
        options = Options()
        options.parseOptions(["--no-signup"])
        self.assertTrue(options["no-signup"])


class WebSignupTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.successResultOf(self.store.addUser("alice"))
        checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland")
        self.passwordFile = FakePasswordFile()
        self.clock = task.Clock()
        self.factory = makeWebFactory(
            self.store, "localhost", portal=Portal(MailRealm(), [checker]),
            passwordFile=self.passwordFile, reactor=self.clock, inThread=syncThread,
            signup=False)
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)

    def test_noSignupOneRefusal(self):
        """
        With --no-signup, POST /api/v1/users gets one 403 refusal whatever
        the name, logged in or not, and creates nothing.
        """
        bodies = set()
        for auth in (None, ("alice", "wonderland")):
            for name in ("alice", "carol", "../x"):
                response = WebClient(self.factory).request(
                    "POST", "/api/v1/users", json_={"user": name, "password": "pw"},
                    auth=auth)
                self.assertEqual(response.code, 403)
                bodies.add(response.body)
        self.assertEqual(len(bodies), 1)
        self.assertIn(str(errors.SignupClosed()), bodies.pop().decode())
        self.assertEqual(self.successResultOf(self.store.listUsers()), ["alice"])
        self.assertEqual(self.passwordFile.passwords, {})
