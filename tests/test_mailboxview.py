"""
The mailbox view of the store contract (stable ids, listings with
summaries, fetch and delete by id, new-mail announcements), run against
every store; then what only the spool store must show: ids that survive a
restart and other programs' rewrites of the mbox file.
"""

import mailbox
import re

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.spool import store as spool
from twisted_mail import errors
from twisted_mail.mail.mime import popSize
from twisted_mail.stores.memory import MemoryStore

from .test_store import makeSpoolStore

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")

MIME = (
    b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>\n"
    b"To: bob@localhost\n"
    b"Subject: =?utf-8?b?Q2Fmw6k=?= menu\n"
    b"Date: Thu, 26 Nov 2026 12:00:00 +0100\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=XX\n"
    b"\n"
    b"--XX\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"\n"
    b"Soup of the day.\n"
    b"--XX\n"
    b"Content-Type: application/pdf\n"
    b"Content-Disposition: attachment; filename=menu.pdf\n"
    b"Content-Transfer-Encoding: base64\n"
    b"\n"
    b"aGVsbG8=\n"
    b"--XX--\n"
)


class MailboxViewContractMixin:
    """
    What every store's mailbox view promises.  Subclasses define
    C{makeStore()}.
    """

    def setUp(self):
        self.store = self.makeStore()
        for userid in ("alice", "bob"):
            self.successResultOf(self.store.addUser(userid))

    def ok(self, d):
        return self.successResultOf(d)

    def session(self, userid="bob"):
        return self.ok(self.store.openMailbox(userid))

    def send(self, *bodies):
        for body in bodies:
            self.ok(self.store.deliver("alice", "bob", body))

    def listing(self, session=None, **kwargs):
        return self.ok((session or self.session()).listMessages(**kwargs))

    def test_listingInMailboxOrder(self):
        """
        A listing gives every message once, in mailbox order, each with a
        well-formed id of its own and the POP3 size of the text READM gives.
        """
        self.send(b"one\n", b"two\n", b"three\n")
        session = self.session()
        listing = self.listing(session)
        self.assertEqual(listing.total, 3)
        ids = [m.id for m in listing.messages]
        self.assertEqual(len(set(ids)), 3)
        for msgid in ids:
            self.assertRegex(msgid, _ID)
        texts = [self.ok(session.readMessage()) for _ in range(3)]
        self.assertEqual([m.snippet for m in listing.messages], ["one", "two", "three"])
        self.assertEqual([m.size for m in listing.messages], [popSize(t) for t in texts])

    def test_listingPages(self):
        """
        Offset and limit page through the listing, from either end; the
        total is the whole mailbox's.
        """
        self.send(*[b"m%d\n" % i for i in range(5)])
        page = self.listing(start=1, limit=2)
        self.assertEqual(page.total, 5)
        self.assertEqual([m.snippet for m in page.messages], ["m1", "m2"])
        newest = self.listing(start=0, limit=2, newestFirst=True)
        self.assertEqual([m.snippet for m in newest.messages], ["m4", "m3"])
        self.assertEqual(self.listing(start=9).messages, [])

    def test_summaryDecoded(self):
        """
        A summary shows the sender and subject decoded from RFC 2047, the
        Date header in UTC, and counts the attachments.
        """
        self.ok(self.store.deliverMessage("j@example.org", "bob", MIME))
        (summary,) = self.listing().messages
        self.assertEqual(summary.sender, "J\u00fcrgen M\u00fcller <j@example.org>")
        self.assertEqual(summary.subject, "Caf\u00e9 menu")
        self.assertEqual(summary.date, "2026-11-26T11:00:00Z")
        self.assertEqual(summary.snippet, "Soup of the day.")
        self.assertEqual(summary.attachments, 1)
        self.assertIsInstance(summary.arrived, int)

    def test_fetchById(self):
        """
        Fetching by id gives the text READM gives, and moves neither the
        cursor nor the current message.
        """
        self.send(b"one\n", b"two\n")
        session = self.session()
        first, second = self.listing(session).messages
        text = self.ok(session.fetchMessage(second.id))
        self.assertTrue(text.endswith(b"\n\ntwo\n"))
        self.assertEqual(self.ok(session.readMessage()).split(b"\n\n", 1)[1], b"one\n")
        self.failureResultOf(session.fetchMessage("nope"), errors.NoSuchMessage)

    def test_selectById(self):
        """
        Selecting by id makes that message current (DELM deletes it) and
        puts the cursor just after it.
        """
        self.send(b"one\n", b"two\n", b"three\n")
        session = self.session()
        _, second, _ = self.listing(session).messages
        self.assertTrue(self.ok(session.selectMessage(second.id)).endswith(b"\ntwo\n"))
        self.ok(session.deleteMessage())
        self.assertTrue(self.ok(session.readMessage()).endswith(b"\nthree\n"))
        self.assertEqual([m.snippet for m in self.listing().messages], ["one", "three"])
        self.failureResultOf(session.selectMessage(second.id), errors.NoSuchMessage)

    def test_deleteById(self):
        """
        Deleting by id answers the ids deleted (skipping unknown and gone
        ones); the messages are gone for every session, by every way of
        reading.
        """
        self.send(b"one\n", b"two\n", b"three\n")
        session = self.session()
        other = self.session()
        one, two, three = self.listing(session).messages
        self.assertEqual(self.ok(session.deleteMessages([one.id, three.id, "zz"])),
                         [one.id, three.id])
        self.assertEqual(self.ok(session.deleteMessages([one.id])), [])
        self.assertEqual([m.id for m in self.listing(other).messages], [two.id])
        self.assertTrue(self.ok(other.readMessage()).endswith(b"\ntwo\n"))
        self.failureResultOf(other.fetchMessage(one.id), errors.NoSuchMessage)
        self.ok(session.close())
        self.assertEqual([m.id for m in self.listing().messages], [two.id])

    def test_idsStableAcrossSessionsAndDeletes(self):
        """
        A message keeps its id in every session, before and after other
        sessions' deletes and the expunge that follows them.
        """
        self.send(b"one\n", b"two\n", b"three\n")
        before = [m.id for m in self.listing().messages]
        session = self.session()
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        self.ok(session.close())
        after = [m.id for m in self.listing().messages]
        self.assertEqual(after, before[1:])

    def test_identicalCopiesDistinctIds(self):
        """
        Two byte-identical messages get two ids; deleting one leaves the
        other's id as it was.
        """
        for _ in range(2):
            self.ok(self.store.deliverMessage("x@example.org", "bob",
                                              b"Subject: same\n\nsame\n"))
        first, second = self.listing().messages
        self.assertNotEqual(first.id, second.id)
        session = self.session()
        self.assertEqual(self.ok(session.deleteMessages([first.id])), [first.id])
        self.ok(session.close())
        self.assertEqual([m.id for m in self.listing().messages], [second.id])

    def test_deletedIdNeverReturns(self):
        """
        Once a message is deleted, its id never names another message, even
        a byte-identical one delivered after.
        """
        body = b"Subject: again\n\nagain\n"
        self.ok(self.store.deliverMessage("x@example.org", "bob", body))
        (gone,) = self.listing().messages
        session = self.session()
        self.ok(session.deleteMessages([gone.id]))
        self.ok(session.close())
        self.ok(self.store.deliverMessage("x@example.org", "bob", body))
        (new,) = self.listing().messages
        self.assertNotEqual(new.id, gone.id)
        self.failureResultOf(self.session().fetchMessage(gone.id), errors.NoSuchMessage)

    def test_listingTwiceSameSummaries(self):
        """
        Listing again gives equal summaries.
        """
        self.ok(self.store.deliverMessage("j@example.org", "bob", MIME))
        self.send(b"hello\n")
        self.assertEqual(self.listing().messages, self.listing().messages)

    def test_subscribe(self):
        """
        A subscriber hears of each new message for its user, with its
        summary, and of nothing after it unsubscribes.
        """
        self.send(b"old\n")
        heard = []
        stop = self.store.subscribe("bob", heard.append)
        self.send(b"new\n")
        self.ok(self.store.deliver("bob", "alice", b"not bob's\n"))
        self.assertEqual([s.snippet for s in heard], ["new"])
        self.assertEqual(heard[0].id, self.listing().messages[-1].id)
        stop()
        stop()
        self.send(b"later\n")
        self.assertEqual(len(heard), 1)

    def test_subscribeUnknownUser(self):
        """
        Subscribing to a user who does not exist (or an invalid id) is
        allowed and announces nothing.
        """
        heard = []
        self.store.subscribe("carol", heard.append)()
        self.store.subscribe("../x", heard.append)()
        self.assertEqual(heard, [])


class MemoryMailboxViewTests(MailboxViewContractMixin, SynchronousTestCase):
    def makeStore(self):
        return MemoryStore()


class SpoolMailboxViewTests(MailboxViewContractMixin, SynchronousTestCase):
    def makeStore(self):
        self.path = self.mktemp()
        return makeSpoolStore(self, self.path)

    def reopen(self):
        """
        A new store on the same spool, as after a restart.
        """
        return makeSpoolStore(self, self.path)

    def mboxPath(self, userid="bob"):
        return FilePath(self.path).child(userid).path

    def test_idsStableAcrossRestart(self):
        """
        A new store on the same spool (a restarted server) gives every
        message the id it had.
        """
        self.send(b"one\n", b"two\n")
        self.ok(self.store.deliverMessage("x@example.org", "bob", MIME))
        before = self.listing().messages
        store = self.reopen()
        after = self.ok(self.ok(store.openMailbox("bob")).listMessages()).messages
        self.assertEqual([m.id for m in after], [m.id for m in before])
        self.assertEqual(after, before)

    def test_idsHiddenFromReaders(self):
        """
        The id header the spool keeps is not part of the text READM, fetch
        or the size show.
        """
        self.send(b"one\n")
        session = self.session()
        (summary,) = self.listing(session).messages
        text = self.ok(session.fetchMessage(summary.id))
        self.assertNotIn(b"X-Simplemail-Id", text)
        self.assertTrue(text.startswith(b"From: alice@localhost\n"))
        self.assertEqual(summary.size, popSize(text))
        with open(self.mboxPath(), "rb") as f:
            self.assertIn(b"X-Simplemail-Id: " + summary.id.encode() + b"\n", f.read())

    def test_idsStableAcrossMailboxRewrite(self):
        """
        Python's mailbox module deleting a message and rewriting the file
        (as mutt does too) leaves the other messages' ids as they were, for
        a running server and after a restart.
        """
        self.send(b"one\n", b"two\n", b"three\n")
        one, two, three = self.listing().messages
        box = mailbox.mbox(self.mboxPath(), create=False)
        box.lock()
        try:
            keys = list(box.keys())
            box.remove(keys[1])
            box.flush()
        finally:
            box.unlock()
            box.close()
        self.assertEqual([m.id for m in self.listing().messages], [one.id, three.id])
        store = self.reopen()
        after = self.ok(self.ok(store.openMailbox("bob")).listMessages()).messages
        self.assertEqual([m.id for m in after], [one.id, three.id])

    def test_otherProgramsMessages(self):
        """
        Messages another program appended (no id header) get ids of their
        own, written into the file (docs/folders.rst): distinct for
        identical copies, and the same after a restart.
        """
        self.send(b"ours\n")
        box = mailbox.mbox(self.mboxPath(), create=False)
        box.lock()
        try:
            for _ in range(2):
                message = mailbox.mboxMessage(b"Subject: theirs\n\ntheirs\n")
                message.set_from("procmail@example.org", (2026, 11, 26, 12, 0, 0, 0, 1, 0))
                box.add(message)
            box.flush()
        finally:
            box.unlock()
            box.close()
        ours, first, second = self.listing().messages
        self.assertEqual(len({ours.id, first.id, second.id}), 3)
        self.assertEqual(first.subject, "theirs")
        self.assertEqual(first.arrived, 1795694400)
        content = FilePath(self.mboxPath()).getContent()
        for msgid in (first.id, second.id):
            self.assertRegex(msgid, _ID)
            self.assertIn(b"X-Simplemail-Id: " + msgid.encode() + b"\n", content)
        store = self.reopen()
        after = self.ok(self.ok(store.openMailbox("bob")).listMessages()).messages
        self.assertEqual([m.id for m in after], [ours.id, first.id, second.id])

    def test_forgedIdHeader(self):
        """
        A message that arrives with an id header of its own neither takes
        another message's id nor has its header hidden.
        """
        self.send(b"one\n")
        (one,) = self.listing().messages
        forged = b"X-Simplemail-Id: " + one.id.encode() + b"\nSubject: x\n\nx\n"
        self.ok(self.store.deliverMessage("x@example.org", "bob", forged))
        first, second = self.listing().messages
        self.assertEqual(first.id, one.id)
        self.assertNotEqual(second.id, one.id)
        self.assertEqual(self.ok(self.session().fetchMessage(second.id)), forged)

    def test_summariesParsedOnce(self):
        """
        Listing a mailbox a second time parses no message again; a new
        message is parsed once.
        """
        self.send(b"one\n", b"two\n")
        parsed = []
        real = spool.summarize
        self.patch(spool, "summarize", lambda *a: parsed.append(a[1]) or real(*a))
        self.listing()
        self.assertEqual(len(parsed), 2)
        self.listing()
        self.listing(start=1, limit=1, newestFirst=True)
        self.assertEqual(len(parsed), 2)
        self.send(b"three\n")
        self.listing()
        self.assertEqual(len(parsed), 3)

    def test_otherProcessAnnounced(self):
        """
        A delivery by another store on the same spool (another server
        process) is announced by the poll, within its interval.
        """
        heard = []
        self.store.subscribe("bob", heard.append)
        other = self.reopen()
        self.ok(other.deliver("alice", "bob", b"from afar\n"))
        self.assertEqual(heard, [])
        clock = self.store._reactor
        clock.advance(spool.POLL_INTERVAL)
        clock.advance(spool.POLL_INTERVAL)
        self.assertEqual([s.snippet for s in heard], ["from afar"])
        self.ok(other.deliver("alice", "bob", b"again\n"))
        clock.advance(spool.POLL_INTERVAL)
        self.assertEqual([s.snippet for s in heard], ["from afar", "again"])

    def test_pollStopsWithLastSubscriber(self):
        """
        The poll for other processes' mail runs only while someone listens.
        """
        stop = self.store.subscribe("bob", lambda s: None)
        self.assertEqual(len(self.store._reactor.getDelayedCalls()), 1)
        stop()
        self.assertEqual(self.store._reactor.getDelayedCalls(), [])


class JournalledSpoolMailboxViewTests(SpoolMailboxViewTests):
    """
    The mailbox view with the spool's write-ahead journal on, as
    C{twistd simplemail} runs it.
    """

    def makeStore(self):
        self.path = self.mktemp()
        return makeSpoolStore(self, self.path, journal=True)

    def reopen(self):
        return makeSpoolStore(self, self.path, journal=True)
