"""
Pipelined group commit (docs/journal.rst): while one group's journal sync
runs in the L{SyncThread}, the mailbox thread writes the next group's
frames; each group's file writes and answers follow its own sync, in
order, and a failed sync fails every group written behind it.
"""

import errno
import os
import threading

from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.crashstates import ManualThreads
from twisted_mail import errors
from twisted_mail.stores.spool import journal as journalModule
from twisted_mail.stores.spool.journal import DELIVERY, SyncThread, readFrames
from twisted_mail.stores.spool.store import SpoolStore

#: Seconds a test waits for the sync thread (a loaded machine).
PATIENCE = 60


class PipelineTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = ManualThreads()
        self.path = self.mktemp()
        self.syncer = SyncThread()
        self.store = SpoolStore(FilePath(self.path), reactor=self.reactor, journal=True,
                                pipeline=self.syncer)
        self.addCleanup(self.store.close)
        for user in ("amy", "bob", "cyd"):
            self.store.addUser(user)
        self.reactor.drain()
        self.journal = self.store._journalled.journal
        # The sync thread's syncs of the journal wait for the test's word.
        self.gate = threading.Semaphore(0)
        self.failing = []
        realSync = os.fdatasync

        def fdatasync(fd):
            if threading.current_thread().name == "simplemail-journal-sync":
                if not self.gate.acquire(timeout=PATIENCE):
                    raise AssertionError("the test never released the sync")
                if self.failing:
                    raise self.failing.pop()
            realSync(fd)

        self.patch(journalModule.os, "fdatasync", fdatasync)
        self.addCleanup(self.gate.release)

    def endSync(self):
        """
        Let the sync running end, wait for the sync thread to report it,
        and run the mailbox jobs it queued.
        """
        self.gate.release()
        self.syncer.wait()
        self.reactor.drain()

    def deliver(self, user, body):
        results = []
        self.store.deliver("alice", user, body).addBoth(results.append)
        self.reactor.drain()
        return results

    def mailbox(self, user):
        with open(os.path.join(self.path, user), "rb") as f:
            return f.read()

    def journalUsers(self):
        path = os.path.join(self.path, self.journal.name)
        with open(path, "rb") as f:
            return [r.user for tx in readFrames(f.read()) for r in tx.records
                    if r.type == DELIVERY]

    def test_nextGroupWrittenDuringSync(self):
        """
        A delivery queued while the group before it is syncing has its journal frame written before that sync ends, and each group is written to its mailbox and acknowledged only after its own sync.
        """
        first = self.deliver("amy", b"first\n")
        self.assertTrue(self.journal.syncing)
        written = self.journal.size
        second = self.deliver("bob", b"second\n")
        # The sync of the first group has not ended: the second's frame
        # is written behind it, and nothing is in a mailbox or answered.
        self.assertTrue(self.journal.syncing)
        self.assertGreater(self.journal.size, written)
        self.assertEqual(self.journalUsers(), ["amy", "bob"])
        self.assertEqual((first, second), ([], []))
        self.assertNotIn(b"first", self.mailbox("amy"))

        self.endSync()
        self.assertIsInstance(first[0], str)
        self.assertIn(b"first", self.mailbox("amy"))
        # The second group's own sync runs now; it is not answered yet.
        self.assertTrue(self.journal.syncing)
        self.assertEqual(second, [])
        self.assertNotIn(b"second", self.mailbox("bob"))

        self.endSync()
        self.assertIsInstance(second[0], str)
        self.assertIn(b"second", self.mailbox("bob"))
        self.assertFalse(self.journal.syncing)

    def test_failedSyncFailsTheGroupBehind(self):
        """
        When a group's sync fails, it and the group whose frames were written behind it both fail, the journal is cut back to where the failed group started, no mailbox is written, and the next delivery is stored.
        """
        before = self.journal.size
        self.failing.append(OSError(errno.EIO, "I/O error"))
        first = self.deliver("amy", b"first\n")
        second = self.deliver("bob", b"second\n")
        self.assertGreater(self.journal.size, before)
        self.endSync()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        for result in (first, second):
            self.assertIsInstance(result[0], Failure)
            result[0].trap(errors.TemporaryFailure)
        self.assertEqual(self.journal.size, before)
        self.assertEqual(os.path.getsize(os.path.join(self.path, self.journal.name)), before)
        self.assertFalse(self.journal.syncing)
        self.assertNotIn(b"first", self.mailbox("amy"))
        self.assertNotIn(b"second", self.mailbox("bob"))

        third = self.deliver("cyd", b"third\n")
        self.endSync()
        self.assertIsInstance(third[0], str)
        self.assertIn(b"third", self.mailbox("cyd"))
        self.assertEqual(self.journalUsers(), ["cyd"])

    def test_otherJobWaitsForTheSync(self):
        """
        A flag change queued while a group syncs waits for that sync and its file writes (it sees the delivery before it), and is acknowledged after a sync of its own.
        """
        inbox = []
        self.store.openFolder("amy", "INBOX").addBoth(inbox.append)
        self.reactor.drain()
        first = self.deliver("amy", b"first\n")
        listing = []
        inbox[0].listMessages().addBoth(listing.append)
        # The listing's job waits for the sync (in the mailbox thread);
        # here the sync is let go first, and the job run then.
        self.gate.release()
        self.reactor.drain()
        # The listing ran behind the sync: it sees the delivery.
        self.assertEqual(len(listing[0].messages), 1)
        self.assertIsInstance(first[0], str)
        flagged = []
        inbox[0].setFlags([first[0]], add=["\\Flagged"]).addBoth(flagged.append)
        self.reactor.drain()
        self.assertTrue(self.journal.syncing)
        self.assertEqual(flagged, [])
        self.endSync()
        self.assertNotIsInstance(flagged[0], Failure)
