"""
Optional passwords: the password file, the checker, the login commands and
simplemail-passwd.
"""

import io
import os
import stat

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.logins import portal as auth
from twisted_mail.service import passwd
from twisted_mail.doors.line import MailServerFactory
from twisted_mail.stores.memory import MemoryStore

from .test_store import SynchronousThreads


#: A clock whose "thread pool" runs work at once.
SynchronousClock = SynchronousThreads


class HashTests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        A password matches its own hash and nothing else.
        """
        stored = auth.hashPassword("correct horse")
        self.assertTrue(auth.verifyPassword("correct horse", stored))
        self.assertFalse(auth.verifyPassword("correct horse ", stored))
        self.assertFalse(auth.verifyPassword("", stored))

    def test_salted(self):
        """
        The same password hashes differently each time, and the hash holds
        no trace of the password.
        """
        a, b = auth.hashPassword("pw-secret"), auth.hashPassword("pw-secret")
        self.assertNotEqual(a, b)
        self.assertNotIn("pw-secret", a)

    def test_malformed(self):
        """
        A damaged stored hash matches nothing instead of raising.
        """
        for stored in ["", "scrypt$1$2", "md5$x$y$z$a$b", "scrypt$x$8$1$AA==$AA=="]:
            self.assertFalse(auth.verifyPassword("x", stored))


class PasswordFileTests(SynchronousTestCase):
    def test_setAndRead(self):
        """
        Passwords set are stored as hashes, one line per user, in a file of
        mode 0600.
        """
        path = self.mktemp()
        passwords = auth.PasswordFile(path)
        passwords.setPassword("Bob", "s3cret")
        passwords.setPassword("alice", "other")
        passwords.setPassword("bob", "new")
        hashes = passwords.read()
        self.assertEqual(sorted(hashes), ["alice", "bob"])
        self.assertTrue(auth.verifyPassword("new", hashes["bob"]))
        self.assertNotIn(b"s3cret", FilePath(path).getContent())
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_missingFile(self):
        """
        A password file that does not exist yet holds no users.
        """
        self.assertEqual(auth.PasswordFile(self.mktemp()).read(), {})


class CheckerTests(SynchronousTestCase):
    def setUp(self):
        self.file = auth.PasswordFile(self.mktemp())
        self.file.setPassword("bob", "right")
        self.clock = SynchronousClock()
        self.portal = auth.makePortal(self.file, reactor=self.clock)

    def login(self, user, password):
        d = self.portal.login(
            UsernamePassword(user.encode(), password.encode()), None, auth.IMailAccount
        )
        # Past the throttle's failure delay and penalties.
        self.clock.pump([1.0] * 300)
        return d

    def test_good(self):
        """
        The right password logs the user in as their canonical id.
        """
        interface, account, logout = self.successResultOf(self.login("BOB", "right"))
        self.assertEqual(account.userid, "bob")

    def test_wrongAndUnknownAlike(self):
        """
        A wrong password and an unknown user fail the same way, and both pay
        for a hash.
        """
        calls = []
        real = auth.verifyPassword
        self.patch(auth, "verifyPassword", lambda p, s: calls.append(s) or real(p, s))
        self.failureResultOf(self.login("bob", "wrong"), UnauthorizedLogin)
        self.failureResultOf(self.login("nobody", "right"), UnauthorizedLogin)
        self.failureResultOf(self.login("../x", "right"), UnauthorizedLogin)
        self.assertEqual(len(calls), 3)

    def test_refusalsLoggedWithReason(self):
        """
        Each refused login is logged once, with its reason and never the
        password; a right password of a user without a mailbox is refused
        like a wrong one, and the log says why.
        """
        from twisted.logger import capturedLogs

        store = MemoryStore()
        self.portal = auth.makePortal(self.file, reactor=self.clock, store=store)
        self.file.setPassword("carol", "hers")
        self.successResultOf(store.addUser("carol"))
        with capturedLogs() as events:
            self.failureResultOf(self.login("bob", "right"), UnauthorizedLogin)
            self.failureResultOf(self.login("carol", "wrong"), UnauthorizedLogin)
            self.failureResultOf(self.login("nobody", "pw"), UnauthorizedLogin)
        refusals = [e for e in events if "login refused" in e.get("log_format", "")]
        self.assertEqual([(e["user"], e["reason"]) for e in refusals], [
            ("bob", "the password is right but the user has no mailbox "
                    "(make it with simplemail-passwd --spool or --database)"),
            ("carol", "wrong password"),
            ("nobody", "no password set for this user name"),
        ])
        for e in events:
            self.assertNotIn("right", repr({k: v for k, v in e.items()
                                            if k not in ("reason", "log_format")}))
        interface, account, logout = self.successResultOf(self.login("carol", "hers"))
        self.assertEqual(account.userid, "carol")


class ServerLoginTests(SynchronousTestCase):
    def setUp(self):
        self.store = MemoryStore()
        self.passwords = auth.PasswordFile(self.mktemp())
        self.clock = clock = SynchronousClock()
        self.factory = MailServerFactory(
            self.store,
            reactor=clock,
            portal=auth.makePortal(self.passwords, reactor=clock),
            passwordFile=self.passwords,
        )
        self.transport = StringTransport()
        self.proto = self.factory.buildProtocol(None)
        self.proto.makeConnection(self.transport)
        self.transport.clear()

    def send(self, *lines):
        self.transport.clear()
        self.proto.dataReceived(b"".join(l + b"\r\n" for l in lines))
        # Past the throttle's failure delay and penalties.
        self.clock.pump([1.0] * 300)
        return self.transport.value().decode("utf-8").split("\r\n")[:-1]

    def test_capaAdvertisesAuth(self):
        """
        CAPA lists AUTH when passwords are on.
        """
        self.assertIn("AUTH", self.send(b"CAPA"))

    def test_adduNeedsPassword(self):
        """
        ADDU without a password is refused; with one it creates the user and
        stores the password (which may hold spaces).
        """
        self.assertTrue(self.send(b"ADDU bob")[0].startswith("-ERR usage"))
        self.assertEqual(self.send(b"ADDU bob two words"), ["+OK user bob created"])
        self.assertTrue(auth.verifyPassword("two words", self.passwords.lookup("bob")))

    def test_login(self):
        """
        USER then the right PASS selects the user and counts the messages.
        """
        self.send(b"ADDU bob pw")
        self.store.deliver("alice", "bob", b"hi")
        self.assertEqual(
            self.send(b"USER bob", b"PASS pw", b"READM")[:2],
            ["+OK send PASS <password> for bob", "+OK bob has 1 message"],
        )

    def test_sameAnswerForEveryFailure(self):
        """
        Wrong password, unknown user and a user without a password all get
        the same reply, and USER says nothing about whether the user exists.
        """
        self.send(b"ADDU bob pw")
        self.store.addUser("carol")  # exists, but has no password
        replies = self.send(
            b"USER bob", b"PASS nope", b"USER nobody", b"PASS pw",
            b"USER carol", b"PASS pw",
        )
        self.assertEqual(replies[0], "+OK send PASS <password> for bob")
        self.assertEqual(replies[2], "+OK send PASS <password> for nobody")
        self.assertEqual({replies[1], replies[3], replies[5]}, {"-ERR login failed"})

    def test_closedAfterThreeFailures(self):
        """
        The third failed PASS on a connection is answered and the connection
        closed; two failures leave it open.
        """
        self.send(b"ADDU bob pw")
        for _ in range(2):
            self.assertEqual(self.send(b"USER bob", b"PASS nope")[1], "-ERR login failed")
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.send(b"USER bob", b"PASS nope")[1], "-ERR login failed")
        self.assertTrue(self.transport.disconnecting)

    def test_commandsNeedLogin(self):
        """
        LSTU, READM, DELM and SEND are refused until a login completes.
        """
        self.send(b"ADDU bob pw")
        for line in [b"LSTU", b"READM", b"DELM", b"SEND bob hi"]:
            self.assertTrue(self.send(line)[0].startswith("-ERR log in first"), line)
        self.send(b"USER bob")
        self.assertTrue(self.send(b"LSTU")[0].startswith("-ERR log in first"))

    def test_passWithoutUser(self):
        """
        PASS without a pending USER is refused, and a failed PASS clears it.
        """
        self.send(b"ADDU bob pw")
        self.assertEqual(self.send(b"PASS pw"), ["-ERR send USER <userid> first"])
        self.send(b"USER bob", b"PASS wrong")
        self.assertEqual(self.send(b"PASS pw"), ["-ERR send USER <userid> first"])

    def test_userEndsSession(self):
        """
        USER ends the current session: commands need a new login.
        """
        self.send(b"ADDU bob pw")
        self.send(b"USER bob", b"PASS pw")
        self.send(b"USER bob")
        self.assertTrue(self.send(b"READM")[0].startswith("-ERR log in first"))


class PasswordsOffTests(SynchronousTestCase):
    def test_passAndPasswordRefused(self):
        """
        Without --passwords, PASS and ADDU with a password are refused and no
        user is created.
        """
        store = MemoryStore()
        proto = MailServerFactory(store, reactor=Clock()).buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(b"PASS x\r\nADDU bob pw\r\nCAPA\r\n")
        lines = transport.value().decode().split("\r\n")
        self.assertEqual(lines[1], "-ERR passwords are not enabled on this server")
        self.assertEqual(lines[2], "-ERR passwords are not enabled on this server")
        self.assertNotIn("AUTH", lines)
        self.assertEqual(self.successResultOf(store.listUsers()), [])


class PasswdCommandTests(SynchronousTestCase):
    def spool(self):
        path = self.mktemp()
        os.makedirs(path)
        return path

    def test_newUserNeedsTheStore(self):
        """
        Without --spool or --database, a name that has no password yet is
        refused in one line and nothing is written; its password can be
        reset once it has one.
        """
        path = self.mktemp()
        code, out, err = self.runCommand([path, "bob"], io.StringIO("pw\n"))
        self.assertEqual(code, 2)
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("--spool", err)
        self.assertFalse(os.path.exists(path))
        spool = self.spool()
        self.assertEqual(self.runCommand(["--spool", spool, path, "bob"],
                                         io.StringIO("pw\n"))[0], 0)
        self.assertTrue(os.path.isfile(os.path.join(spool, "bob")))
        code, out, err = self.runCommand([path, "bob"], io.StringIO("new pw\n"))
        self.assertEqual((code, out), (0, "password set for bob\n"))
        self.assertTrue(auth.verifyPassword("new pw", auth.PasswordFile(path).lookup("bob")))

    def test_existingMailboxKept(self):
        """
        With --spool, a user whose mailbox exists keeps it (and its mail).
        """
        spool = self.spool()
        with open(os.path.join(spool, "bob"), "wb") as f:
            f.write(b"From x Thu Jan  1 00:00:00 1970\n\nhi\n\n")
        code, out, err = self.runCommand(
            ["--spool", spool, self.mktemp(), "bob"], io.StringIO("pw\n"))
        self.assertEqual((code, out, err), (0, "password set for bob\n", ""))
        with open(os.path.join(spool, "bob"), "rb") as f:
            self.assertIn(b"hi", f.read())

    def test_missingSpool(self):
        """
        A --spool that does not exist is a one-line error; nothing is made.
        """
        path = self.mktemp()
        code, out, err = self.runCommand(
            ["--spool", "no-such-dir", path, "bob"], io.StringIO("pw\n"))
        self.assertEqual(code, 2)
        self.assertIn("no spool directory", err)
        self.assertFalse(os.path.exists("no-such-dir"))
        self.assertFalse(os.path.exists(path))

    def runCommand(self, argv, stdin):
        out, err = io.StringIO(), io.StringIO()
        code = passwd.main(argv, stdin=stdin, stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    def test_pipe(self):
        """
        From a pipe, the first line is the password.
        """
        path = self.mktemp()
        spool = self.spool()
        code, out, err = self.runCommand(
            ["--spool", spool, path, "Bob"], io.StringIO("pw with space\nignored\n"))
        self.assertEqual((code, out, err),
                         (0, "mailbox made for bob\npassword set for bob\n", ""))
        self.assertTrue(
            auth.verifyPassword("pw with space", auth.PasswordFile(path).lookup("bob"))
        )

    def test_terminalMismatch(self):
        """
        On a terminal the password is asked twice; a mismatch changes nothing.
        """

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        answers = iter(["one", "two"])
        self.patch(passwd.getpass, "getpass", lambda prompt: next(answers))
        path = self.mktemp()
        code, out, err = self.runCommand(["--spool", self.spool(), path, "bob"], Terminal())
        self.assertEqual(code, 2)
        self.assertIn("differ", err)
        self.assertFalse(os.path.exists(path))

    def test_badArguments(self):
        """
        A bad user id, a missing argument or an empty password is a one-line
        error with a non-zero status.
        """
        for argv, stdin in [([self.mktemp(), "../x"], "pw\n"),
                            ([self.mktemp()], "pw\n"),
                            ([self.mktemp(), "bob"], "\n")]:
            code, out, err = self.runCommand(argv, io.StringIO(stdin))
            self.assertEqual(code, 2, argv)
            self.assertEqual(err.count("\n"), 1, err)
