"""
POP3 end to end: a real C{twistd -n simplemail --pop3 ...} process, mail
put in through the line protocol, read and deleted through Python's
C{poplib} (POP3, POP3S, STLS) and through Debian's C{fetchmail}.
"""

import getpass
import os
import poplib
import socket
import ssl
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from .certs import makeCertificate
from .programs import needProgram, programEnvironment
from .serverprocess import ServerProcess, freePort

TIMEOUT = 10


class POP3ServerTestCase(SynchronousTestCase):
    """
    Starts a server with a plain POP3 listener, a POP3S one and STLS.
    """

    extraArgs = ()

    def setUp(self):
        self.certs = makeCertificate(self.mktemp(), addresses=["127.0.0.1"])
        self.popPort = freePort()
        self.popsPort = freePort()
        self.server = ServerProcess(
            self.mktemp(),
            [
                "--pop3", "tcp:{}:interface=127.0.0.1".format(self.popPort),
                "--pop3",
                "ssl:{}:interface=127.0.0.1:privateKey={}:certKey={}".format(
                    self.popsPort,
                    self.certs.child("key.pem").path,
                    self.certs.child("cert.pem").path,
                ),
                "--pop3-tls-cert", self.certs.child("cert.pem").path,
                "--pop3-tls-key", self.certs.child("key.pem").path,
            ] + list(self.extraArgs),
        )
        self.addCleanup(self.server.close)
        self.server.start()
        self.addCleanup(self.assertCleanLog)

    def assertCleanLog(self):
        log = self.server.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    def lineClient(self):
        client = self.server.connect()
        self.addCleanup(client.close)
        return client

    def setUpMail(self, bodies, user=b"bob", password=None):
        """
        Create C{user} (and the sender, alice) and deliver C{bodies} to it.
        """
        c = self.lineClient()
        if password is None:
            self.assertTrue(c.command(b"ADDU " + user).startswith(b"+OK"))
            self.assertTrue(c.command(b"ADDU alice").startswith(b"+OK"))
            self.assertTrue(c.command(b"USER alice").startswith(b"+OK"))
        else:
            self.assertTrue(c.command(b"ADDU " + user + b" " + password).startswith(b"+OK"))
            self.assertTrue(c.command(b"ADDU alice pw").startswith(b"+OK"))
            c.command(b"USER alice")
            self.assertTrue(c.command(b"PASS pw").startswith(b"+OK"))
        for body in bodies:
            self.assertTrue(c.send(user, body).startswith(b"+OK"))
        c.command(b"QUIT")

    def readAll(self, user=b"bob", password=None):
        """
        The messages of C{user} as READM shows them.
        """
        c = self.lineClient()
        if password is None:
            c.command(b"USER " + user)
        else:
            c.command(b"USER " + user)
            c.command(b"PASS " + password)
        texts = []
        while True:
            text = c.readMessage()
            if text is None:
                break
            texts.append(text)
        c.command(b"QUIT")
        return texts

    def pop(self):
        client = poplib.POP3("127.0.0.1", self.popPort, timeout=TIMEOUT)
        self.addCleanup(client.close)
        return client

    def tlsContext(self):
        return ssl.create_default_context(cafile=self.certs.child("cert.pem").path)


class PoplibTests(POP3ServerTestCase):
    def test_readAndDelete(self):
        """
        poplib lists, reads and deletes mail; RETR gives READM's text; the
        deletes happen at QUIT and are seen by the line protocol.
        """
        self.setUpMail([b"first\n", b".dotted line\n..two\n", b"third\n"])
        readm = self.readAll()
        p = self.pop()
        self.assertIn("STLS", p.capa())
        p.user("bob")
        self.assertTrue(p.pass_("anything").startswith(b"+OK bob has 3 messages"))
        count, octets = p.stat()
        self.assertEqual(count, 3)
        _, listing, _ = p.list()
        sizes = [int(line.split()[1]) for line in listing]
        self.assertEqual(sum(sizes), octets)
        for n, text in enumerate(readm, 1):
            status, lines, got = p.retr(n)
            self.assertEqual(b"".join(line + b"\n" for line in lines), text)
            self.assertEqual(int(status.split()[1]), sizes[n - 1])
        _, top, _ = p.top(2, 1)
        self.assertEqual(top[-2:], [b"", b".dotted line"])
        p.dele(1)
        p.dele(3)
        # Not deleted before QUIT.
        self.assertEqual(len(self.readAll()), 3)
        self.assertIn(b"2 messages deleted", p.quit())
        self.assertEqual(self.readAll(), [readm[1]])
        self.server.waitForLog("POP3 QUIT: deleted 2 message(s) of bob")

    def test_largeMessage(self):
        """
        A 4 MiB message with dot lines comes out of RETR exactly as READM
        gives it, its size as LIST says.
        """
        body = (b"." + b"x" * 99 + b"\n" + b"y" * 99 + b"\n") * 20000
        self.setUpMail([body])
        [text] = self.readAll()
        p = self.pop()
        p.user("bob")
        p.pass_("x")
        size = int(p.list(1).split()[2])
        status, lines, octets = p.retr(1)
        self.assertEqual(b"".join(line + b"\n" for line in lines), text)
        self.assertEqual(int(status.split()[1]), size)
        self.assertEqual(size, len(text) + text.count(b"\n"))
        p.quit()

    def test_uidlStableAcrossRestartsAndDeletes(self):
        """
        UIDL ids survive a restart of the server and another session's
        deletes.
        """
        self.setUpMail([b"a\n", b"b\n", b"c\n"])
        p = self.pop()
        p.user("bob")
        p.pass_("x")
        before = p.uidl()[1]
        p.dele(1)
        p.quit()
        self.server.stop()
        self.server.start()
        p = self.pop()
        p.user("bob")
        p.pass_("x")
        after = [line.split()[1] for line in p.uidl()[1]]
        self.assertEqual(after, [line.split()[1] for line in before[1:]])
        p.quit()

    def test_deletedThroughAnotherDoor(self):
        """
        A message deleted through the line protocol during a POP3 session
        gets a clean C{-ERR} on RETR; QUIT still deletes what was marked.
        """
        self.setUpMail([b"first\n", b"second\n"])
        p = self.pop()
        p.user("bob")
        p.pass_("x")
        c = self.lineClient()
        c.command(b"USER bob")
        self.assertIsNotNone(c.readMessage())
        self.assertTrue(c.command(b"DELM").startswith(b"+OK"))
        c.command(b"QUIT")
        with self.assertRaises(poplib.error_proto) as e:
            p.retr(1)
        self.assertEqual(e.exception.args[0],
                         b"-ERR no such message: deleted by another session")
        self.assertIn(b"second", b"\n".join(p.retr(2)[1]))
        p.dele(1)
        p.dele(2)
        self.assertIn(b"1 message deleted", p.quit())
        self.assertEqual(self.readAll(), [])

    def test_lostConnectionDeletesNothing(self):
        """
        A client that marks messages and goes away without QUIT deletes
        nothing.
        """
        self.setUpMail([b"keep me\n"])
        p = self.pop()
        p.user("bob")
        p.pass_("x")
        p.dele(1)
        p.sock.shutdown(socket.SHUT_RDWR)
        self.server.waitForLog("lost before QUIT")
        self.assertEqual(len(self.readAll()), 1)

    def test_hostileInput(self):
        """
        Garbage, out-of-state commands, bad numbers and a 70 KiB line get
        C{-ERR}; the server keeps serving.
        """
        self.setUpMail([b"one\n"])
        s = socket.create_connection(("127.0.0.1", self.popPort), timeout=TIMEOUT)
        self.addCleanup(s.close)
        f = s.makefile("rwb")
        self.assertTrue(f.readline().startswith(b"+OK"))
        for line in (b"\xff\xfe\x00\x80", b"STAT", b"PASS x", b"RETR 1"):
            f.write(line + b"\r\n")
            f.flush()
            self.assertTrue(f.readline().startswith(b"-ERR"), line)
        f.write(b"USER bob\r\nPASS x\r\nRETR 7\r\nDELE x\r\nNOOP\r\n")
        f.flush()
        replies = [f.readline() for _ in range(5)]
        self.assertEqual([r[:4] for r in replies], [b"+OK ", b"+OK ", b"-ERR", b"-ERR", b"+OK\r"])
        f.write(b"NOOP " + b"x" * 70 * 1024 + b"\r\n")
        f.flush()
        self.assertEqual(f.readline(), b"-ERR line too long\r\n")
        self.assertEqual(f.readline(), b"")
        p = self.pop()
        p.user("bob")
        self.assertTrue(p.pass_("x").startswith(b"+OK"))

    def test_pop3s(self):
        """
        The ssl: listener serves POP3 over TLS from the start.
        """
        self.setUpMail([b"secret mail\n"])
        p = poplib.POP3_SSL(
            "127.0.0.1", self.popsPort, context=self.tlsContext(), timeout=TIMEOUT
        )
        self.addCleanup(p.close)
        self.assertNotIn("STLS", p.capa())
        p.user("bob")
        p.pass_("x")
        self.assertIn(b"secret mail", b"\n".join(p.retr(1)[1]))
        p.quit()

    def test_stls(self):
        """
        STLS upgrades a plain connection; the login happens under TLS.
        """
        self.setUpMail([b"upgraded\n"])
        p = self.pop()
        p.stls(self.tlsContext())
        self.assertNotIn("STLS", p.capa())
        p.user("bob")
        p.pass_("x")
        self.assertIn(b"upgraded", b"\n".join(p.retr(1)[1]))
        p.quit()
        self.server.waitForLog("POP3 TLS started")


class PasswordTests(POP3ServerTestCase):
    extraArgs = ()

    def setUp(self):
        self.passwords = os.path.abspath(self.mktemp())
        self.extraArgs = ["--passwords", self.passwords]
        POP3ServerTestCase.setUp(self)

    def test_passwords(self):
        """
        With --passwords the right password opens the mailbox; a wrong one
        and an unknown user get the same C{-ERR}.
        """
        self.setUpMail([b"hello\n"], password=b"s3cret words")
        p = self.pop()
        p.user("bob")
        with self.assertRaises(poplib.error_proto) as wrong:
            p.pass_("wrong")
        p.user("nobody")
        with self.assertRaises(poplib.error_proto) as unknown:
            p.pass_("s3cret words")
        self.assertEqual(wrong.exception.args, unknown.exception.args)
        self.assertIn(b"[AUTH]", wrong.exception.args[0])
        p.user("bob")
        self.assertTrue(p.pass_("s3cret words").startswith(b"+OK bob has 1 message"))
        p.quit()


class FetchmailTests(POP3ServerTestCase):
    def setUp(self):
        needProgram("fetchmail", "fetchmail")
        POP3ServerTestCase.setUp(self)

    def fetchmail(self, *options):
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        out = os.path.join(home, "out.mbox")
        rc = os.path.join(home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write(
                'poll 127.0.0.1 service {port} protocol pop3 uidl\n'
                '  user "bob" there with password "x" is "{local}" here\n'
                '  mda "cat >> {out}"\n'
                '  nokeep {options}\n'.format(
                    port=self.popPort, local=getpass.getuser(), out=out,
                    options=" ".join(options),
                )
            )
        os.chmod(rc, 0o600)
        env = programEnvironment(HOME=home, FETCHMAILHOME=home)
        done = subprocess.run(
            ["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "--idfile",
             os.path.join(home, "ids")],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=60,
        )
        output = done.stdout.decode("utf-8", "replace")
        self.assertEqual(done.returncode, 0, output)
        with open(out, "rb") as f:
            return f.read()

    def test_fetchAndDeleteWithSTLS(self):
        """
        fetchmail fetches every message over STLS, checking the
        certificate, and deletes them.
        """
        self.setUpMail([b"for fetchmail one\n", b"for fetchmail two\n"])
        fetched = self.fetchmail(
            "sslcertck",
            'sslcommonname "localhost"',
            'sslcertfile "{}"'.format(self.certs.child("cert.pem").path),
        )
        self.assertIn(b"for fetchmail one", fetched)
        self.assertIn(b"for fetchmail two", fetched)
        self.assertEqual(self.readAll(), [])
        self.server.waitForLog("POP3 TLS started")
        self.server.waitForLog("POP3 QUIT: deleted 2 message(s) of bob")
