"""
Tests for the spool's write-ahead journal (docs/journal.rst): its format
and torn tails, a batch's single sync, checkpoints, and replay.
"""

import os
import shutil
import struct
import zlib

from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.crashstates import ManualThreads
from tests.test_store import makeSpoolStore
from twisted_mail import errors
from twisted_mail.stores.spool import journal, replay
from twisted_mail.stores.spool.journal import (
    ABORT,
    DELETE,
    DELIVERY,
    FLAGS,
    MOVE,
    Record,
    encodeFrame,
    readFrames,
)
from twisted_mail.stores.spool.mboxfile import MboxFile
from twisted_mail.stores.spool.records import _messageKey
from twisted_mail.stores.spool.store import SpoolStore

BOOT = b"b" * 16
OTHER_BOOT = b"o" * 16


def mboxRecord(msgid, body):
    return (b"From sender@localhost Sun Dec  6 08:00:00 2026\n"
            b"X-Simplemail-Id: " + msgid.encode() + b"\n"
            b"From: sender@localhost\n\n" + body + b"\n")


def sampleRecords(ino=7):
    """
    One record of each type.
    """
    return {
        DELIVERY: Record(DELIVERY, user="amy", inode=ino, msgid="AAAAAAAAAAAAAAAA",
                         data=mboxRecord("AAAAAAAAAAAAAAAA", b"hello")),
        DELETE: Record(DELETE, user="amy", msgid="AAAAAAAAAAAAAAAA", key=b"k" * 16),
        ABORT: Record(ABORT, user="amy", msgid="BBBBBBBBBBBBBBBB"),
        FLAGS: Record(FLAGS, user="amy", msgid="AAAAAAAAAAAAAAAA", flags="\\Seen"),
        MOVE: Record(MOVE, user="amy", msgid="AAAAAAAAAAAAAAAA", toUser="bob", inode=ino,
                     newMsgid="CCCCCCCCCCCCCCCC",
                     data=mboxRecord("CCCCCCCCCCCCCCCC", b"moved")),
    }


def frameBytes(epoch, txid, records, boot=BOOT):
    return b"".join(bytes(c) for c in encodeFrame(epoch, txid, boot, records))


class FormatTests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        Every record type reads back with the fields it was written with.
        """
        records = list(sampleRecords().values())
        found = readFrames(frameBytes(1, 1, records))
        self.assertEqual(len(found), 1)
        self.assertEqual([(r.type, r.fields) for r in found[0].records],
                         [(r.type, {k: bytes(v) if isinstance(v, bytes) else v
                                    for k, v in r.fields.items()}) for r in records])

    def test_deliveryEncodedAsEveryField(self):
        """
        A delivery record's quick encoding is byte for byte the field-by-field one every record type has, so journals read the same either way.
        """
        for data in ([b"From a\n", b"X-Id: 1\n", b"body\n" * 300], b"one piece\n", []):
            record = Record(DELIVERY, user="b\xf6b/f3a9", inode=2 ** 40 + 3,
                            msgid="\u00e9t\xe9-1", data=data)
            self.assertEqual(b"".join(record.chunks()), b"".join(record._fieldChunks()))

    def test_tornTailEveryOffset(self):
        """
        For every record type, a journal cut at any byte of its last frame reads as the whole frames before it.
        """
        first = frameBytes(1, 1, [sampleRecords()[DELIVERY]])
        for kind, record in sampleRecords().items():
            last = frameBytes(1, 2, [record])
            for cut in range(len(last)):
                found = readFrames(first + last[:cut])
                self.assertEqual([tx.txid for tx in found], [1], (kind, cut))
            self.assertEqual([tx.txid for tx in readFrames(first + last)], [1, 2])

    def test_corruptByteEndsJournal(self):
        """
        A changed byte inside a frame (checksum) ends the journal there.
        """
        first = frameBytes(1, 1, [sampleRecords()[DELIVERY]])
        second = bytearray(frameBytes(1, 2, [sampleRecords()[DELETE]]))
        second[20] ^= 0xFF
        self.assertEqual([tx.txid for tx in readFrames(first + bytes(second))], [1])

    def test_staleEpochEndsJournal(self):
        """
        Frames of an earlier epoch after the current ones (an emptying the disk did not keep) are not read.
        """
        data = frameBytes(2, 5, [sampleRecords()[DELETE]]) + frameBytes(1, 3, [sampleRecords()[DELETE]])
        self.assertEqual([tx.txid for tx in readFrames(data)], [5])

    def test_unknownTypeEndsJournal(self):
        """
        A frame holding a record type this version does not know ends the journal.
        """
        good = frameBytes(1, 1, [sampleRecords()[DELETE]])
        payload = b"\x01\x00\x00\x00" + b"\x02" + b"\0" * 7 + BOOT + b"\x01\x00" + b"Z"
        bad = struct.pack("<4sII", b"SMJ1", len(payload), zlib.crc32(payload)) + payload
        self.assertEqual([tx.txid for tx in readFrames(good + bad)], [1])

    def test_plan(self):
        """
        Replay's plan puts deliveries first, skips aborted ones, and keeps moves and flag changes in journal order.
        """
        records = sampleRecords()
        aborted = Record(DELIVERY, user="amy", inode=7, msgid="BBBBBBBBBBBBBBBB", data=b"x")
        flags2 = Record(FLAGS, user="amy", msgid="AAAAAAAAAAAAAAAA", flags="\\Seen \\Flagged")
        txs = readFrames(frameBytes(1, 1, [records[DELIVERY], aborted, records[FLAGS]])
                         + frameBytes(1, 2, [records[ABORT], records[MOVE], flags2]))
        deliveries, steps = replay.plan(txs)
        self.assertEqual([m for _, m, _ in deliveries["amy"]], ["AAAAAAAAAAAAAAAA"])
        self.assertEqual(list(deliveries), ["amy"])
        self.assertEqual([(r.type, r.msgid) for r in steps],
                         [(FLAGS, "AAAAAAAAAAAAAAAA"), (MOVE, "AAAAAAAAAAAAAAAA"),
                          (FLAGS, "AAAAAAAAAAAAAAAA")])
        self.assertEqual([m for _, m, _ in replay.movedTo(steps)["bob"]],
                         ["CCCCCCCCCCCCCCCC"])

    def test_abortCancelsOnlyTheMoveBeforeIt(self):
        """
        An abort cancels the move of that id to that file just before it, not a later move of the same message.
        """
        move = sampleRecords()[MOVE]
        abort = Record(ABORT, user="bob", msgid="CCCCCCCCCCCCCCCC")
        txs = readFrames(frameBytes(1, 1, [move]) + frameBytes(1, 2, [abort])
                         + frameBytes(1, 3, [move]))
        _, steps = replay.plan(txs)
        self.assertEqual([r.type for r in steps], [MOVE])


class SpoolTestMixin:
    def makeSpool(self, users=("amy", "bob")):
        path = self.mktemp()
        store = makeSpoolStore(self, path)
        for user in users:
            store.addUser(user)
        return store

    def bodies(self, path, user):
        """
        The bodies a fresh store shows in C{user}'s mailbox.
        """
        store = makeSpoolStore(self, path)
        session = self.successResultOf(store.openMailbox(user))
        found = []
        while True:
            results = []
            session.readMessage().addBoth(results.append)
            if isinstance(results[0], Failure):
                results[0].trap(errors.NoMoreMail)
                return found
            found.append(results[0].split(b"\n\n", 1)[1])

    def recover(self, store, boot=OTHER_BOOT):
        return replay.recoverJournals(
            store._dirfd,
            lambda user: MboxFile(store._dirfd, user, store._serials),
            boot)

    def writeJournal(self, store, data, name=".simplemail-99999999.journal"):
        with open(os.path.join(store.path, name), "wb") as f:
            f.write(data)
        return name


class ReplayTests(SpoolTestMixin, SynchronousTestCase):
    def test_replayEveryOffsetOfEachType(self):
        """
        After a power cut, a journal torn at any byte of its last frame is replayed up to the frame before: a delivery, a delete, an abort or a move in the torn frame has no effect, in a whole frame it does.
        """
        # What replay decides is checked here, not that it syncs (other
        # tests and the explorer do): spare the disk a thousand syncs.
        self.patch(os, "fsync", lambda fd: None)
        self.patch(os, "fdatasync", lambda fd: None)
        for kind in (DELIVERY, DELETE, ABORT, MOVE):
            store = self.makeSpool()
            amy = os.stat(os.path.join(store.path, "amy")).st_ino
            bob = os.stat(os.path.join(store.path, "bob")).st_ino
            first = Record(DELIVERY, user="amy", inode=amy, msgid="AAAAAAAAAAAAAAAA",
                           data=mboxRecord("AAAAAAAAAAAAAAAA", b"first"))
            second = {
                DELIVERY: Record(DELIVERY, user="amy", inode=amy, msgid="BBBBBBBBBBBBBBBB",
                                 data=mboxRecord("BBBBBBBBBBBBBBBB", b"second")),
                DELETE: Record(DELETE, user="amy", msgid="AAAAAAAAAAAAAAAA",
                               key=_messageKey(first.data)),
                ABORT: Record(ABORT, user="amy", msgid="AAAAAAAAAAAAAAAA"),
                MOVE: Record(MOVE, user="amy", msgid="AAAAAAAAAAAAAAAA", toUser="bob",
                             inode=bob, newMsgid="CCCCCCCCCCCCCCCC",
                             data=mboxRecord("CCCCCCCCCCCCCCCC", b"first")),
            }[kind]
            whole = {
                DELIVERY: {"amy": [b"first\n", b"second\n"], "bob": []},
                DELETE: {"amy": [], "bob": []},
                ABORT: {"amy": [], "bob": []},
                MOVE: {"amy": [], "bob": [b"first\n"]},
            }[kind]
            head = frameBytes(1, 1, [first])
            tail = frameBytes(1, 2, [second])
            amyPath = os.path.join(store.path, "amy")
            bobPath = os.path.join(store.path, "bob")
            for cut in range(len(tail) + 1):
                for path in (amyPath, bobPath):
                    open(path, "wb").close()
                for leftover in os.listdir(store.path):
                    if leftover.startswith(".amy.") or leftover.startswith(".bob."):
                        leftover = os.path.join(store.path, leftover)
                        if os.path.isdir(leftover):
                            shutil.rmtree(leftover)  # a user's folders
                        else:
                            os.unlink(leftover)
                self.writeJournal(store, head + tail[:cut])
                self.recover(store)
                expected = whole if cut == len(tail) else {"amy": [b"first\n"], "bob": []}
                found = {u: self.bodies(store.path, u) for u in ("amy", "bob")}
                self.assertEqual(found, expected, (kind, cut))
                self.assertEqual([n for n in os.listdir(store.path) if n.endswith(".journal")
                                  and "99999999" in n], [])

    def test_replayEveryOffsetOfAGroup(self):
        """
        After a power cut, a group's frames (a delivery, a delete, a move with its flags, a flag change, on two mailboxes; written together, synced once) torn at any byte are replayed up to the last whole frame: never part of a frame, every whole one exactly once.
        """
        self.patch(os, "fsync", lambda fd: None)
        self.patch(os, "fdatasync", lambda fd: None)
        store = self.makeSpool()
        amy = os.stat(os.path.join(store.path, "amy")).st_ino
        bob = os.stat(os.path.join(store.path, "bob")).st_ino
        ids = {name: name[0].upper() * 16 for name in ("first", "kept", "second")}

        def record(name):
            return mboxRecord(ids[name], name.encode())

        head = frameBytes(1, 1, [
            Record(DELIVERY, user="amy", inode=amy, msgid=ids["first"], data=record("first")),
            Record(DELIVERY, user="bob", inode=bob, msgid=ids["kept"], data=record("kept"))])
        group = [
            [Record(DELIVERY, user="amy", inode=amy, msgid=ids["second"],
                    data=record("second"))],
            [Record(DELETE, user="bob", msgid=ids["kept"], key=_messageKey(record("kept")))],
            [Record(MOVE, user="amy", msgid=ids["first"], toUser="bob", inode=bob,
                    newMsgid=ids["first"], data=record("first")),
             Record(FLAGS, user="bob", msgid=ids["first"], flags="\\Flagged")],
            [Record(FLAGS, user="amy", msgid=ids["second"], flags="\\Seen")],
        ]
        frames = [frameBytes(1, 2 + i, records) for i, records in enumerate(group)]
        # What a fresh store shows after the first k whole frames.
        states = [
            {"amy": [("first", set())], "bob": [("kept", set())]},
            {"amy": [("first", set()), ("second", set())], "bob": [("kept", set())]},
            {"amy": [("first", set()), ("second", set())], "bob": []},
            {"amy": [("second", set())], "bob": [("first", {"\\Flagged"})]},
            {"amy": [("second", {"\\Seen"})], "bob": [("first", {"\\Flagged"})]},
        ]
        tail = b"".join(frames)
        ends = [sum(len(f) for f in frames[:k]) for k in range(len(frames) + 1)]
        for cut in range(len(tail) + 1):
            for user in ("amy", "bob"):
                open(os.path.join(store.path, user), "wb").close()
            for leftover in os.listdir(store.path):
                if leftover.startswith((".amy.", ".bob.")):
                    os.unlink(os.path.join(store.path, leftover))
            self.writeJournal(store, head + tail[:cut])
            self.recover(store)
            whole = max(k for k, end in enumerate(ends) if end <= cut)
            self.assertEqual(self.shown(store.path), states[whole], cut)

    def shown(self, path):
        """
        What a fresh store shows: C{{user: [(body, flags)]}}.
        """
        store = makeSpoolStore(self, path)
        found = {}
        for user in ("amy", "bob"):
            view = self.successResultOf(store.openFolder(user, "INBOX"))
            found[user] = [
                (self.successResultOf(view.fetchMessage(m.id)).split(b"\n\n", 1)[1]
                 .strip().decode(), set(m.flags))
                for m in self.successResultOf(view.listMessages()).messages]
        return found

    def test_replayIsIdempotent(self):
        """
        Replaying a journal whose records are in the files already adds nothing.
        """
        store = self.makeSpool()
        amy = os.stat(os.path.join(store.path, "amy")).st_ino
        record = Record(DELIVERY, user="amy", inode=amy, msgid="AAAAAAAAAAAAAAAA",
                        data=mboxRecord("AAAAAAAAAAAAAAAA", b"once"))
        for _ in range(3):
            self.writeJournal(store, frameBytes(1, 1, [record]))
            self.recover(store)
        self.assertEqual(self.bodies(store.path, "amy"), [b"once\n"])

    def test_tornRecordCompleted(self):
        """
        A journalled record torn at the end of its mailbox by a power cut is cut off and written whole, once.
        """
        store = self.makeSpool()
        path = os.path.join(store.path, "amy")
        data = mboxRecord("AAAAAAAAAAAAAAAA", b"torn " * 200)
        for cut in (1, 3, 5, 40, len(data) // 2, len(data) - 2):
            with open(path, "wb") as f:
                f.write(mboxRecord("ZZZZZZZZZZZZZZZZ", b"before") + b"\n" + data[:cut])
            amy = os.stat(path).st_ino
            record = Record(DELIVERY, user="amy", inode=amy, msgid="AAAAAAAAAAAAAAAA",
                            data=data)
            self.writeJournal(store, frameBytes(1, 1, [record]))
            self.recover(store)
            self.assertEqual(self.bodies(store.path, "amy"),
                             [b"before\n", b"torn " * 200 + b"\n"], cut)

    def test_replacedFileSkipped(self):
        """
        A delivery journalled for a file an expunge has replaced since is not applied again (it would resurrect a deleted message).
        """
        store = self.makeSpool()
        record = Record(DELIVERY, user="amy", inode=1, msgid="AAAAAAAAAAAAAAAA",
                        data=mboxRecord("AAAAAAAAAAAAAAAA", b"gone"))
        self.writeJournal(store, frameBytes(1, 1, [record]))
        self.recover(store)
        self.assertEqual(self.bodies(store.path, "amy"), [])

    def test_sameBootOnlySynced(self):
        """
        A dead process's journal from this boot is not replayed: what it did not write was never acknowledged.  It is removed.
        """
        store = self.makeSpool()
        amy = os.stat(os.path.join(store.path, "amy")).st_ino
        record = Record(DELIVERY, user="amy", inode=amy, msgid="AAAAAAAAAAAAAAAA",
                        data=mboxRecord("AAAAAAAAAAAAAAAA", b"never acked"))
        name = self.writeJournal(store, frameBytes(1, 1, [record], boot=BOOT))
        report = self.recover(store, boot=BOOT)
        self.assertEqual(report, [(name, ["amy"], False)])
        self.assertEqual(self.bodies(store.path, "amy"), [])
        self.assertFalse(os.path.exists(os.path.join(store.path, name)))

    def test_liveJournalLeftAlone(self):
        """
        The journal of a live store is not recovered by another.
        """
        a = SpoolStore(FilePath(self.mktemp()), reactor=ManualThreads(), journal=True)
        self.addCleanup(a.close)
        name = a._journalled.journal.name
        self.assertEqual(self.recover(a), [])
        self.assertTrue(os.path.exists(os.path.join(a.path, name)))


class BatchTests(SpoolTestMixin, SynchronousTestCase):
    def makeJournalled(self, users=("amy", "bob", "cyd")):
        reactor = ManualThreads()
        store = SpoolStore(FilePath(self.mktemp()), reactor=reactor, journal=True)
        self.addCleanup(store.close)
        for user in users:
            store.addUser(user)
        reactor.drain()
        return store, reactor

    def test_oneSyncPerBatch(self):
        """
        A batch of deliveries to three mailboxes is acknowledged after one sync, of the journal, and each message is in its file (readers see it) when it is acknowledged.
        """
        store, reactor = self.makeJournalled()
        syncs = []
        realSync = os.fdatasync
        self.patch(journal.os, "fdatasync", lambda fd: (syncs.append(fd), realSync(fd))[1])
        results = []
        for user in ("amy", "bob", "cyd", "amy"):
            store.deliver("alice", user, b"to " + user.encode() + b"\n").addBoth(results.append)
        reactor.drain()
        # Each acknowledged with its new message's id.
        self.assertEqual([type(r) for r in results], [str] * 4)
        self.assertEqual(len(set(results)), 4)
        self.assertEqual(syncs, [store._journalled.journal._fd])
        with open(os.path.join(store.path, "amy"), "rb") as f:
            self.assertEqual(f.read().count(b"\nto amy\n"), 2)

    def test_checkpointSyncsAndEmpties(self):
        """
        A second after a batch the written files are synced and the journal emptied.
        """
        store, reactor = self.makeJournalled()
        store.deliver("alice", "amy", b"hello\n")
        reactor.drain()
        j = store._journalled.journal
        self.assertGreater(j.size, 0)
        reactor.advance(1.0)
        reactor.drain()
        self.assertEqual(j.size, 0)
        self.assertEqual(os.path.getsize(os.path.join(store.path, j.name)), 0)
        self.assertEqual(j.dirty, set())

    def test_deleteJournalled(self):
        """
        A delete is made durable by one journal sync and hidden at once.
        """
        store, reactor = self.makeJournalled()
        store.deliver("alice", "amy", b"hello\n")
        reactor.drain()
        session = []
        store.openMailbox("amy").addBoth(session.append)
        reactor.drain()
        listing = []
        session[0].listMessages().addBoth(listing.append)
        reactor.drain()
        msgid = listing[0].messages[0].id
        syncs = []
        realSync = os.fdatasync
        self.patch(journal.os, "fdatasync", lambda fd: (syncs.append(fd), realSync(fd))[1])
        done = []
        session[0].deleteMessages([msgid]).addBoth(done.append)
        reactor.drain()
        self.assertEqual(done, [[msgid]])
        self.assertEqual(syncs, [store._journalled.journal._fd])
        txs = readFrames(open(os.path.join(store.path, store._journalled.journal.name),
                              "rb").read())
        self.assertEqual([r.type for r in txs[-1].records], [DELETE])
        self.assertEqual(self.bodies(store.path, "amy"), [])

    def test_closeRemovesJournal(self):
        """
        When the store closes its journal is checkpointed and removed.
        """
        store, reactor = self.makeJournalled()
        store.deliver("alice", "amy", b"hello\n")
        reactor.drain()
        name = store._journalled.journal.name
        store.close()
        self.assertFalse(os.path.exists(os.path.join(store.path, name)))
        self.assertEqual(self.bodies(store.path, "amy"), [b"hello\n"])

    def test_fileReplacedBeforeLock(self):
        """
        When an expunge replaces a mailbox between the batch's look at it and its lock, the delivery is journalled again for the new file and stored once, and replaying that journal after a power cut adds nothing.
        """
        from twisted_mail.stores.spool import journalled

        store, reactor = self.makeJournalled()
        realStat = os.stat
        seen = []

        class Stale:
            st_ino = 1

        def stat(name, *args, **kwargs):
            if name == "amy" and not seen:
                seen.append(name)
                return Stale()
            return realStat(name, *args, **kwargs)

        self.patch(journalled.os, "stat", stat)
        results = []
        store.deliver("alice", "amy", b"hello\n").addBoth(results.append)
        reactor.drain()
        self.patch(journalled.os, "stat", realStat)
        self.assertEqual([type(r) for r in results], [str])
        journalPath = os.path.join(store.path, store._journalled.journal.name)
        with open(journalPath, "rb") as f:
            data = f.read()
        inodes = [tx.records[0].inode for tx in readFrames(data)]
        self.assertEqual(inodes, [1, os.stat(os.path.join(store.path, "amy")).st_ino])
        self.writeJournal(store, data)
        self.recover(store)
        self.assertEqual(self.bodies(store.path, "amy"), [b"hello\n"])
