"""
Tests for L{tests.dovecotserver}: when Dovecot can run, and that a stopped
one leaves nothing behind.
"""

import os
import shutil
import socket

from twisted.trial.unittest import FailTest, SkipTest, SynchronousTestCase

from .dovecotserver import DovecotServer, groupMembers, needDovecot


class NeedDovecotTests(SynchronousTestCase):
    def test_notRoot(self):
        """
        Without root (Dovecot drops to nobody for the mail) the test is
        skipped, or failed under CI.
        """
        if shutil.which("dovecot") is None or not all(
                os.path.exists("/usr/lib/dovecot/" + p) for p in ("imap", "pop3")):
            raise SkipTest("Dovecot is not installed here")
        self.patch(os, "geteuid", lambda: 1000)
        self.patch(os, "environ", {"PATH": os.environ.get("PATH", "")})
        e = self.assertRaises(SkipTest, needDovecot)
        self.assertIn("root", str(e))
        self.patch(os, "environ", {"PATH": os.environ.get("PATH", ""), "CI": "1"})
        self.assertRaises(FailTest, needDovecot)


class DovecotServerTests(SynchronousTestCase):
    def test_stopLeavesNothing(self):
        """
        A started Dovecot greets on its IMAP and POP3 ports; after close()
        no process of its group is left and its directory is gone.
        """
        needDovecot()
        server = DovecotServer()
        self.addCleanup(server.close)
        server.addUser("bob", b"From a@b Mon Dec  7 10:00:00 2026\nSubject: x\n\nx\n\n")
        server.start()
        for port, greeting in ((server.imapPort, b"* OK"), (server.pop3Port, b"+OK")):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                self.assertTrue(s.recv(100).startswith(greeting))
        group = server.process.pid
        self.assertNotEqual(groupMembers(group), [])
        server.close()
        self.assertEqual(groupMembers(group), [])
        self.assertFalse(os.path.exists(server.root))
        server.close()
