"""
The mailbox model in the spool (docs/folders.rst): where folders live,
permanent ids and UIDs for mail other programs wrote, flags where mutt
looks and changed in place, crash recovery of rewrites and moves, and
events across processes.
"""

import mailbox
import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail import errors
from twisted_mail.mail.model import FLAGGED, INBOX, SEEN
from twisted_mail.stores.spool.folders import Folders
from twisted_mail.stores.spool.store import POLL_INTERVAL

from .test_store import makeSpoolStore

MESSAGE = b"From: a@example.com\nSubject: hello\n\nbody text\n"


class SpoolModelTestCase(SynchronousTestCase):
    def setUp(self):
        self.path = self.mktemp()
        self.store = makeSpoolStore(self, self.path)
        self.ok(self.store.addUser("bob"))
        self.inbox = os.path.join(self.path, "bob")

    def ok(self, d):
        return self.successResultOf(d)

    def fails(self, d, exceptionType):
        return self.failureResultOf(d, exceptionType).value

    def again(self):
        return makeSpoolStore(self, self.path)

    def listed(self, name=INBOX, store=None):
        view = self.ok((store or self.store).openFolder("bob", name))
        return self.ok(view.listMessages()).messages

    def appendForeign(self, *bodies, path=None):
        """
        Append messages as procmail or Python's mailbox module does.
        """
        box = mailbox.mbox(path or self.inbox)
        box.lock()
        for body in bodies:
            box.add(b"From: x@y\nSubject: foreign\n\n" + body)
        box.flush()
        box.unlock()
        box.close()

    def folderFile(self, name):
        folders = Folders(self.store._dirfd, "bob")
        self.addCleanup(folders.close)
        filename = folders.scan()[name][0]
        return os.path.join(self.path, ".bob.folders", filename)


class LayoutTests(SpoolModelTestCase):
    def test_foldersNotUsers(self):
        """
        Folders, whatever their names (a user's name among them), never
        appear as users, and live under the spool in files of their own.
        """
        self.ok(self.store.addUser("alice"))
        for name in ["alice", "bob", "alice/x", ".bob.folders", "bob.lock", "..."]:
            self.ok(self.store.createFolder("bob", name))
        self.assertEqual(self.ok(self.store.listUsers()), ["alice", "bob"])
        self.assertEqual(FilePath(self.path).child("alice").getContent(), b"")
        for name in ["alice", "bob", "alice/x", "bob.lock"]:
            path = self.folderFile(name)
            self.assertTrue(os.path.realpath(path).startswith(
                os.path.realpath(self.path) + os.sep))
            self.assertNotIn(name, os.path.basename(path))

    def test_folderIsMbox(self):
        """
        A folder file is an mbox file Python's mailbox module (and so mutt)
        reads.
        """
        self.ok(self.store.createFolder("bob", "Work"))
        self.ok(self.store.appendMessage("bob", "Work", MESSAGE, [SEEN]))
        (message,) = mailbox.mbox(self.folderFile("Work"))
        self.assertEqual(message["Subject"], "hello")
        self.assertIn("R", message.get_flags())

    def test_symlinkRefused(self):
        """
        A user's folder directory that is a symbolic link is refused.
        """
        os.symlink("/tmp", os.path.join(self.path, ".bob.folders"))
        self.fails(self.store.createFolder("bob", "x"), errors.MailboxUnavailable)


class PermanentIdTests(SpoolModelTestCase):
    def test_foreignMailKeepsIdWhenMuttMarksIt(self):
        """
        A message another program appended keeps its id and UID when a mail
        program later rewrites it (adds Status: and more headers).
        """
        self.appendForeign(b"one\n", b"two\n")
        before = [(m.id, m.uid) for m in self.listed()]
        content = FilePath(self.inbox).getContent()
        # What mutt does when it marks one read: Status:, Content-Length:
        # and Lines: at the end of its header.
        content = content.replace(b"Subject: foreign\n\none",
                                  b"Subject: foreign\nStatus: RO\nContent-Length: 4\n"
                                  b"Lines: 1\n\none", 1)
        FilePath(self.inbox).setContent(content)
        after = self.listed(store=self.again())
        self.assertEqual([(m.id, m.uid) for m in after], before)
        self.assertEqual(after[0].flags, frozenset([SEEN]))

    def test_twinIdNeverReused(self):
        """
        After one of two byte-identical copies is deleted, a third copy
        appended later gets an id of its own, across restarts.
        """
        self.appendForeign(b"same\n", b"same\n")
        first = [m.id for m in self.listed()]
        self.assertEqual(len(set(first)), 2)
        view = self.ok(self.store.openMailbox("bob"))
        self.ok(view.deleteMessages([first[0]]))
        self.ok(view.close())
        self.appendForeign(b"same\n")
        store = self.again()
        now = [m.id for m in self.listed(store=store)]
        self.assertEqual(now[0], first[1])
        self.assertNotIn(now[1], first)

    def test_twinIdNeverReusedInOneRun(self):
        """
        In a mailbox the server made, another program's mail gets ids of its own from the first: a byte-identical copy appended after its twin was deleted never gets the twin's id, even without a restart.
        """
        self.listed()
        self.appendForeign(b"same\n", b"same\n")
        first = [m.id for m in self.listed()]
        view = self.ok(self.store.openMailbox("bob"))
        self.ok(view.deleteMessages([first[0]]))
        self.ok(view.close())
        self.appendForeign(b"same\n")
        now = [m.id for m in self.listed()]
        self.assertEqual(now[0], first[1])
        self.assertNotIn(now[1], first)

    def test_previousReleaseKeepsIds(self):
        """
        A spool the previous release wrote (no UIDs; a message of ours, and
        another program's whose id was derived from its bytes) opens with
        every id it had.
        """
        ours = (b"From alice@localhost Thu Nov 26 12:00:00 2026\n"
                b"X-Simplemail-Id: 3q2-7wEAAAAx9f_k\nFrom: alice@localhost\n\nhi\n\n")
        theirs = b"From x@y Thu Nov 26 12:00:01 2026\nSubject: foreign\n\nbody\n\n"
        FilePath(self.inbox).setContent(ours + theirs)
        from twisted_mail.stores.spool.records import _messageKey, contentId

        derived = contentId(_messageKey(theirs), {})
        self.assertEqual([m.id for m in self.listed()], ["3q2-7wEAAAAx9f_k", derived])
        self.assertEqual([m.uid for m in self.listed()], [1, 2])
        self.assertEqual([m.id for m in self.listed(store=self.again())],
                         ["3q2-7wEAAAAx9f_k", derived])

    def test_uidsSurviveLostRecordAsNewValidity(self):
        """
        When a folder's UID record is lost, UIDVALIDITY changes.
        """
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        validity = self.ok(self.store.openMailbox("bob")).uidValidity
        os.unlink(os.path.join(self.path, ".bob.uids"))
        store = self.again()
        view = self.ok(store.openMailbox("bob"))
        self.assertNotEqual(view.uidValidity, validity)
        self.assertEqual([m.uid for m in self.listed(store=store)], [1])


class CopiedInTests(SpoolModelTestCase):
    """
    Mail another program copies into a folder file with the store's lines
    (mutt's copy-message or save-message from another folder) is a copy: a
    new id and a new UID, so ids stay unique per user across folders and no
    UID is given twice (docs/folders.rst, "Ids and UIDs for mail other
    programs wrote").
    """

    def setUp(self):
        SpoolModelTestCase.setUp(self)
        self.ok(self.store.createFolder("bob", "Work"))
        for body in [b"w1\n", b"w2\n", b"w3\n"]:
            self.ok(self.store.appendMessage("bob", "Work", MESSAGE + body, []))
        for i in range(3):
            self.ok(self.store.deliver("alice", "bob", b"inbox %d\n" % (i,)))

    def records(self, path):
        with open(path, "rb") as f:
            parts = f.read().split(b"\n\nFrom ")
        return parts[:1] + [b"From " + part for part in parts[1:]]

    def copyInto(self, path, record):
        with open(path, "ab") as f:
            f.write(b"\n" + record.rstrip(b"\n") + b"\n")

    def everyId(self, store=None):
        ids = []
        for name in ["INBOX", "Work"]:
            ids.extend(m.id for m in self.listed(name, store=store))
        return ids

    def assertCopy(self, listing, before, uids):
        self.assertEqual([(m.id, m.uid) for m in listing[:-1]], before)
        self.assertNotIn(listing[-1].id, [i for i, _ in before])
        self.assertGreater(listing[-1].uid, max(uids))

    def test_copyWithLowerUid(self):
        """
        A message copied from a folder whose UIDs are lower (X-UID below the last one) gets a new UID and a new id: never a second message with one UID, nor one id in two folders.
        """
        before = [(m.id, m.uid) for m in self.listed()]
        self.listed("Work")
        self.copyInto(self.inbox, self.records(self.folderFile("Work"))[0])
        listing = self.listed()
        self.assertCopy(listing, before, [3])
        self.assertEqual(len(set(self.everyId())), 7)

    def test_copyIntoTheGap(self):
        """
        A copy carrying the UID of a message since expunged (between the last UID and UIDNEXT) does not get that UID again.
        """
        view = self.ok(self.store.openMailbox("bob"))
        last = self.listed()[-1]
        gone = self.records(self.inbox)[-1]
        self.ok(view.deleteMessages([last.id]))
        self.ok(view.close())
        before = [(m.id, m.uid) for m in self.listed()]
        self.copyInto(self.inbox, gone)
        listing = self.listed()
        self.assertEqual(len(listing), 3)
        self.assertCopy(listing, before, [last.uid])

    def test_copyWithHigherUid(self):
        """
        A message copied from a folder whose UIDs are higher (X-UID at or above this folder's UIDNEXT) gets a new id.
        """
        for i in range(5):
            self.ok(self.store.appendMessage("bob", "Work", MESSAGE, []))
        before = [(m.id, m.uid) for m in self.listed()]
        work = self.listed("Work")
        self.copyInto(self.inbox, self.records(self.folderFile("Work"))[-1])
        listing = self.listed()
        self.assertNotIn(listing[-1].id, [m.id for m in work])
        self.assertCopy(listing, before, [3])

    def test_copyMadeWhileStopped(self):
        """
        A copy made while the server was stopped is found at the next start.
        """
        self.listed("Work")
        before = [(m.id, m.uid) for m in self.listed()]
        work = self.folderFile("Work")
        self.store.close()
        self.copyInto(self.inbox, self.records(work)[1])
        store = self.again()
        self.assertCopy(self.listed(store=store), before, [3])
        self.assertEqual(len(set(self.everyId(store))), 7)

    def test_anotherServersMailIsNotACopy(self):
        """
        Mail another server process on the same spool delivered or moved in keeps the id and UID it was given.
        """
        other = self.again()
        self.listed()
        delivered = self.ok(other.deliver("alice", "bob", b"from the other\n"))
        work = self.ok(other.openFolder("bob", "Work"))
        moved = self.ok(work.listMessages()).messages[0]
        self.ok(work.moveMessages([moved.id], "INBOX"))
        listing = self.listed()
        self.assertEqual([m.id for m in listing[-2:]], [delivered, moved.id])
        self.assertEqual([m.uid for m in listing[-2:]], [4, 5])

    def test_recordOfAnOlderVersionTrusted(self):
        """
        A UID record written before the last UID was kept in it (an upgrade) takes no message of the folder for a copy.
        """
        before = [(m.id, m.uid) for m in self.listed()]
        self.store.close()
        uids = FilePath(self.path).child(".bob.uids")
        fields = uids.getContent()[:64].split()
        uids.setContent(b" ".join(fields[:3]).ljust(63) + b"\n")
        self.assertEqual([(m.id, m.uid) for m in self.listed(store=self.again())], before)


class FlagTests(SpoolModelTestCase):
    def test_flagChangeInPlace(self):
        """
        A flag change rewrites neither the file nor its other bytes: the
        inode and size stay, and mutt's view of the file shows the flags.
        """
        for i in range(5):
            self.ok(self.store.deliver("alice", "bob", b"m%d\n" % (i,)))
        before = os.stat(self.inbox)
        view = self.ok(self.store.openMailbox("bob"))
        msgid = self.listed()[2].id
        self.ok(view.setFlags([msgid], add=[SEEN, FLAGGED, "$Forwarded"]))
        after = os.stat(self.inbox)
        self.assertEqual((after.st_ino, after.st_size), (before.st_ino, before.st_size))
        box = mailbox.mbox(self.inbox)
        self.assertEqual(sorted("".join(sorted(m.get_flags())) for m in box),
                         ["", "", "", "", "FOR"])
        self.assertIn(b"X-Keywords: $Forwarded", FilePath(self.inbox).getContent())

    def test_muttRewrittenMessageFlagged(self):
        """
        A message whose flag lines mutt moved (no room left where they were)
        still takes a flag change, and keeps its id.
        """
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        content = FilePath(self.inbox).getContent()
        content = content.replace(b"Status: \nX-Status: \n", b"").replace(
            b"\n\nhi\n", b"\nStatus: O\nContent-Length: 3\nLines: 1\n\nhi\n")
        FilePath(self.inbox).setContent(content)
        (message,) = self.listed(store=self.again())
        store = self.again()
        view = self.ok(store.openMailbox("bob"))
        self.ok(view.setFlags([message.id], add=[SEEN, FLAGGED]))
        (after,) = self.listed(store=self.again())
        self.assertEqual((after.id, after.uid), (message.id, message.uid))
        self.assertEqual(after.flags, frozenset([SEEN, FLAGGED]))
        self.assertEqual(self.ok(view.fetchMessage(message.id)).count(b"Status"), 0)

    def test_readersDoNotSeeStoreLines(self):
        """
        READM, the API's text and POP3 sizes see neither the id line nor the
        UID and flag lines; arriving Status: lines are dropped.
        """
        self.ok(self.store.deliverMessage("x", "bob", b"Status: RO\nX-UID: 9\n" + MESSAGE))
        (message,) = self.listed()
        self.assertEqual(message.flags, frozenset())
        view = self.ok(self.store.openMailbox("bob"))
        self.assertEqual(self.ok(view.readMessage()), MESSAGE)
        self.assertEqual(message.size, len(MESSAGE.replace(b"\n", b"\r\n")))

    def test_flagsSeenByAnotherProcess(self):
        """
        A flag changed through one store is seen by another on the same
        spool (another process), and heard by its watchers.
        """
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        other = self.again()
        events = []
        self.addCleanup(other.watch("bob", events.append))
        (message,) = self.listed(store=other)
        view = self.ok(self.store.openMailbox("bob"))
        self.ok(view.setFlags([message.id], add=[FLAGGED]))
        (seen,) = self.listed(store=other)
        self.assertEqual(seen.flags, frozenset([FLAGGED]))
        other._reactor.advance(POLL_INTERVAL)
        self.assertIn(("flags", INBOX, message.id),
                      [(e.kind, e.folder, e.msgid) for e in events])


    def test_flagsFromAnOlderLookWait(self):
        """
        A watcher never hears flags older than a change made through its own
        store while its look ran: it hears the newer flags instead.
        """
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        other = self.again()
        events = []
        self.addCleanup(other.watch("bob", events.append))
        (message,) = self.listed(store=other)
        # Another process flags it; the watcher's next look sees that...
        self.ok(self.ok(self.store.openMailbox("bob")).setFlags([message.id], add=[FLAGGED]))
        # ...and while it looks, a change is made through its own store.
        mailbox = self.ok(other._resolve("bob", INBOX))
        summarized = mailbox.summarized
        mine = self.ok(other.openMailbox("bob"))

        def changeMeanwhile(records):
            mailbox.summarized = summarized
            self.ok(mine.setFlags([message.id], add=[SEEN]))
            return summarized(records)

        mailbox.summarized = changeMeanwhile
        other._reactor.advance(POLL_INTERVAL)
        heard = [e.summary.flags for e in events
                 if e.kind == "flags" and e.summary.id == message.id]
        self.assertEqual(heard, [frozenset([FLAGGED, SEEN])])


class CrashTests(SpoolModelTestCase):
    def test_interruptedRewriteUndone(self):
        """
        A tail rewrite cut short (its backup left behind) is undone at the
        next access: the file is as it was, then stamped afresh.
        """
        self.ok(self.store.deliver("alice", "bob", b"ours\n"))
        self.appendForeign(b"theirs\n")
        original = FilePath(self.inbox).getContent()
        start = original.index(b"From MAILER-DAEMON") if b"From MAILER" in original \
            else original.rindex(b"\nFrom ") + 1
        ino = os.stat(self.inbox).st_ino
        # A crash after the backup was synced and half the new tail written.
        with open(os.path.join(self.path, ".bob.tail"), "wb") as f:
            f.write(b"%d %d %d\n" % (ino, start, len(original)) + original[start:])
        with open(self.inbox, "r+b") as f:
            f.seek(start)
            f.write(b"garbage garbage\n")
        listed = self.listed(store=self.again())
        self.assertEqual(len(listed), 2)
        self.assertFalse(os.path.exists(os.path.join(self.path, ".bob.tail")))
        view = self.ok(self.again().openMailbox("bob"))
        self.assertTrue(self.ok(view.fetchMessage(listed[1].id)).endswith(b"theirs\n"))

    def test_interruptedMoveFinished(self):
        """
        A move cut short after the target's append and before the source's
        delete leaves one copy once the store looks again.
        """
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        (message,) = self.listed()
        view = self.ok(self.store.openMailbox("bob"))
        source = self.store._mailbox("bob").mbox
        self.patch(source, "markDeletedIds", lambda ids: 1 / 0)
        self.failureResultOf(view.moveMessages([message.id], "Archive"), ZeroDivisionError)
        store = self.again()
        self.ok(store.listFolders("bob"))
        self.assertEqual([m.id for m in self.listed("Archive", store)], [message.id])
        self.assertEqual(self.listed(INBOX, store), [])

    def test_movedBackKeepsId(self):
        """
        A message moved out and back before its old record is expunged keeps
        its id and shows once, also to a new process.
        """
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        (message,) = self.listed()
        inbox = self.ok(self.store.openMailbox("bob"))
        self.ok(inbox.moveMessages([message.id], "Archive"))
        archive = self.ok(self.store.openFolder("bob", "Archive"))
        self.ok(archive.moveMessages([message.id], INBOX))
        for store in [self.store, self.again()]:
            self.assertEqual([m.id for m in self.listed(store=store)], [message.id])
            self.assertEqual(self.listed("Archive", store), [])
