"""
The crash-state explorer (tests/crashstates.py), bounded for CI: every
on-disk state a power cut may leave during scripted workloads on the
spool (deliveries and deletes; flag changes and moves between folders),
with and without the journal, and during recovery itself, recovers with
nothing acknowledged lost, doubled, resurrected, misplaced or with other
flags.  The full exploration is C{benchmarks/crashstates.py}.
"""

import os
import shutil

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests import crashstates
from twisted_mail.stores.spool import folderfile, journal
from twisted_mail.stores.spool.store import SpoolStore

#: Combinations taken per crash point in CI (the full run takes 64).
LIMIT = 4


def spyOnCopies(case):
    """
    Record, for the rest of C{case}, every record the spool takes for a copy
    another program made (C{FolderFile._findCopies}): C{[(file, uid)]}.
    """
    found = []
    real = folderfile.FolderFile._findCopies

    def spy(mbox, first):
        before = set(mbox._copies)
        real(mbox, first)
        found.extend((mbox.userid, entry.uid) for entry in mbox.entries
                     if entry.serial in mbox._copies and entry.serial not in before)

    case.patch(folderfile.FolderFile, "_findCopies", spy)
    return found


class ExplorerTests(SynchronousTestCase):
    def explore(self, journalled, limit=LIMIT, workload=crashstates.standardWorkload,
                maxStates=None):
        path = os.path.join(os.path.abspath(self.mktemp()), "spool")
        workload = workload(path, journal=journalled)
        self.addCleanup(workload.close)
        copies = spyOnCopies(self)
        generated, checked, failures = crashstates.explore(
            workload.recorder, workload.users, workload.sent, journalled, limit=limit,
            maxStates=maxStates)
        # Nothing but the store wrote these spools: whatever a power cut
        # left, none of our mail may be taken for another program's copy
        # (which would give an acknowledged message a new id and UID).
        self.assertEqual(copies[:3], [])
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


class UidExplorerTests(SynchronousTestCase):
    """
    UIDs are never given twice under one UIDVALIDITY, even when a power cut
    is followed by another program deleting the newest mail before the
    server looks (docs/folders.rst, "Ids and UIDs").
    """

    def explore(self, journalled):
        path = os.path.join(os.path.abspath(self.mktemp()), "spool")
        workload = crashstates.uidWorkload(path, journal=journalled)
        self.addCleanup(workload.close)
        copies = spyOnCopies(self)
        found = crashstates.exploreUids(workload.recorder, workload.users, journalled,
                                        limit=LIMIT)[1:]
        self.assertEqual(copies[:3], [])
        return found

    def test_copiesFoundHaveTeeth(self):
        """
        The check that none of our mail is taken for a copy can fail: a record another program appends with a UID the store gave before is found.
        """
        copies = spyOnCopies(self)
        path = os.path.join(os.path.abspath(self.mktemp()), "spool")
        workload = crashstates.uidWorkload(path, journal=True)
        workload.close()
        mbox = os.path.join(path, "amy")
        with open(mbox, "rb") as f:
            first = f.read().split(b"\nFrom ", 1)[0]
        with open(mbox, "ab") as f:
            f.write(b"\n" + first)
        crashstates.visibleBodies(path, ["amy"], True)
        self.assertEqual(copies, [("amy", 1)])

    def test_journalled(self):
        """
        With the journal, no state a power cut may leave gives an acknowledged message's UID again after another program emptied the mailbox.
        """
        checked, failures = self.explore(True)
        self.assertGreater(checked, 20)
        self.assertEqual(failures[:3], [])

    def test_withoutJournal(self):
        """
        Without the journal, likewise.
        """
        checked, failures = self.explore(False)
        self.assertGreater(checked, 20)
        self.assertEqual(failures[:3], [])


class CopyAfterPowerCutTests(SynchronousTestCase):
    """
    After a power cut, the UID record is written again from what the file
    holds; a copy another program made before the restart is still found.
    """

    def test_copyAfterPowerCut(self):
        """
        When a power cut lost the UID record's last write and mutt then copied a message in with the store's lines, recovery keeps every acknowledged message's id and UID and gives the copy a new id.
        """
        path = os.path.join(os.path.abspath(self.mktemp()), "spool")
        w = crashstates.Workload(path, users=("bob",), journal=True)
        self.addCleanup(w.close)
        w.deliver("bob")
        w.deliver("bob")
        w.checkpoint()
        durable = FilePath(path).child(".bob.uids").getContent()
        w.deliver("bob")
        mbox = w.store._mailboxes["bob"].mbox
        before = [(e.msgid, e.uid) for e in mbox.entries]
        # The disk after the cut: everything written, but the UID record's
        # writes since the checkpoint, and the journal not emptied.
        disk = os.path.join(os.path.abspath(self.mktemp()), "spool")
        shutil.copytree(path, disk)
        FilePath(disk).child(".bob.uids").setContent(durable)
        # A message of another folder's, with the next UID here.
        inbox = FilePath(disk).child("bob")
        with open(inbox.path, "ab") as f:
            f.write(b"\nFrom amy@localhost Thu Nov 26 12:00:00 2026\n"
                    b"X-Simplemail-Id: AAAAAAAAAAAAAAAA\nX-UID: 4\n"
                    b"Subject: copied\n\ncopied\n")
        copies = spyOnCopies(self)
        self.patch(journal, "bootId", lambda: b"another boot....")
        store = SpoolStore(FilePath(disk), reactor=crashstates.SynchronousThreads(),
                           journal=True, searchIndex=False)
        self.addCleanup(store.close)
        store.repairNow()
        view = crashstates._result(store.openFolder("bob", "INBOX"))
        listing = crashstates._result(view.listMessages()).messages
        self.assertEqual([(m.id, m.uid) for m in listing[:3]], before)
        self.assertEqual(len(listing), 4)
        self.assertNotIn(listing[3].id, [msgid for msgid, _ in before] + ["AAAAAAAAAAAAAAAA"])
        self.assertGreater(listing[3].uid, 3)
        self.assertEqual(copies, [])
