"""
The crash-state explorer (tests/crashstates.py), bounded for CI: every
on-disk state a power cut may leave during scripted workloads on the
spool (deliveries and deletes; flag changes and moves between folders),
with and without the journal, and during recovery itself, recovers with
nothing acknowledged lost, doubled, resurrected, misplaced or with other
flags.  The full exploration is C{benchmarks/crashstates.py}.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests import crashstates
from twisted_mail.stores.spool import journal

#: Combinations taken per crash point in CI (the full run takes 64).
LIMIT = 4


class ExplorerTests(SynchronousTestCase):
    def explore(self, journalled, limit=LIMIT, workload=crashstates.standardWorkload,
                maxStates=None):
        path = os.path.join(os.path.abspath(self.mktemp()), "spool")
        workload = workload(path, journal=journalled)
        self.addCleanup(workload.close)
        generated, checked, failures = crashstates.explore(
            workload.recorder, workload.users, workload.sent, journalled, limit=limit,
            maxStates=maxStates)
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
        def syncNothing(self):
            self._synced = self._end

        self.patch(journal.Journal, "_sync", syncNothing)
        _, checked, failures = self.explore(True, limit=1)
        self.assertTrue(any("lost" in problem for _, found in failures for problem in found),
                        failures[:3])

    def test_flagsAndMovesJournalled(self):
        """
        With the journal, no state a power cut may leave during flag changes and moves between INBOX and a folder loses, doubles or misplaces a message or an acknowledged flag change.
        """
        self.assertNoFailures(*self.explore(True, 1, crashstates.folderWorkload)[1:])

    def test_flagsAndMovesWithoutJournal(self):
        """
        Without the journal (each change synced, moves through their intent file), likewise.
        """
        self.assertNoFailures(*self.explore(False, 1, crashstates.folderWorkload)[1:])

    def test_mixedGroupJournalled(self):
        """
        With the journal, no state a power cut may leave during groups of deliveries, a flag change, a move and a delete on several mailboxes, answered after one sync, loses, doubles, resurrects or misplaces a message or an acknowledged flag change.
        """
        self.assertNoFailures(*self.explore(True, 1, crashstates.mixedWorkload)[1:])

    def test_mixedGroupWithoutJournal(self):
        """
        Without the journal (each command synced in its files), likewise.
        """
        self.assertNoFailures(*self.explore(False, 1, crashstates.mixedWorkload)[1:])

    def test_explorerFindsUnreplayedFlags(self):
        """
        The explorer has teeth for flag changes: with replay's F records ignored, it finds acknowledged flags lost.
        """
        from twisted_mail.stores.spool import replay

        self.patch(replay, "_replayFlags", lambda *args: None)
        _, checked, failures = self.explore(True, 1, crashstates.folderWorkload,
                                            maxStates=120)
        self.assertTrue(any("not the acknowledged" in problem
                            for _, found in failures for problem in found), failures[:3])
