"""
The mailbox model (MAILBOX.md, "The mailbox model"): folders, UIDs, flags,
moves and copies, appends and events, checked once for every store with
L{FolderContractMixin}.
"""

import os
import unicodedata

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_mail import errors
from twisted_mail.interfaces import IFolder, IMailboxSession
from twisted_mail.mail.model import (
    ANSWERED,
    DELETED,
    FLAGGED,
    INBOX,
    MAX_KEYWORDS,
    SEEN,
    SPECIAL_FOLDERS,
)
from twisted_mail.stores.memory import MemoryStore

from . import pgserver
from .test_store import makeSpoolStore

#: Names the issue's "Bad input" lists, and odd ones MAILBOX.md accepts.
HOSTILE_INVALID = ["../x", "a/../../b", "a\x00b", "x" * 10000, "", "a//b", ".",
                   "a/./b", "tab\there", "/lead"]
ODD_VALID = ["bob", "alice.lock", ".hidden", "...", "a\\b", "%2E%2E", "x" * 255,
             "caf\u00e9", "d\u00e9j\u00e0/vu", ".bob.deleted", "bob.lock", "a b"]

MESSAGE = b"From: a@example.com\nSubject: hello\n\nbody text\n"


class FolderContractMixin:
    """
    The mailbox model every L{IMailStore} serves.  Subclasses define
    C{makeStore()}; a second store on the same data, for restarts, is
    C{reopen()} (L{None} where the store keeps nothing).
    """

    def setUp(self):
        self.store = self.makeStore()
        self.ok(self.store.addUser("bob"))
        self.events = []

    def reopen(self):
        return None

    def ok(self, d):
        return self.successResultOf(d)

    def fails(self, d, exceptionType):
        return self.failureResultOf(d, exceptionType).value

    def names(self, store=None):
        return [f.name for f in self.ok((store or self.store).listFolders("bob"))]

    def info(self, name, store=None):
        for folder in self.ok((store or self.store).listFolders("bob")):
            if folder.name == name:
                return folder
        self.fail("no folder {!r}".format(name))

    def append(self, folder="INBOX", text=MESSAGE, flags=(), arrived=None):
        return self.ok(self.store.appendMessage("bob", folder, text, flags, arrived))

    def open(self, name, store=None):
        return self.ok((store or self.store).openFolder("bob", name))

    def listed(self, name, store=None):
        view = self.open(name, store)
        try:
            return self.ok(view.listMessages()).messages
        finally:
            self.ok(view.close())

    # -- folders

    def test_specialFoldersListed(self):
        """
        A new user has INBOX and the special-use folders, INBOX first, each
        special one saying its use.
        """
        folders = self.ok(self.store.listFolders("bob"))
        self.assertEqual(folders[0].name, INBOX)
        self.assertEqual(sorted(f.name for f in folders[1:]), sorted(SPECIAL_FOLDERS))
        for folder in folders:
            self.assertEqual(folder.special, SPECIAL_FOLDERS.get(folder.name))
            self.assertEqual((folder.total, folder.unseen), (0, 0))

    def test_specialFolderMadeWhenNeeded(self):
        """
        A message can be appended to Sent before anyone listed folders.
        """
        summary = self.append("Sent", flags=[SEEN])
        self.assertEqual(summary.folder, "Sent")
        self.assertEqual(self.info("Sent").total, 1)

    def test_createListRenameDelete(self):
        """
        Folders are created, listed by name after INBOX, renamed with the
        folders below them, and deleted.
        """
        self.assertEqual(self.ok(self.store.createFolder("bob", "Work")), "Work")
        self.ok(self.store.createFolder("bob", "Work/2026"))
        self.append("Work/2026")
        self.assertIn("Work/2026", self.names())
        self.assertEqual(self.ok(self.store.renameFolder("bob", "Work", "Job")), "Job")
        names = self.names()
        self.assertNotIn("Work", names)
        self.assertIn("Job", names)
        self.assertIn("Job/2026", names)
        self.assertEqual(len(self.listed("Job/2026")), 1)
        self.ok(self.store.deleteFolder("bob", "Job"))
        self.assertNotIn("Job", self.names())
        self.assertIn("Job/2026", self.names())
        self.assertEqual(self.names()[0], INBOX)

    def test_createExisting(self):
        """
        Making a folder that exists (INBOX in any case, a special one) fails.
        """
        self.ok(self.store.createFolder("bob", "Work"))
        for name in ["Work", "inbox", "InBox", "Sent"]:
            self.fails(self.store.createFolder("bob", name), errors.FolderExists)

    def test_hostileNamesRefused(self):
        """
        Names outside the rules are refused with InvalidFolderName, and make
        nothing.
        """
        before = self.names()
        for name in HOSTILE_INVALID:
            self.fails(self.store.createFolder("bob", name), errors.InvalidFolderName)
            self.fails(self.store.openFolder("bob", name), errors.InvalidFolderName)
        self.assertEqual(self.names(), before)

    def test_oddNamesAccepted(self):
        """
        Any name within the rules is a folder of its own, however odd, and
        holds its own mail.
        """
        for name in ODD_VALID:
            self.assertEqual(self.ok(self.store.createFolder("bob", name)), name)
            self.append(name, text=MESSAGE + name.encode("utf-8") + b"\n")
        for name in ODD_VALID:
            (message,) = self.listed(name)
            self.assertEqual(message.folder, name)
        self.assertEqual(self.listed(INBOX), [])
        self.assertEqual(self.ok(self.store.listUsers()), ["bob"])

    def test_unicodeNormalised(self):
        """
        Names differing only in Unicode normalisation name one folder.
        """
        nfd = unicodedata.normalize("NFD", "caf\u00e9")
        self.assertEqual(self.ok(self.store.createFolder("bob", nfd)), "caf\u00e9")
        self.fails(self.store.createFolder("bob", "caf\u00e9"), errors.FolderExists)
        self.append(nfd)
        self.assertEqual(len(self.listed("caf\u00e9")), 1)

    def test_inboxAnyCase(self):
        """
        INBOX is found in any case.
        """
        self.append("inbox")
        self.assertEqual(len(self.listed("InBoX")), 1)

    def test_unchangeable(self):
        """
        INBOX can't be renamed or deleted, nor a special folder renamed;
        unknown folders are NoSuchFolder.
        """
        self.fails(self.store.renameFolder("bob", "INBOX", "x"), errors.FolderNotChangeable)
        self.fails(self.store.deleteFolder("bob", "inbox"), errors.FolderNotChangeable)
        self.fails(self.store.renameFolder("bob", "Sent", "x"), errors.FolderNotChangeable)
        self.fails(self.store.renameFolder("bob", "nope", "x"), errors.NoSuchFolder)
        self.fails(self.store.deleteFolder("bob", "nope"), errors.NoSuchFolder)
        self.fails(self.store.openFolder("bob", "nope"), errors.NoSuchFolder)
        self.ok(self.store.createFolder("bob", "a"))
        self.ok(self.store.createFolder("bob", "b"))
        self.fails(self.store.renameFolder("bob", "a", "b"), errors.FolderExists)
        self.fails(self.store.renameFolder("bob", "a", "Trash"), errors.FolderExists)

    def test_deleteFolderDeletesMail(self):
        """
        Deleting a folder deletes its mail for good: a folder made again
        with the name is empty and has a new UIDVALIDITY.
        """
        self.ok(self.store.createFolder("bob", "old"))
        self.append("old")
        validity = self.info("old").uidValidity
        self.ok(self.store.deleteFolder("bob", "old"))
        self.ok(self.store.createFolder("bob", "old"))
        self.assertEqual(self.listed("old"), [])
        self.assertNotEqual(self.info("old").uidValidity, validity)

    def test_unknownUser(self):
        """
        The folder calls of a user that does not exist fail NoSuchUser.
        """
        self.fails(self.store.listFolders("nobody"), errors.NoSuchUser)
        self.fails(self.store.createFolder("nobody", "x"), errors.NoSuchUser)
        self.fails(self.store.openFolder("nobody", "INBOX"), errors.NoSuchUser)

    # -- ids and UIDs

    def test_uidsAscendNeverReused(self):
        """
        UIDs ascend in arrival order and are not given again after deletes,
        with UIDNEXT past them; UIDVALIDITY stands.
        """
        validity = self.info(INBOX).uidValidity
        uids = [self.append().uid for _ in range(3)]
        self.assertEqual(uids, sorted(set(uids)))
        self.assertTrue(uids[0] >= 1)
        view = self.open(INBOX)
        last = self.ok(view.listMessages()).messages[-1]
        self.ok(view.deleteMessages([last.id]))
        self.ok(view.close())
        again = self.append()
        self.assertTrue(again.uid > uids[-1])
        self.assertTrue(self.info(INBOX).uidNext > again.uid)
        self.assertEqual(self.info(INBOX).uidValidity, validity)
        self.assertEqual(view.uidValidity, validity)

    def test_deliverFiresWithId(self):
        """
        deliver and deliverMessage fire with the new message's id in INBOX.
        """
        first = self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        second = self.ok(self.store.deliverMessage("alice", "bob", MESSAGE))
        ids = [m.id for m in self.listed(INBOX)]
        self.assertEqual(ids, [first, second])

    def test_idsUniqueAcrossFolders(self):
        """
        Ids are unique per user across folders, and listings carry UID,
        flags and folder.
        """
        self.ok(self.store.createFolder("bob", "x"))
        ids = {self.append(name).id for name in ["INBOX", "x", "Sent", "INBOX", "x"]}
        self.assertEqual(len(ids), 5)
        (message, _) = self.listed("x")
        self.assertEqual((message.folder, message.flags), ("x", frozenset()))
        self.assertTrue(message.uid >= 1)

    def test_permanentAcrossRestart(self):
        """
        Ids, UIDs, UIDVALIDITY and flags are the same to a new store on the
        same data.
        """
        self.ok(self.store.createFolder("bob", "x"))
        self.append("x", flags=[FLAGGED, "$Label1"])
        self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        again = self.reopen()
        if again is None:
            raise self.skipTest("this store keeps nothing")
        for name in [INBOX, "x"]:
            before = [(m.id, m.uid, m.flags) for m in self.listed(name)]
            after = [(m.id, m.uid, m.flags) for m in self.listed(name, again)]
            self.assertEqual(before, after)
            self.assertEqual(self.info(name).uidValidity,
                             self.info(name, again).uidValidity)

    # -- flags

    def test_appendWithFlagsAndTime(self):
        """
        An appended message keeps its flags and arrival time, and reads back
        as given.
        """
        summary = self.append(flags=[SEEN, "$Forwarded"], arrived=1700000000)
        self.assertEqual(summary.flags, frozenset([SEEN, "$Forwarded"]))
        self.assertEqual(summary.arrived, 1700000000)
        (listed,) = self.listed(INBOX)
        self.assertEqual((listed.id, listed.flags, listed.arrived),
                         (summary.id, summary.flags, 1700000000))
        view = self.open(INBOX)
        self.assertEqual(self.ok(view.fetchMessage(summary.id)), MESSAGE)

    def test_fetchMessages(self):
        """
        Many messages are read at once, in the order asked, each as
        fetchMessage reads it; a deleted, unknown or other folder's message
        is None, and nothing is marked seen.
        """
        self.ok(self.store.createFolder("bob", "x"))
        elsewhere = self.append("x")
        texts = [MESSAGE.replace(b"body", b"body %d" % n) for n in range(4)]
        summaries = [self.append(text=text) for text in texts]
        view = self.open(INBOX)
        self.ok(view.deleteMessages([summaries[2].id]))
        asked = [summaries[3].id, "nope", summaries[0].id, summaries[2].id,
                 elsewhere.id, summaries[1].id, summaries[0].id]
        self.assertEqual(self.ok(view.fetchMessages(asked)),
                         [texts[3], None, texts[0], None, None, texts[1], texts[0]])
        self.assertEqual(self.ok(view.fetchMessages([])), [])
        self.assertEqual(self.ok(view.fetchMessage(summaries[1].id)), texts[1])
        self.assertEqual({m.flags for m in self.listed(INBOX)}, {frozenset()})

    def test_badFlags(self):
        """
        Flags that are not atoms, and \\Recent, are refused; nothing changes.
        """
        summary = self.append()
        view = self.open(INBOX)
        for flag in ["two words", "\\Recent", "(x", "", "a\x00"]:
            self.fails(view.setFlags([summary.id], add=[flag]), errors.InvalidFlag)
            self.fails(self.store.appendMessage("bob", INBOX, MESSAGE, [flag]),
                       errors.InvalidFlag)
        self.assertEqual(self.listed(INBOX)[0].flags, frozenset())

    def test_setFlags(self):
        """
        Flags are added and removed, the answer is the summaries as they are
        now, and another view (and a restart) sees them.
        """
        a, b = self.append(), self.append()
        view = self.open(INBOX)
        changed = self.ok(view.setFlags([a.id, "gone"], add=[SEEN, "\\flagged", "Work"]))
        self.assertEqual([(m.id, m.flags) for m in changed],
                         [(a.id, frozenset([SEEN, FLAGGED, "Work"]))])
        changed = self.ok(view.setFlags([a.id, b.id], add=[ANSWERED], remove=["Work"]))
        self.assertEqual(sorted(m.flags for m in changed),
                         sorted([frozenset([SEEN, FLAGGED, ANSWERED]), frozenset([ANSWERED])]))
        self.assertEqual(self.info(INBOX).unseen, 1)
        flags = {m.id: m.flags for m in self.listed(INBOX)}
        self.assertEqual(flags[a.id], frozenset([SEEN, FLAGGED, ANSWERED]))
        again = self.reopen()
        if again is not None:
            flags = {m.id: m.flags for m in self.listed(INBOX, again)}
            self.assertEqual(flags[a.id], frozenset([SEEN, FLAGGED, ANSWERED]))

    def test_manyKeywords(self):
        """
        A folder keeps at least 64 distinct keywords.
        """
        ids = [self.append().id for _ in range(4)]
        view = self.open(INBOX)
        for i in range(MAX_KEYWORDS):
            self.ok(view.setFlags([ids[i % 4]], add=["kw{}".format(i)]))
        kept = set()
        for message in self.listed(INBOX):
            kept.update(message.flags)
        self.assertEqual(len(kept), MAX_KEYWORDS)

    def test_markSeen(self):
        """
        markSeen gives \\Seen, seen by another view at once and kept after
        the view closes.
        """
        summary = self.append()
        view = self.open(INBOX)
        self.ok(view.markSeen([summary.id]))
        self.assertEqual(self.listed(INBOX)[0].flags, frozenset([SEEN]))
        self.ok(view.close())
        again = self.reopen()
        if again is not None:
            self.assertEqual(self.listed(INBOX, again)[0].flags, frozenset([SEEN]))

    def test_deletedFlagIsJustAFlag(self):
        """
        \\Deleted alone keeps the message; deleting it removes it for good.
        """
        summary = self.append()
        view = self.open(INBOX)
        self.ok(view.setFlags([summary.id], add=[DELETED]))
        self.assertEqual(len(self.listed(INBOX)), 1)
        self.assertEqual(self.ok(view.deleteMessages([summary.id])), [summary.id])
        self.ok(view.close())
        self.assertEqual(self.listed(INBOX), [])

    def lightFacts(self, name, store=None):
        view = self.open(name, store)
        try:
            entries = self.ok(view.listEntries())
        finally:
            self.ok(view.close())
        return [(e.id, e.size, e.arrived, e.uid, e.flags, e.folder) for e in entries]

    def listedFacts(self, name, store=None):
        return [(m.id, m.size, m.arrived, m.uid, m.flags, m.folder)
                for m in self.listed(name, store)]

    def test_listEntries(self):
        """
        listEntries() gives, in folder order, the id, size, arrival time,
        UID, flags and folder that listMessages() gives, after flag changes,
        deletes and a restart, whether or not the messages were listed in
        full before.
        """
        self.ok(self.store.createFolder("bob", "x"))
        texts = [MESSAGE, b"Subject: crlf\r\n\r\nline\r\nFrom here\r\n",
                 b"Subject: quoted\n\nFrom the start\n>From kept\nno end"]
        added = [self.append(text=t, arrived=1700000000 + n) for n, t in enumerate(texts)]
        self.append("x", flags=[FLAGGED])
        self.ok(self.store.deliverMessage("alice", "bob", MESSAGE))
        inbox = self.lightFacts(INBOX)
        self.assertEqual(len(inbox), 4)
        self.assertEqual([f[0] for f in inbox[:3]], [a.id for a in added])
        self.assertEqual(inbox, self.listedFacts(INBOX))
        self.assertEqual(self.lightFacts(INBOX), inbox)
        self.assertEqual(self.lightFacts("x"), self.listedFacts("x"))
        view = self.open(INBOX)
        self.ok(view.setFlags([added[1].id], add=[SEEN, "Work"]))
        self.ok(view.deleteMessages([added[0].id]))
        self.ok(view.close())
        after = self.lightFacts(INBOX)
        self.assertEqual([f[0] for f in after], [f[0] for f in inbox[1:]])
        self.assertEqual(after[0][4], frozenset([SEEN, "Work"]))
        self.assertEqual(after, self.listedFacts(INBOX))
        again = self.reopen()
        if again is not None:
            self.assertEqual(self.lightFacts(INBOX, again), after)
            self.assertEqual(self.lightFacts("x", again), self.lightFacts("x"))

    def test_summaryOfOne(self):
        """
        summary(id) gives the one message's summary as the listing does
        (UID, flags and folder included) and flagsOf(id) its flags, fresh
        after a flag change or a read and from a new view or a restart; an
        unknown, deleted or other folder's id is NoSuchMessage.
        """
        self.ok(self.store.createFolder("bob", "x"))
        a = self.append()
        elsewhere = self.append("x")
        delivered = self.ok(self.store.deliverMessage("alice", "bob", MESSAGE))
        view = self.open(INBOX)
        listed = {m.id: m for m in self.listed(INBOX)}
        for msgid in [a.id, delivered]:
            self.assertEqual(self.ok(view.summary(msgid)), listed[msgid])
        self.ok(view.setFlags([a.id], add=[FLAGGED, "Work"]))
        one = self.ok(view.summary(a.id))
        self.assertEqual((one.id, one.uid, one.folder, one.flags),
                         (a.id, a.uid, INBOX, frozenset([FLAGGED, "Work"])))
        self.assertEqual(self.ok(view.flagsOf(a.id)), one.flags)
        self.ok(view.markSeen([delivered]))
        self.assertEqual(self.ok(self.open(INBOX).flagsOf(delivered)), frozenset([SEEN]))
        self.assertEqual(self.ok(self.open("x").summary(elsewhere.id)).folder, "x")
        self.assertEqual(self.ok(self.open("x").flagsOf(elsewhere.id)), frozenset())
        for msgid in [elsewhere.id, "no-such-id", "12345678"]:
            self.fails(view.summary(msgid), errors.NoSuchMessage)
            self.fails(view.flagsOf(msgid), errors.NoSuchMessage)
        self.ok(view.deleteMessages([delivered]))
        self.fails(view.summary(delivered), errors.NoSuchMessage)
        self.fails(view.flagsOf(delivered), errors.NoSuchMessage)
        self.ok(view.close())
        again = self.reopen()
        if again is not None:
            self.assertEqual(self.ok(self.open(INBOX, again).summary(a.id)), one)
            self.assertEqual(self.ok(self.open(INBOX, again).flagsOf(a.id)), one.flags)

    # -- moves and copies

    def test_moveKeepsId(self):
        """
        A move keeps the id, text and flags and gives a new UID in the
        target; the source no longer has it.
        """
        self.ok(self.store.createFolder("bob", "x"))
        self.append("x")
        summary = self.append(flags=[FLAGGED])
        view = self.open(INBOX)
        ((msgid, uid),) = self.ok(view.moveMessages([summary.id, "gone"], "x"))
        self.assertEqual(msgid, summary.id)
        self.assertEqual(self.listed(INBOX), [])
        moved = self.listed("x")[-1]
        self.assertEqual((moved.id, moved.uid, moved.flags),
                         (summary.id, uid, frozenset([FLAGGED])))
        self.assertTrue(uid > self.listed("x")[0].uid)
        target = self.open("x")
        self.assertEqual(self.ok(target.fetchMessage(summary.id)), MESSAGE)

    def test_moveToMissingFolder(self):
        """
        A move to a folder that does not exist moves nothing.
        """
        summary = self.append()
        view = self.open(INBOX)
        self.fails(view.moveMessages([summary.id], "nope"), errors.NoSuchFolder)
        self.fails(view.moveMessages([summary.id], "../x"), errors.InvalidFolderName)
        self.assertEqual([m.id for m in self.listed(INBOX)], [summary.id])

    def test_moveToTrash(self):
        """
        Trash is made when a message is first moved there.
        """
        summary = self.append()
        view = self.open(INBOX)
        self.ok(view.moveMessages([summary.id], "Trash"))
        self.assertEqual([m.id for m in self.listed("Trash")], [summary.id])

    def test_copyNewId(self):
        """
        A copy has a new id and the original's flags; the original stays.
        """
        self.ok(self.store.createFolder("bob", "x"))
        summary = self.append(flags=[SEEN])
        view = self.open(INBOX)
        ((newid, uid),) = self.ok(view.copyMessages([summary.id], "x"))
        self.assertNotEqual(newid, summary.id)
        (copy,) = self.listed("x")
        self.assertEqual((copy.id, copy.uid, copy.flags), (newid, uid, frozenset([SEEN])))
        self.assertEqual([m.id for m in self.listed(INBOX)], [summary.id])

    # -- events

    def watching(self):
        stop = self.store.watch("bob", self.events.append)
        self.addCleanup(stop)

    def settle(self):
        """
        Let a store that polls see changes (nothing to do in memory).
        """

    def kinds(self):
        self.settle()
        return [(e.kind, e.folder, e.msgid) for e in self.events]

    def test_eventsNewMailAndFlags(self):
        """
        A watcher hears of new messages (delivered or appended, in any
        folder), flag changes and expunges.
        """
        self.watching()
        self.settle()
        msgid = self.ok(self.store.deliver("alice", "bob", b"hi\n"))
        self.assertIn(("message", INBOX, msgid), self.kinds())
        sent = self.append("Sent")
        self.assertIn(("message", "Sent", sent.id), self.kinds())
        view = self.open(INBOX)
        self.ok(view.setFlags([msgid], add=[FLAGGED]))
        self.assertIn(("flags", INBOX, msgid), self.kinds())
        flagged = [e for e in self.events if e.kind == "flags"]
        self.assertIn(FLAGGED, flagged[-1].summary.flags)
        self.ok(view.deleteMessages([msgid]))
        self.ok(view.close())
        self.assertIn(("expunge", INBOX, msgid), self.kinds())

    def test_eventsFolders(self):
        """
        A watcher hears of folders created, renamed and deleted.
        """
        self.watching()
        self.settle()
        self.ok(self.store.createFolder("bob", "x"))
        self.assertIn(("folders", None, None), self.kinds())
        del self.events[:]
        self.ok(self.store.renameFolder("bob", "x", "y"))
        self.assertIn(("folders", None, None), self.kinds())
        del self.events[:]
        self.ok(self.store.deleteFolder("bob", "y"))
        self.assertIn(("folders", None, None), self.kinds())

    def test_eventsMove(self):
        """
        A move is an expunge in the source and a new message in the target.
        """
        summary = self.append()
        self.watching()
        self.settle()
        view = self.open(INBOX)
        self.ok(view.moveMessages([summary.id], "Archive"))
        kinds = self.kinds()
        self.assertIn(("expunge", INBOX, summary.id), kinds)
        self.assertIn(("message", "Archive", summary.id), kinds)

    def test_viewsProvideInterfaces(self):
        """
        A folder view provides IFolder; INBOX's session IMailboxSession.
        """
        self.assertTrue(verifyObject(IFolder, self.open("Sent")))
        self.assertTrue(verifyObject(IMailboxSession, self.ok(self.store.openMailbox("bob"))))
        self.assertEqual(self.open("inbox").folder, INBOX)


class MemoryFolderTests(FolderContractMixin, SynchronousTestCase):
    def makeStore(self):
        return MemoryStore()

    def reopen(self):
        # Memory is the store's only copy: "again" is the same store.
        return self.store


class SpoolFolderTests(FolderContractMixin, SynchronousTestCase):
    def makeStore(self):
        self.path = self.mktemp()
        return makeSpoolStore(self, self.path)

    def reopen(self):
        return makeSpoolStore(self, self.path)

    def test_listEntriesParsesNothing(self):
        """
        The light listing of mail another program wrote into the spool
        file parses no message, and gives the sizes and times a full
        listing gives.
        """
        from twisted_mail.stores.spool import store as spoolStore

        with open(os.path.join(self.path, "bob"), "ab") as f:
            for n in range(3):
                f.write(b"From alice@example.com Thu Dec  3 10:0%d:00 2026\n"
                        b"From: alice@example.com\nSubject: %d\n\n>From body\n\n" % (n, n))

        def refuse(*args):
            raise AssertionError("parsed")

        patched = self.patch(spoolStore, "summarize", refuse)
        light = self.lightFacts(INBOX)
        patched.restore()
        self.assertEqual(len(light), 3)
        self.assertEqual(light, self.listedFacts(INBOX))

    def test_fetchMessagesReadLimit(self):
        """
        Messages side by side in the file are read together only up to the
        read limit: with a limit under one message, each is read alone and
        still comes back whole.
        """
        from twisted_mail.stores.spool import mboxfile

        texts = [MESSAGE.replace(b"body", b"body %d" % n) for n in range(5)]
        ids = [self.append(text=text).id for text in texts]
        view = self.open(INBOX)
        reads = []
        pread = os.pread

        def counted(fd, n, at):
            reads.append(n)
            return pread(fd, n, at)

        self.patch(mboxfile.os, "pread", counted)
        self.patch(mboxfile, "READ_AHEAD", 1)
        self.assertEqual(self.ok(view.fetchMessages(ids[::-1])), texts[::-1])
        self.assertLess(max(reads), 2 * len(texts[0]) + 200)
        self.patch(mboxfile, "READ_AHEAD", 1 << 20)
        del reads[:]
        self.assertEqual(self.ok(view.fetchMessages(ids)), texts)
        self.assertGreater(max(reads), sum(len(text) for text in texts))

    def settle(self):
        from twisted_mail.stores.spool.store import POLL_INTERVAL

        self.store._reactor.advance(POLL_INTERVAL)


class PostgresFolderTests(FolderContractMixin, SynchronousTestCase):
    """
    The mailbox model, run against PostgreSQL (a throwaway cluster; under
    CI=1 it runs, never skips).
    """

    skip = pgserver.skipReason()

    def makeStore(self):
        from tests.test_pgstore import makePostgresStore

        self.url = pgserver.freshDatabase()
        return makePostgresStore(self, self.url)

    def reopen(self):
        from tests.test_pgstore import makePostgresStore

        return makePostgresStore(self, self.url)

    def test_upgradeFromVersion1(self):
        """
        A database of the previous release (schema version 1) is upgraded at
        start: its mail is INBOX with its ids, UIDs in delivery order, and
        new mail comes after it.
        """
        import psycopg

        from twisted_mail.stores.postgres import sql as pgsql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("DROP TABLE messages, folders, users, changes, schema_version CASCADE")
            conn.execute("DROP SEQUENCE uidvalidities")
            conn.execute("DROP FUNCTION simplemail_uid")
            conn.execute("CREATE TABLE schema_version (version integer NOT NULL,"
                         " upgraded timestamptz NOT NULL DEFAULT now())")
            for statement in pgsql.SCHEMA[1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (1)")
            conn.execute("INSERT INTO users (userid, count) VALUES ('bob', 2)")
            for text in [b"Subject: one\n\n1\n", b"Subject: two\n\n2\n"]:
                conn.execute("INSERT INTO messages (userid, arrived, body, size)"
                             " VALUES ('bob', 1700000000, %s, %s)", [text, len(text)])
            ids = [str(i) for (i,) in conn.execute("SELECT id FROM messages ORDER BY id")]
        store = self.reopen()
        listed = self.listed(INBOX, store)
        self.assertEqual([(m.id, m.uid, m.folder) for m in listed],
                         [(ids[0], 1, INBOX), (ids[1], 2, INBOX)])
        msgid = self.ok(store.deliver("alice", "bob", b"three\n"))
        self.assertEqual(self.listed(INBOX, store)[-1].uid, 3)
        self.assertEqual(self.listed(INBOX, store)[-1].id, msgid)
        self.assertEqual(self.names(store)[0], INBOX)


class JournalledSpoolFolderTests(SpoolFolderTests):
    """
    The same contract with the spool's write-ahead journal on, as
    C{twistd simplemail} runs it (deliveries go through the journal).
    """

    def makeStore(self):
        self.path = self.mktemp()
        return makeSpoolStore(self, self.path, journal=True)

    def reopen(self):
        return makeSpoolStore(self, self.path, journal=True)
