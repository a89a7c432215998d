"""
The files beside a mailbox kept open between its jobs (the append intent
and the UID record, L{twisted_mail.stores.spool.sidefiles}): fewer opens
when two processes share a spool, never a stale file.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.spool import sidefiles
from twisted_mail.stores.spool.folderfile import readUidRecord, writeUidRecord

from .test_store import makeSpoolStore


class OpenCounter:
    """
    Counts the names C{os.open} is called with while installed.
    """

    def __init__(self, testCase):
        self.names = []
        real = os.open

        def counting(path, *args, **kwargs):
            self.names.append(os.fspath(path) if not isinstance(path, int) else path)
            return real(path, *args, **kwargs)

        testCase.patch(os, "open", counting)


class SideFileTests(SynchronousTestCase):
    def setUp(self):
        path = self.mktemp()
        self.one = makeSpoolStore(self, path)
        self.two = makeSpoolStore(self, path)
        self.successResultOf(self.one.addUser("bob"))
        self.successResultOf(self.one.deliver("amy", "bob", b"first\n"))
        self.successResultOf(self.two.deliver("amy", "bob", b"second\n"))

    def bodies(self, store):
        session = self.successResultOf(store.openMailbox("bob"))
        found = []
        for _ in range(session.count):
            text = self.successResultOf(session.readMessage())
            found.append(text.split(b"\n\n", 1)[1])
        self.successResultOf(session.close())
        return found

    def test_otherProcessAppendsOpenOnlyTheMailbox(self):
        """
        Deliveries alternating between two stores on one spool (two
        workers) open the mailbox itself each time, but neither its append
        intent nor its UID record again.
        """
        # Each has used both files once since they were made.
        self.successResultOf(self.one.deliver("amy", "bob", b"one\n"))
        self.successResultOf(self.two.deliver("amy", "bob", b"two\n"))
        counter = OpenCounter(self)
        for i in range(3):
            self.successResultOf(self.one.deliver("amy", "bob", b"one %d\n" % i))
            self.successResultOf(self.two.deliver("amy", "bob", b"two %d\n" % i))
        self.assertEqual([n for n in counter.names if n in (".bob.append", ".bob.uids")], [])
        self.assertEqual(counter.names.count("bob"), 6)
        self.assertEqual(len(self.bodies(self.one)), 10)

    def test_replacedUidRecordIsWritten(self):
        """
        A UID record another program replaced (renamed over) is the one
        the next delivery updates, not the old file kept open.
        """
        validity, uidnext, generation, rest, _ = readUidRecord(self.one._dirfd, "bob")
        writeUidRecord(self.one._dirfd, "bob", validity, 500, generation, rest)
        self.successResultOf(self.two.deliver("amy", "bob", b"third\n"))
        self.assertEqual(readUidRecord(self.one._dirfd, "bob")[1],
                         self.two._mailbox("bob").mbox.uidNext)
        writeUidRecord(self.one._dirfd, "bob", validity, 500, generation, rest)
        self.successResultOf(self.one.deliver("amy", "bob", b"fourth\n"))
        self.assertEqual(readUidRecord(self.one._dirfd, "bob")[1],
                         self.one._mailbox("bob").mbox.uidNext)
        self.assertEqual(self.bodies(self.one), [b"first\n", b"second\n", b"third\n",
                                                 b"fourth\n"])

    def test_keptFilesAreBounded(self):
        """
        Past the process's limit, side files are opened and closed per use
        rather than kept, and delivery works the same.
        """
        for store in (self.one, self.two):
            for mailbox in store._mailboxes.values():
                mailbox.mbox.closeSideFiles()
        before = sidefiles.keptCount()
        self.patch(sidefiles, "MAX_KEPT", before)
        self.successResultOf(self.one.deliver("amy", "bob", b"third\n"))
        self.successResultOf(self.two.deliver("amy", "bob", b"fourth\n"))
        self.assertEqual(sidefiles.keptCount(), before)
        self.assertEqual(len(self.bodies(self.two)), 4)

    def test_closeReleasesKeptFiles(self):
        """
        Closing a store closes the side files it kept open.
        """
        kept = sidefiles.keptCount()
        self.one.close()
        self.assertLess(sidefiles.keptCount(), kept)
