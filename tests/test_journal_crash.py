"""
Two server processes on one spool, each with its own journal, and kill -9
of either in the middle of a checkpoint (between its start and the
emptying of the journal): the other takes over the dead one's journal
(syncs its mailboxes, removes it), and every acknowledged message is there
exactly once, through either server.
"""

import os
import signal
import time

from tests.test_crash import CrashTestCase
from twisted_mail.stores.spool.journal import journalName

USERS = ["u0", "u1", "u2"]


class CheckpointKillTests(CrashTestCase):
    def setUp(self):
        # Checkpoints wait (and say so in the log) before and after
        # syncing the files, so that a kill can land inside one.
        os.environ["SIMPLEMAIL_CHECKPOINT_PAUSE"] = "0.3"
        self.addCleanup(os.environ.pop, "SIMPLEMAIL_CHECKPOINT_PAUSE", None)

    def bodies(self, server, user):
        client = self.connect(server)
        self.assertTrue(client.command(b"USER " + user.encode()).startswith(b"+OK"))
        found = []
        while True:
            text = client.readMessage()
            if text is None:
                return found
            found.append(text.split(b"\n\n", 1)[1])

    def killDuringCheckpoint(self, victimIndex, stage):
        spool = os.path.join(os.path.abspath(self.mktemp()), "spool")
        servers = [self.startServer(spool, "a"), self.startServer(spool, "b")]
        clients = [self.connect(s) for s in servers]
        for user in USERS:
            self.assertTrue(clients[0].command(b"ADDU " + user.encode()).startswith(b"+OK"))
        for client in clients:
            # SEND needs a user selected (as the sender).
            self.assertTrue(client.command(b"USER u0").startswith(b"+OK"))
        acked = {user: [] for user in USERS}
        n = 0

        def send(i):
            nonlocal n
            n += 1
            user = USERS[n % len(USERS)]
            body = b"message %d through %d\n" % (n, i)
            reply = clients[i].send(user, body)
            self.assertTrue(reply.startswith(b"+OK"), reply)
            acked[user].append(body)

        victim, survivor = servers[victimIndex], servers[1 - victimIndex]
        marker = "checkpoint " + stage
        seen = victim.log().count(marker)
        for _ in range(3):
            send(0)
            send(1)
        # The next checkpoint of the victim after these acknowledgements.
        deadline = time.monotonic() + 120
        while victim.log().count(marker) <= seen:
            if time.monotonic() > deadline:
                self.fail("no checkpoint logged")
            time.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)
        deadJournal = os.path.join(spool, journalName(victim.pid))
        victim.kill()
        self.assertTrue(os.path.exists(deadJournal))
        # The survivor, delivering on, finds the dead journal and takes it.
        deadline = time.monotonic() + 180
        while os.path.exists(deadJournal):
            if time.monotonic() > deadline:
                self.fail("the dead journal stayed")
            send(1 - victimIndex)
            time.sleep(0.1)
        self.assertIn("journal " + os.path.basename(deadJournal), survivor.log())
        for user in USERS:
            self.assertEqual(sorted(self.bodies(survivor, user)), sorted(acked[user]), user)
        victim.start()
        for user in USERS:
            self.assertEqual(sorted(self.bodies(victim, user)), sorted(acked[user]), user)
        for server in servers:
            self.assertNotIn("Traceback", server.log())

    def test_killFirstWhileSyncing(self):
        """
        The first server killed as its checkpoint starts syncing loses nothing acknowledged through either server.
        """
        self.killDuringCheckpoint(0, "syncing")

    def test_killSecondAfterSyncing(self):
        """
        The second server killed after its checkpoint synced the files, before it emptied its journal, loses nothing either.
        """
        self.killDuringCheckpoint(1, "synced")
