"""
Flag changes and moves through the spool's write-ahead journal
(docs/journal.rst): one journal sync each, and after a power cut their
C{F} and C{M} records are applied exactly once (a move keeps the id).
"""

import itertools
import os

from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.crashstates import ManualThreads
from tests.test_journal import OTHER_BOOT, SpoolTestMixin
from twisted_mail import errors
from twisted_mail.mail.model import FLAGGED, SEEN
from twisted_mail.stores.spool import replay
from twisted_mail.stores.spool.journal import DELETE, DELIVERY, FLAGS, MOVE, readFrames
from twisted_mail.stores.spool.mboxfile import MboxFile
from twisted_mail.stores.spool.store import SpoolStore


def fileContents(path):
    """
    Every regular file under C{path} and its bytes, journals aside.
    """
    found = {}
    for top, dirs, files in os.walk(path):
        for name in files:
            if name.endswith(".journal"):
                continue
            full = os.path.join(top, name)
            with open(full, "rb") as f:
                found[full] = f.read()
    return found


def restore(path, contents):
    """
    Put back the bytes of C{contents} (L{fileContents}) into the same
    files, so that they keep their inodes (as after a power cut that lost
    the unsynced writes), and remove files made since, journals aside.
    """
    for full, data in contents.items():
        with open(full, "r+b" if os.path.exists(full) else "wb") as f:
            f.write(data)
            f.truncate(len(data))
    for top, dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(top, name)
            if full not in contents and not name.endswith(".journal"):
                os.unlink(full)


class JournalledStoreMixin:
    """
    A journalling spool store whose thread jobs wait for L{ok}, with amy's
    INBOX holding C{bodies}, checkpointed.
    """

    bodies = (b"one\n",)

    def setUp(self):
        self.reactor = ManualThreads()
        self.path = self.mktemp()
        self.store = SpoolStore(FilePath(self.path), reactor=self.reactor, journal=True)
        self.addCleanup(self.store.close)
        self.store.addUser("amy")
        for body in self.bodies:
            self.store.deliver("alice", "amy", body)
        self.ok(self.store.listFolders("amy"))  # makes Archive
        self.inbox = self.ok(self.store.openFolder("amy", "INBOX"))
        self.ids = [m.id for m in self.ok(self.inbox.listMessages()).messages]
        self.checkpoint()

    def ok(self, d):
        results = []
        d.addBoth(results.append)
        self.reactor.drain()
        (result,) = results
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    def checkpoint(self):
        self.ok(self.store._journalled.checkpointNow())


class JournalledFolderTests(JournalledStoreMixin, SpoolTestMixin, SynchronousTestCase):
    bodies = (b"one\n", b"two\n", b"three\n")

    def countSyncs(self):
        syncs = []
        realSync, realFsync = os.fdatasync, os.fsync
        self.patch(os, "fdatasync", lambda fd: (syncs.append(fd), realSync(fd))[1])
        self.patch(os, "fsync", lambda fd: (syncs.append(fd), realFsync(fd))[1])
        return syncs

    def journalRecords(self):
        path = os.path.join(self.path, self.store._journalled.journal.name)
        with open(path, "rb") as f:
            return [r for tx in readFrames(f.read()) for r in tx.records]

    def folderState(self, path):
        """
        What a fresh store shows: C{{folder: {id: (flags, body)}}}.
        """
        store = SpoolStore(FilePath(path), reactor=ManualThreads())
        self.addCleanup(store.close)
        reactor = store._reactor
        state = {}
        for name in ("INBOX", "Archive"):
            results = []
            store.openFolder("amy", name).addCallback(
                lambda view: view.listMessages()).addBoth(results.append)
            reactor.drain()
            state[name] = {m.id: (set(m.flags), m.subject) for m in results[0].messages}
        return state

    def test_flagChangeOneSync(self):
        """
        A flag change is acknowledged after one sync, of the journal, which holds its F record.
        """
        syncs = self.countSyncs()
        self.ok(self.inbox.setFlags([self.ids[0]], add=[FLAGGED]))
        self.assertEqual(syncs, [self.store._journalled.journal._fd])
        self.assertEqual([(r.type, r.msgid, r.flags) for r in self.journalRecords()],
                         [(FLAGS, self.ids[0], FLAGGED)])

    def test_moveOneSync(self):
        """
        A move is acknowledged after one sync, of the journal, which holds its M record; the message keeps its id and its flags.
        """
        self.ok(self.inbox.setFlags([self.ids[1]], add=[FLAGGED]))
        self.checkpoint()
        syncs = self.countSyncs()
        self.ok(self.inbox.moveMessages([self.ids[1]], "Archive"))
        self.assertEqual(syncs, [self.store._journalled.journal._fd])
        self.assertEqual([r.type for r in self.journalRecords()], [MOVE, FLAGS])
        archive = self.ok(self.store.openFolder("amy", "Archive"))
        moved = self.ok(archive.listMessages()).messages
        self.assertEqual([(m.id, m.flags) for m in moved],
                         [(self.ids[1], frozenset([FLAGGED]))])

    def powerCut(self, operations):
        """
        Run C{operations}, then recover, as after a power cut, the spool
        put back as it was before them (no unsynced write kept) with the
        journal they wrote; and the spool as they left it (every write
        kept).  Both recover to the same state, twice over.
        """
        before = fileContents(self.path)
        operations()
        journalName = self.store._journalled.journal.name
        with open(os.path.join(self.path, journalName), "rb") as f:
            journal = f.read()
        self.store.close()
        after = fileContents(self.path)
        states = []
        for contents in (before, after):
            restore(self.path, contents)
            for _ in range(2):
                with open(os.path.join(self.path, ".simplemail-99999999.journal"), "wb") as f:
                    f.write(journal)
                dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    report = replay.recoverJournals(
                        dirfd, lambda user: MboxFile(dirfd, user, itertools.count(1)),
                        OTHER_BOOT)
                finally:
                    os.close(dirfd)
                self.assertEqual([name for name, _, replayed in report if replayed],
                                 [".simplemail-99999999.journal"])
                states.append(self.folderState(self.path))
        return states

    def test_powerCutReplaysFlagsAndMove(self):
        """
        After a power cut that lost every unsynced write, replay applies acknowledged flag changes and moves exactly once, the moved message keeping its id.
        """
        def operations():
            self.ok(self.inbox.setFlags([self.ids[0]], add=[FLAGGED, SEEN]))
            self.ok(self.inbox.setFlags([self.ids[0]], remove=[SEEN]))
            self.ok(self.inbox.moveMessages([self.ids[0], self.ids[2]], "Archive"))
            archive = self.ok(self.store.openFolder("amy", "Archive"))
            self.ok(archive.setFlags([self.ids[2]], add=["$Label1"]))

        states = self.powerCut(operations)
        expected = {
            "INBOX": {self.ids[1]: (set(), "")},
            "Archive": {self.ids[0]: ({FLAGGED}, ""), self.ids[2]: ({"$Label1"}, "")},
        }
        for state in states:
            self.assertEqual(state, expected)

    def test_powerCutAfterMoveBack(self):
        """
        A message moved to a folder and back within one checkpoint is, after a power cut, in INBOX once, with its id.
        """
        def operations():
            self.ok(self.inbox.moveMessages([self.ids[0]], "Archive"))
            archive = self.ok(self.store.openFolder("amy", "Archive"))
            self.ok(archive.moveMessages([self.ids[0]], "INBOX"))

        for state in self.powerCut(operations):
            self.assertEqual(sorted(state["INBOX"]), sorted(self.ids))
            self.assertEqual(state["Archive"], {})


class QuickPatchTests(SynchronousTestCase):
    def test_sameAsPatchInPlace(self):
        """
        The quick flag patch of a record as the store writes it gives the bytes the full one does, for any flags, and declines records it cannot be sure of.
        """
        from twisted_mail.mail.message import idHeaderLine
        from twisted_mail.stores.spool.flags import (
            parseHeader,
            patchInPlace,
            quickPatch,
            storeLines,
        )

        record = (b"From a@localhost Sun Dec  6 08:00:00 2026\n" + idHeaderLine("AAAAAAAAAAAAAAAA")
                  + storeLines(7, frozenset()) + b"From: a@localhost\nSubject: x\n\nbody\n\n")
        for flags in (frozenset(), {SEEN}, {SEEN, FLAGGED, "$Label1"}, {"k" * 40}):
            self.assertEqual(quickPatch(record, flags),
                             patchInPlace(record, parseHeader(record), flags))
        self.assertIsNone(quickPatch(record, {"k" * 80}))
        mutt = record.replace(b"Subject: x\n", b"Subject: x\nStatus: RO\n")
        self.assertIsNone(quickPatch(mutt, {SEEN}))
        self.assertIsNone(quickPatch(record[:60], {SEEN}))


class SeenTests(JournalledStoreMixin, SynchronousTestCase):
    def test_seenAtOnceWrittenLater(self):
        """
        markSeen shows at once to another view, costs no sync, and reaches the file (with an F record in the journal) and then a checkpoint within a second or so.
        """
        view = self.inbox
        msgid = self.ids[0]
        syncs = []
        realSync, realFsync = os.fdatasync, os.fsync
        self.patch(os, "fdatasync", lambda fd: (syncs.append(fd), realSync(fd))[1])
        self.patch(os, "fsync", lambda fd: (syncs.append(fd), realFsync(fd))[1])
        self.ok(view.markSeen([msgid]))
        other = self.ok(self.store.openFolder("amy", "INBOX"))
        self.assertEqual(self.ok(other.listMessages()).messages[0].flags, frozenset([SEEN]))
        self.assertEqual(syncs, [])
        with open(os.path.join(self.path, "amy"), "rb") as f:
            self.assertIn(b"\nStatus: \n", f.read())
        self.reactor.advance(0.5)
        self.reactor.drain()
        with open(os.path.join(self.path, "amy"), "rb") as f:
            self.assertIn(b"\nStatus: RO\n", f.read())
        journalPath = os.path.join(self.path, self.store._journalled.journal.name)
        with open(journalPath, "rb") as f:
            records = [r for tx in readFrames(f.read()) for r in tx.records]
        self.assertEqual([(r.type, r.msgid, r.flags) for r in records],
                         [(FLAGS, msgid, SEEN)])
        self.assertEqual(syncs, [])
        self.reactor.advance(1)
        self.reactor.drain()
        self.assertNotEqual(syncs, [])
        self.assertEqual(self.store._journalled.journal.size, 0)


class GroupCommitTests(JournalledStoreMixin, SynchronousTestCase):
    bodies = (b"one\n", b"two\n", b"three\n")

    def fileBytes(self):
        """
        Every mbox and delete-mark file of the spool and its bytes.
        """
        return {name: data for name, data in fileContents(self.path).items()
                if not name.endswith((".uids", ".index", ".lockpid"))}

    def test_groupOneSync(self):
        """
        Flag changes, a move and a delete on several mailboxes, queued together with deliveries, are all acknowledged after one sync, of the journal, which holds all their records; no file is written before that sync, and each change is in its file when it is acknowledged.
        """
        store = self.store
        others = ("bob", "cyd", "dan")
        for user in others:
            self.ok(store.addUser(user))
            self.ok(store.deliver("alice", user, b"for " + user.encode("ascii") + b"\n"))
        # A message in amy's Archive, and no deleted record of it in INBOX.
        self.ok(self.inbox.moveMessages([self.ids[1]], "Archive"))
        self.ok(self.inbox.close())
        archive = self.ok(store.openFolder("amy", "Archive"))
        views = {user: self.ok(store.openFolder(user, "INBOX")) for user in others}
        ids = {user: self.ok(view.listMessages()).messages[0].id
               for user, view in views.items()}
        self.checkpoint()
        journal = self.store._journalled.journal
        before = self.fileBytes()
        events = []
        realSync = os.fdatasync

        def sync(fd):
            events.append(("sync", fd, self.fileBytes()))
            realSync(fd)

        self.patch(os, "fdatasync", sync)
        self.patch(os, "fsync", lambda fd: events.append(("fsync", fd)))

        def acked(result, what):
            events.append(("ack", what, result))

        store.deliver("alice", "amy", b"four\n").addBoth(acked, "deliver amy")
        archive.moveMessages([self.ids[1]], "INBOX").addBoth(acked, "move amy")
        views["bob"].setFlags([ids["bob"]], add=[SEEN]).addBoth(acked, "flag bob")
        views["cyd"].deleteMessages([ids["cyd"]]).addBoth(acked, "delete cyd")
        views["dan"].setFlags([ids["dan"]], add=[FLAGGED]).addBoth(acked, "flag dan")
        store.deliver("alice", "bob", b"five\n").addBoth(acked, "deliver bob")
        self.assertEqual(events, [])
        self.reactor.drain()

        self.assertEqual(events[0][:2], ("sync", journal._fd))
        self.assertEqual(sorted(e[:2] for e in events[1:]), [
            ("ack", "delete cyd"), ("ack", "deliver amy"), ("ack", "deliver bob"),
            ("ack", "flag bob"), ("ack", "flag dan"), ("ack", "move amy")])
        for event in events[1:]:
            self.assertNotIsInstance(event[2], Failure)
        # Nothing was written to the files before the sync.
        self.assertEqual(events[0][2], before)
        self.assertEqual(sorted(r.type for r in self.journalRecords()),
                         sorted([DELIVERY, MOVE, FLAGS, DELETE, FLAGS, DELIVERY]))
        # Each change is in the files (every reader sees it).
        state = self.folderState()
        self.assertIn(self.ids[1], state["amy"]["INBOX"])
        self.assertEqual(len(state["amy"]["INBOX"]), 4)
        self.assertEqual(state["amy"]["Archive"], {})
        self.assertEqual(state["bob"]["INBOX"][ids["bob"]], {SEEN})
        self.assertEqual(len(state["bob"]["INBOX"]), 2)
        self.assertEqual(state["cyd"]["INBOX"], {})
        self.assertEqual(state["dan"]["INBOX"], {ids["dan"]: {FLAGGED}})

    def journalRecords(self):
        path = os.path.join(self.path, self.store._journalled.journal.name)
        with open(path, "rb") as f:
            return [r for tx in readFrames(f.read()) for r in tx.records]

    def folderState(self):
        """
        What a fresh store on the spool shows: C{{user: {folder: {id:
        flags}}}}.
        """
        store = SpoolStore(FilePath(self.path), reactor=ManualThreads())
        self.addCleanup(store.close)
        state = {}
        for user in ("amy", "bob", "cyd", "dan"):
            for name in ("INBOX", "Archive"):
                results = []
                store.openFolder(user, name).addCallback(
                    lambda view: view.listMessages()).addBoth(results.append)
                store._reactor.drain()
                if isinstance(results[0], Failure):
                    continue
                state.setdefault(user, {})[name] = {
                    m.id: set(m.flags) for m in results[0].messages}
        return state

    def test_deletedMeanwhileRefused(self):
        """
        A DELM whose message another process deletes between its journal frame and its file write (two --workers) is refused, not acknowledged a second time.
        """
        self.ok(self.store.addUser("bob"))
        session = self.ok(self.store.openMailbox("amy"))
        self.ok(session.readMessage())
        other = SpoolStore(FilePath(self.path), reactor=ManualThreads(), journal=True)
        self.addCleanup(other.close)
        view = []
        other.openFolder("amy", "INBOX").addBoth(view.append)
        other._reactor.drain()
        journal = self.store._journalled.journal
        realSync = journal._sync

        def sync():
            # The other process's delete lands while ours waits for the sync.
            view[0].deleteMessages([self.ids[0]]).addBoth(view.append)
            other._reactor.drain()
            realSync()

        self.patch(journal, "_sync", sync)
        results = []
        session.deleteMessage().addBoth(results.append)
        self.store.deliver("alice", "bob", b"beside\n").addBoth(results.append)
        self.reactor.drain()
        self.assertEqual(view[1], [self.ids[0]])
        self.assertIsInstance(results[0], Failure)
        results[0].trap(errors.NoCurrentMessage)
        self.assertIsInstance(results[1], str)
