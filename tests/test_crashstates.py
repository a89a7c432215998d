"""
The crash-state explorer (tests/crashstates.py), bounded for CI: every
on-disk state a power cut may leave during a scripted workload on the
spool, with and without the journal, and during recovery itself, recovers
with nothing acknowledged lost, doubled or resurrected.  The full
exploration is C{benchmarks/crashstates.py}.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests import crashstates
from twisted_mail.stores.spool import journal

#: Combinations taken per crash point in CI (the full run takes 64).
LIMIT = 4


class ExplorerTests(SynchronousTestCase):
    def explore(self, journalled, limit=LIMIT):
        path = os.path.join(os.path.abspath(self.mktemp()), "spool")
        workload = crashstates.standardWorkload(path, journal=journalled)
        self.addCleanup(workload.close)
        generated, checked, failures = crashstates.explore(
            workload.recorder, workload.users, workload.sent, journalled, limit=limit)
        return workload, checked, failures

    def assertNoFailures(self, checked, failures):
        self.assertGreater(checked, 100)
        self.assertEqual(failures[:3], [], "{} of {} states failed".format(
            len(failures), checked))

    def test_journalledSpool(self):
        """
        With the journal, no state a power cut may leave loses, doubles, tears or resurrects an acknowledged message or delete.
        """
        self.assertNoFailures(*self.explore(True)[1:])

    def test_spoolWithoutJournal(self):
        """
        Without the journal (each mailbox synced), likewise.
        """
        self.assertNoFailures(*self.explore(False)[1:])

    def test_crashDuringRecovery(self):
        """
        A second power cut at any point of recovery from the first loses nothing either.
        """
        workload, _, _ = self.explore(True, limit=1)
        recorder, acked, inodes = crashstates.recoveryWorkload(
            workload, os.path.abspath(self.mktemp()))
        generated, checked, failures = crashstates.explore(
            recorder, workload.users, workload.sent, True, limit=LIMIT,
            inodes=inodes, acked=acked)
        self.assertNoFailures(checked, failures)

    def test_explorerFindsAnUnsyncedJournal(self):
        """
        The explorer has teeth: with the journal's sync left out, it finds acknowledged messages lost.
        """
        def commitWithoutSync(self, records):
            self.note(records)
            return self._txid

        self.patch(journal.Journal, "commit", commitWithoutSync)
        _, checked, failures = self.explore(True, limit=1)
        self.assertTrue(any("lost" in problem for _, found in failures for problem in found),
                        failures[:3])
