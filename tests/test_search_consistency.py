"""
Index consistency of the spool store: whatever happens to the mail or to the
index (deliveries, deletes, other programs' rewrites and appends, the index
file removed, truncated or replaced, a crash while indexing), a search
always equals a scan of the mailbox with the reference evaluator.
"""

import mailbox
import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail.mime import parseMessage
from twisted_mail.mail import query as Q
from twisted_mail.mail.query import matches, parseQuery
from twisted_mail.stores.spool import entries
from twisted_mail.stores.spool.index import indexName

from tests.searchcontract import QUERIES
from tests.searchsamples import SAMPLES
from tests.serverprocess import ServerProcess
from tests.test_store import makeSpoolStore


class ConsistencyTests(SynchronousTestCase):
    """
    A search equals a scan after each kind of change.
    """

    def setUp(self):
        self.path = self.mktemp()
        self.store = self.newStore()
        self.successResultOf(self.store.addUser("bob"))
        for text in SAMPLES:
            self.successResultOf(self.store.deliverMessage("x@example.com", "bob", text))

    def newStore(self):
        return makeSpoolStore(self, self.path)

    def scan(self, query):
        session = self.successResultOf(self.store.openMailbox("bob"))
        found = []
        listed = self.successResultOf(session.listMessages()).messages
        # Newest first: by arrival time, then by mailbox order.
        for summary in sorted(reversed(listed), key=lambda m: -m.arrived):
            text = self.successResultOf(session.fetchMessage(summary.id))
            if matches(query, summary, parseMessage(text)):
                found.append(summary.id)
        self.successResultOf(session.close())
        return found

    def assertSearchIsScan(self, store=None):
        store = store or self.store
        for text in QUERIES + ["procmail", "rewritten"]:
            query = parseQuery(text)
            found = self.successResultOf(store.search("bob", query))
            self.assertEqual([m.id for m in found.messages], self.scan(query), text)
            self.assertEqual(found.total, len(found.messages))

    @property
    def spoolFile(self):
        return os.path.join(self.path, "bob")

    @property
    def indexFile(self):
        return os.path.join(self.path, indexName("bob"))

    def test_deliverAndDelete(self):
        """Deliveries and deletes through the store are searched at once."""
        self.assertSearchIsScan()
        self.successResultOf(self.store.deliverMessage(
            "x", "bob", b"Subject: procmail rules\n\nmeeting moved\n"))
        self.assertSearchIsScan()
        session = self.successResultOf(self.store.openMailbox("bob"))
        first = self.successResultOf(session.listMessages()).messages[0].id
        self.successResultOf(session.deleteMessages([first]))
        self.assertSearchIsScan()
        self.successResultOf(session.close())
        self.assertSearchIsScan()

    def test_otherFields(self):
        """bcc: and the every-header field (IMAP's) are searched as a scan finds them."""
        self.successResultOf(self.store.deliverMessage(
            "x", "bob", b"Bcc: dave@example.com\nSubject: hush\n\nquiet words\n"))
        queries = [parseQuery(text) for text in [
            "bcc:dave", "hush -bcc:dave", "bcc:dave quiet", "bcc:example -meeting"]]
        queries += [Q.Text("headers", "hush"), Q.Text("headers", "dav"),
                    Q.And([Q.Text("headers", "dave"), Q.Text("body", "quiet")]),
                    Q.Not(Q.Text("headers", "subject")),
                    Q.Text("headers", "ave", substring=True)]
        for query in queries:
            found = self.successResultOf(self.store.search("bob", query))
            self.assertEqual([m.id for m in found.messages], self.scan(query), query)
            self.assertEqual(found.total, len(found.messages))
        self.assertEqual(len(self.scan(queries[0])), 1)

    def test_anotherProcess(self):
        """What another server process delivers and deletes is searched."""
        self.assertSearchIsScan()
        other = self.newStore()
        self.successResultOf(other.deliverMessage(
            "x", "bob", b"Subject: from procmail\n\nhello\n"))
        session = self.successResultOf(other.openMailbox("bob"))
        self.successResultOf(session.deleteMessages(
            [self.successResultOf(session.listMessages()).messages[1].id]))
        self.assertSearchIsScan()
        self.successResultOf(session.close())
        self.assertSearchIsScan()

    def test_otherToolRewrites(self):
        """A mailbox rewritten by another mail program (as mutt does) is indexed anew."""
        self.assertSearchIsScan()
        box = mailbox.mbox(self.spoolFile)
        box.lock()
        key, message = next(iter(box.items()))
        message.replace_header("Subject", "rewritten by mutt")
        message["Status"] = "RO"
        box[key] = message
        box.flush()
        box.unlock()
        box.close()
        self.assertSearchIsScan()
        self.assertEqual(
            self.successResultOf(self.store.search("bob", parseQuery("rewritten"))).total, 1)

    def test_otherToolAppends(self):
        """A message procmail appends to the file is found."""
        self.assertSearchIsScan()
        with open(self.spoolFile, "ab") as f:
            f.write(b"From procmail@example.com Sun Dec  6 08:00:00 2026\n"
                    b"Subject: delivered by procmail\n\nagenda attached\n\n")
        self.assertSearchIsScan()
        self.assertEqual(
            self.successResultOf(self.store.search("bob", parseQuery("procmail"))).total, 1)

    def test_indexRemoved(self):
        """An index file removed while the server runs is rebuilt."""
        self.assertSearchIsScan()
        for name in os.listdir(self.path):
            if name.startswith(indexName("bob")):
                os.unlink(os.path.join(self.path, name))
        self.assertSearchIsScan()
        self.assertTrue(os.path.exists(self.indexFile))

    def test_indexTruncated(self):
        """A truncated index is thrown away and rebuilt, without a lost message."""
        self.assertSearchIsScan()
        mailbox_ = self.store._mailbox("bob")
        mailbox_.index.writer.close()
        mailbox_.index.reader.close()
        for name in os.listdir(self.path):
            if name.startswith(indexName("bob")):
                with open(os.path.join(self.path, name), "r+b") as f:
                    f.truncate(1000)
        self.assertSearchIsScan()

    def test_indexGarbage(self):
        """An index file of garbage, or a directory in its place, is replaced."""
        for content in [b"garbage" * 1000, None]:
            store = self.newStore()
            for name in os.listdir(self.path):
                if name.startswith(indexName("bob")):
                    os.unlink(os.path.join(self.path, name))
            if content is None:
                os.mkdir(self.indexFile)
            else:
                FilePath(self.indexFile).setContent(content)
            self.assertSearchIsScan(store)

    def test_restartListsFromIndex(self):
        """A restarted store lists from the index the summaries a parse gives."""
        self.successResultOf(self.store.search("bob", parseQuery("x")))
        before = self.successResultOf(self.successResultOf(
            self.store.openMailbox("bob")).listMessages()).messages
        again = self.newStore()
        after = self.successResultOf(self.successResultOf(
            again.openMailbox("bob")).listMessages()).messages
        self.assertEqual(after, before)
        self.assertEqual(again._mailbox("bob").summaries and len(again._mailbox("bob").summaries),
                         len(before))

    def test_restartAfterRewrite(self):
        """A restart after another tool rewrote the file scans it again, not the snapshot."""
        self.successResultOf(self.store.search("bob", parseQuery("x")))
        box = mailbox.mbox(self.spoolFile)
        keys = list(box.keys())
        box.remove(keys[0])
        box.flush()
        box.close()
        again = self.newStore()
        listing = self.successResultOf(self.successResultOf(
            again.openMailbox("bob")).listMessages())
        self.assertEqual(listing.total, 3)
        self.assertSearchIsScan(again)


class CrashTests(SynchronousTestCase):
    """
    A real server killed while it indexes loses nothing: after a restart a
    search equals a scan.
    """

    def test_killDuringIndexing(self):
        """kill -9 while a burst of deliveries is being indexed; the restarted server catches up."""
        spool = self.mktemp()
        server = ServerProcess(spool)
        self.addCleanup(server.close)
        server.start()
        with server.connect() as client:
            client.command(b"ADDU bob")
            client.command(b"USER bob")
            for i in range(150):
                text = SAMPLES[i % len(SAMPLES)]
                self.assertTrue(client.send("bob", text).startswith(b"+OK"))
        server.kill()
        server.start()
        with server.connect() as client:
            client.command(b"USER bob")
            status, lines = client.multiline(b"SRCH bob")
            self.assertTrue(status.startswith(b"+OK 150 of 150"), status)
            status, lines = client.multiline(b"SRCH gare -rechnung")
            expected = len([i for i in range(150) if i % len(SAMPLES) == 1])
            self.assertTrue(status.startswith(b"+OK %d of %d" % (expected, expected)), status)
            client.command(b"QUIT")


class SnapshotFactsTests(SynchronousTestCase):
    """
    The index's entries snapshot keeps each message's size and arrival
    time, so that the first light listing (IMAP SELECT) after a restart
    reads no record.
    """

    def setUp(self):
        self.path = self.mktemp()
        os.makedirs(self.path)
        with open(os.path.join(self.path, "bob"), "wb") as f:
            for n in range(20):
                # Another program's mail: no id lines, never indexed.
                f.write(b"From alice@localhost Fri Dec  4 12:00:%02d 2026\n"
                        b"From: alice@localhost\nSubject: number %d\n\nbody %d\n\n"
                        % (n, n, n))
        self.patch(entries, "SNAPSHOT_AFTER", 5)

    def listing(self, store):
        folder = self.successResultOf(store.openFolder("bob", "INBOX"))
        found = self.successResultOf(folder.listEntries())
        return [(s.id, s.size, s.arrived, s.uid, s.flags) for s in found]

    def restartedListing(self):
        def unread(record):
            raise AssertionError("a record was read for its facts")

        self.patch(entries, "recordFacts", unread)
        return self.listing(makeSpoolStore(self, self.path))

    def test_foreignMailListed(self):
        """A big listing of mail never indexed saves the facts a restarted server lists from."""
        before = self.listing(makeSpoolStore(self, self.path))
        self.assertEqual(len(before), 20)
        self.assertEqual(self.restartedListing(), before)

    def test_indexedMailListed(self):
        """After a search indexed the mail, a restarted server lists it without reading it."""
        store = makeSpoolStore(self, self.path)
        self.successResultOf(store.deliverMessage("x", "bob", b"Subject: new\n\nnew one\n"))
        self.successResultOf(store.search("bob", parseQuery("number")))
        before = self.listing(store)
        self.assertEqual(len(before), 21)
        self.assertEqual(self.restartedListing(), before)
