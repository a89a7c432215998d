"""
End to end (a real C{twistd -n simplemail --workers 2 --passwords}): the
workers of one server share the login throttle's counts (issue 23, item 8).
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.logins.portal import PasswordFile

from .serverprocess import ServerProcess
from . import test_workers_e2e


class SharedThrottleTests(SynchronousTestCase):
    def test_failuresCountedAcrossWorkers(self):
        """
        A wrong password through one worker counts for the address on the
        other: its refusal says 2 failures from the address, not 1.
        """
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        passwords = os.path.join(work, "passwords")
        PasswordFile(passwords).setPassword("bob", "secret words")
        server = ServerProcess(
            os.path.join(work, "spool"), workers=2, logPath=os.path.join(work, "log"),
            extraArgs=["--passwords", passwords])
        self.addCleanup(server.close)
        server.start()
        with open(os.path.join(server.spool, "bob"), "wb"):
            pass  # bob's (empty) mailbox
        clients = test_workers_e2e.TwoWorkersTests.clientsOnEachWorker(self, server)
        for number, expected in ((1, 1), (2, 2)):
            client = clients[number]
            self.assertTrue(client.command(b"USER bob").startswith(b"+OK"))
            # Answered 2 s late (and, the second time, after the shared
            # penalty): the client's reply timeout is generous.
            self.assertEqual(client.command(b"PASS wrong"), b"-ERR login failed")
            server.waitForLog(
                "login refused for bob from 127.0.0.1: wrong password ({} failures "
                "from this address".format(expected), timeout=60)
