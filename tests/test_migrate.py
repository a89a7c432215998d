"""
C{simplemail-migrate}: a spool copied into PostgreSQL and back, byte for
byte, ids kept, nothing lost or copied twice.
"""

import io
import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests import pgserver
from tests.test_store import makeSpoolStore

skip = pgserver.skipReason()

if skip is None:
    import psycopg

    from tests.test_pgstore import makePostgresStore
    from twisted_mail.service import migrate

#: A message another program appended: no id line, a From_ line in another
#: form than the server writes.
FOREIGN = (b"From MAILER-DAEMON  Thu Nov 26 12:00:00 2026 remote from elsewhere\n"
           b"Subject: from procmail\n\nFrom the outside\n>From quoted\n\n")


class MigrateTests(SynchronousTestCase):
    """
    Copying mailboxes between a spool and a database.
    """

    skip = skip

    def setUp(self):
        self.url = pgserver.freshDatabase()

    def ok(self, d):
        return self.successResultOf(d)

    def migrate(self, direction, spool):
        out = io.StringIO()
        err = io.StringIO()
        code = migrate.main(["--spool", spool, "--database", self.url, direction],
                            stdout=out, stderr=err)
        self.assertEqual((code, err.getvalue()), (0, ""))
        return out.getvalue()

    def fillSpool(self):
        """
        A spool with messages of every kind; returns its path and bob's ids
        (deleted and expunged messages not included).
        """
        path = self.mktemp()
        store = makeSpoolStore(self, path)
        for user in ("alice", "bob", "carol"):
            self.ok(store.addUser(user))
        self.ok(store.deliver("alice", "bob", b"From the start\n.dot\n\xff 8-bit\n"))
        self.ok(store.deliverMessage("ann@example.org", "bob",
                                     b"Subject: smtp\r\n\r\nby SMTP\r\n"))
        self.ok(store.deliver("bob", "bob", b"to be deleted\n"))
        with open(os.path.join(path, "bob"), "ab") as f:
            f.write(FOREIGN)
        self.ok(store.deliver("bob", "alice", b"for alice\n"))
        session = self.ok(store.openMailbox("bob"))
        listing = self.ok(session.listMessages())
        doomed = listing.messages[2].id
        self.assertEqual(self.ok(session.deleteMessages([doomed])), [doomed])
        # Not yet expunged: the delete is only in the journal.
        self.deleting = session
        ids = [m.id for m in listing.messages if m.id != doomed]
        return path, ids

    def test_roundTripByteForByte(self):
        """
        spool -> database -> spool gives the same files, byte for byte, with
        the same ids; a delete not yet expunged is not copied.
        """
        spool, ids = self.fillSpool()
        self.migrate("to-database", spool)
        db = makePostgresStore(self, self.url)
        self.assertEqual(self.ok(db.listUsers()), ["alice", "bob", "carol"])
        session = self.ok(db.openMailbox("bob"))
        self.assertEqual([m.id for m in self.ok(session.listMessages()).messages], ids)
        source = makeSpoolStore(self, spool)
        spoolSession = self.ok(source.openMailbox("bob"))
        for msgid in ids:
            self.assertEqual(self.ok(session.fetchMessage(msgid)),
                             self.ok(spoolSession.fetchMessage(msgid)))
        # Expunge the original's delete, then compare the files.
        self.ok(self.deleting.close())
        back = self.mktemp()
        self.migrate("to-spool", back)
        for user in ("alice", "bob", "carol"):
            self.assertEqual(FilePath(back).child(user).getContent(),
                             FilePath(spool).child(user).getContent(), user)
        # Migrated messages are read and deleted like any other.
        self.assertEqual(self.ok(session.readMessage()),
                         self.ok(spoolSession.fetchMessage(ids[0])))
        self.ok(session.deleteMessage())
        self.assertEqual(self.ok(db.openMailbox("bob")).count, len(ids) - 1)

    def test_runAgainCopiesNothing(self):
        """
        Running it again copies nothing twice, in either direction.
        """
        spool, ids = self.fillSpool()
        self.migrate("to-database", spool)
        out = self.migrate("to-database", spool)
        self.assertIn("0 messages copied, {} already there".format(len(ids) + 1), out)
        db = makePostgresStore(self, self.url)
        self.assertEqual(self.ok(db.openMailbox("bob")).count, len(ids))
        back = self.mktemp()
        self.migrate("to-spool", back)
        out = self.migrate("to-spool", back)
        self.assertIn("0 messages copied", out)

    def test_databaseIdsComeBack(self):
        """
        database -> spool -> database keeps the database's own ids.
        """
        db = makePostgresStore(self, self.url)
        self.ok(db.addUser("bob"))
        for i in range(3):
            self.ok(db.deliver("alice", "bob", b"m%d\n" % i))
        before = self.ok(self.ok(db.openMailbox("bob")).listMessages()).messages
        spool = self.mktemp()
        self.migrate("to-spool", spool)
        spoolStore = makeSpoolStore(self, spool)
        spoolIds = [m.id for m in
                    self.ok(self.ok(spoolStore.openMailbox("bob")).listMessages()).messages]
        self.assertEqual(spoolIds, [m.id for m in before])
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("TRUNCATE messages, users CASCADE")
        self.migrate("to-database", spool)
        after = self.ok(self.ok(db.openMailbox("bob")).listMessages()).messages
        self.assertEqual(after, before)

    def test_badArguments(self):
        """
        Bad arguments and an unreachable database are one-line errors.
        """
        err = io.StringIO()
        self.assertEqual(migrate.main(["--spool", "x", "sideways"], stderr=err), 2)
        self.assertIn("to-database or to-spool", err.getvalue())
        err = io.StringIO()
        code = migrate.main(["--spool", self.mktemp(), "--database",
                             "host=/nonexistent dbname=x", "to-spool"],
                            stdout=io.StringIO(), stderr=err)
        self.assertEqual(code, 1)
        self.assertEqual(err.getvalue().count("\n"), 1)
        self.assertIn("cannot use database", err.getvalue())

    def test_foldersFlagsAndUidsBothWays(self):
        """
        Folders, flags, UIDs, UIDVALIDITY and ids go to the database and
        back.
        """
        path = self.mktemp()
        store = makeSpoolStore(self, path)
        self.ok(store.addUser("bob"))
        self.ok(store.createFolder("bob", "Work/2026"))
        first = self.ok(store.appendMessage("bob", "Work/2026", b"Subject: a\n\na\n",
                                            ["\\Seen", "$Label1"], 1700000000))
        self.ok(store.appendMessage("bob", "Work/2026", b"Subject: b\n\nb\n"))
        msgid = self.ok(store.deliver("alice", "bob", b"hi\n"))
        inbox = self.ok(store.openMailbox("bob"))
        self.ok(inbox.setFlags([msgid], add=["\\Flagged"]))
        view = self.ok(store.openFolder("bob", "Work/2026"))
        self.ok(view.deleteMessages([first.id]))
        self.ok(view.close())
        self.ok(store.appendMessage("bob", "Work/2026", b"Subject: c\n\nc\n", ["\\Answered"]))

        def state(s):
            found = {}
            for info in self.ok(s.listFolders("bob")):
                folder = self.ok(s.openFolder("bob", info.name))
                found[info.name] = (info.uidValidity, [
                    (m.id, m.uid, sorted(m.flags), m.subject)
                    for m in self.ok(folder.listMessages()).messages])
            return found

        before = state(store)
        self.migrate("to-database", path)
        self.assertEqual(state(makePostgresStore(self, self.url)), before)
        back = self.mktemp()
        self.migrate("to-spool", back)
        self.assertEqual(state(makeSpoolStore(self, back)), before)

    def test_intoASpoolWithMail(self):
        """
        Mail migrated into a spool folder that already holds mail keeps its ids, after a restart too, and follows the folder's own UIDs in order (the database's UIDs belong to another UIDVALIDITY).
        """
        db = makePostgresStore(self, self.url)
        self.ok(db.addUser("bob"))
        migrated = [self.ok(db.deliver("alice", "bob", b"from the database %d\n" % (i,)))
                    for i in range(3)]
        path = self.mktemp()
        store = makeSpoolStore(self, path)
        self.ok(store.addUser("bob"))
        for i in range(5):
            self.ok(store.deliver("alice", "bob", b"already here %d\n" % (i,)))
        store.close()
        self.migrate("to-spool", path)
        listing = self.ok(self.ok(makeSpoolStore(self, path).openMailbox("bob"))
                          .listMessages()).messages
        self.assertEqual([m.id for m in listing[5:]], migrated)
        self.assertEqual([m.uid for m in listing], list(range(1, 9)))
