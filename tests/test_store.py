"""
The store contract, run against the in-memory store and the mbox spool
store alike.
"""

import mailbox

from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted.internet.task import Clock

from twisted_mail import errors
from twisted_mail.interfaces import IMailboxSession, IMailStore
from twisted_mail.stores.base import AtOnce
from twisted_mail.stores.spool.store import SpoolStore
from twisted_mail.stores.memory import MemoryStore


class SynchronousThreads(AtOnce, Clock):
    """
    A reactor and thread pool stand-in that runs "threaded" work at once, on
    the caller's thread, so the spool store's Deferreds have fired when its
    methods return; its clock is a L{Clock} the test advances.
    """


def makeSpoolStore(testCase, path=None, **kwargs):
    """
    A L{SpoolStore} on a fresh directory that runs its file work
    synchronously, closed at the end of the test.
    """
    if path is None:
        path = testCase.mktemp()
    store = SpoolStore(FilePath(path), reactor=SynchronousThreads(), **kwargs)
    testCase.addCleanup(store.close)
    return store


class StoreContractMixin:
    """
    What every L{IMailStore} promises.  Subclasses define C{makeStore}.
    """

    def setUp(self):
        self.store = self.makeStore()

    def ok(self, d):
        return self.successResultOf(d)

    def fails(self, d, exceptionType):
        return self.failureResultOf(d, exceptionType).value

    def addUsers(self, *userids):
        for userid in userids:
            self.ok(self.store.addUser(userid))

    def session(self, userid):
        return self.ok(self.store.openMailbox(userid))

    def readAll(self, session):
        texts = []
        for _ in range(10000):
            results = []
            session.readMessage().addBoth(results.append)
            (result,) = results
            if isinstance(result, Failure):
                result.trap(errors.NoMoreMail)
                return texts
            texts.append(result)
        self.fail("readMessage never answered NoMoreMail")

    def test_interfaces(self):
        """
        The store and its sessions provide the interfaces they claim.
        """
        self.addUsers("bob")
        self.assertTrue(verifyObject(IMailStore, self.store))
        self.assertTrue(verifyObject(IMailboxSession, self.session("bob")))

    def test_noUsers(self):
        """
        A new store has no users.
        """
        self.assertEqual(self.ok(self.store.listUsers()), [])

    def test_addUserListed(self):
        """
        Added users are listed, sorted, in lower case.
        """
        self.assertEqual(self.ok(self.store.addUser("Carol")), "carol")
        self.addUsers("bob", "alice.smith", "0day_user-2")
        self.assertEqual(
            self.ok(self.store.listUsers()),
            ["0day_user-2", "alice.smith", "bob", "carol"],
        )

    def test_addUserExists(self):
        """
        Adding a user twice, in any case, fails with UserExists.
        """
        self.addUsers("bob")
        self.fails(self.store.addUser("BOB"), errors.UserExists)

    def test_addUserInvalid(self):
        """
        Invalid user ids are refused and create nothing.
        """
        for bad in ["", "..", ".bob", "a/b", "a\x00b", "x" * 65, "bob.lock", "bøb"]:
            self.fails(self.store.addUser(bad), errors.InvalidUserId)
        self.assertEqual(self.ok(self.store.listUsers()), [])

    def test_hasUser(self):
        """
        hasUser answers with the canonical id, or NoSuchUser.
        """
        self.addUsers("bob")
        self.assertEqual(self.ok(self.store.hasUser("BoB")), "bob")
        self.fails(self.store.hasUser("carol"), errors.NoSuchUser)
        self.fails(self.store.hasUser("../bob"), errors.InvalidUserId)

    def test_openMissing(self):
        """
        Opening the mailbox of a user who does not exist fails.
        """
        self.fails(self.store.openMailbox("carol"), errors.NoSuchUser)
        self.fails(self.store.openMailbox("a/b"), errors.InvalidUserId)

    def test_deliverMissing(self):
        """
        Delivering to a user who does not exist fails and creates nothing.
        """
        self.fails(self.store.deliver("bob", "carol", b"hi\n"), errors.NoSuchUser)
        self.assertEqual(self.ok(self.store.listUsers()), [])

    def test_deliverTooLarge(self):
        """
        A message over the size limit is refused and nothing is stored.
        """
        store = self.makeStore(maxMessageSize=1000)
        self.ok(store.addUser("bob"))
        failure = self.failureResultOf(
            store.deliver("bob", "bob", b"x" * 1000), errors.MessageTooLarge
        )
        self.assertIn("1000", str(failure.value))
        session = self.ok(store.openMailbox("bob"))
        self.assertEqual(session.count, 0)

    def test_countAndOrder(self):
        """
        A session counts the messages and reads them in delivery order, with
        headers naming sender and receiver.
        """
        self.addUsers("alice", "bob")
        for i in range(3):
            self.ok(self.store.deliver("alice", "bob", b"message %d\n" % i))
        session = self.session("bob")
        self.assertEqual(session.count, 3)
        texts = self.readAll(session)
        self.assertEqual(len(texts), 3)
        for i, text in enumerate(texts):
            headers, body = text.split(b"\n\n", 1)
            self.assertEqual(body, b"message %d\n" % i)
            self.assertIn(b"From: alice@localhost\n", headers + b"\n")
            self.assertIn(b"To: bob@localhost\n", headers + b"\n")
            self.assertIn(b"Message-ID: <", headers)
            self.assertIn(b"Date: ", headers)

    def test_bodyByteForByte(self):
        """
        Bodies come back byte for byte, except that CRLF becomes LF: 8-bit
        bytes, lines starting with From or dots, blank lines.
        """
        self.addUsers("bob")
        body = (
            b"From the start\n>From quoted\n>>From twice\n.dot\n\n"
            b"\xff\xfe binary \x01\n trailing space \nlast"
        )
        self.ok(self.store.deliver("bob", "bob", body.replace(b"\n", b"\r\n")))
        (text,) = self.readAll(self.session("bob"))
        self.assertEqual(text.split(b"\n\n", 1)[1], body + b"\n")

    def test_emptyBody(self):
        """
        A message with an empty body is stored and read back.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("bob", "bob", b""))
        (text,) = self.readAll(self.session("bob"))
        self.assertTrue(text.endswith(b"\n\n"))

    def test_noMoreMailKeepsCurrent(self):
        """
        NoMoreMail leaves the current message as it was: DELM then deletes
        the message last read.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("bob", "bob", b"only\n"))
        session = self.session("bob")
        self.ok(session.readMessage())
        self.fails(session.readMessage(), errors.NoMoreMail)
        self.ok(session.deleteMessage())
        self.ok(session.close())
        self.assertEqual(self.session("bob").count, 0)

    def test_deleteWithoutRead(self):
        """
        Deleting before reading anything fails with NoCurrentMessage.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("bob", "bob", b"hi\n"))
        session = self.session("bob")
        self.fails(session.deleteMessage(), errors.NoCurrentMessage)

    def test_deleteTwice(self):
        """
        The current message can be deleted once; the second DELM fails.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("bob", "bob", b"hi\n"))
        session = self.session("bob")
        self.ok(session.readMessage())
        self.ok(session.deleteMessage())
        self.fails(session.deleteMessage(), errors.NoCurrentMessage)

    def test_readAfterDelete(self):
        """
        After a delete, the next read shows the message that followed.
        """
        self.addUsers("bob")
        for i in range(3):
            self.ok(self.store.deliver("bob", "bob", b"m%d\n" % i))
        session = self.session("bob")
        self.assertTrue(self.ok(session.readMessage()).endswith(b"m0\n"))
        self.ok(session.deleteMessage())
        self.assertTrue(self.ok(session.readMessage()).endswith(b"m1\n"))
        self.ok(session.deleteMessage())
        self.assertTrue(self.ok(session.readMessage()).endswith(b"m2\n"))

    def test_deletesExpungedAtClose(self):
        """
        Once the deleting session ends, new sessions see only what is left.
        """
        self.addUsers("bob")
        for i in range(4):
            self.ok(self.store.deliver("bob", "bob", b"m%d\n" % i))
        session = self.session("bob")
        for i in range(4):
            self.ok(session.readMessage())
            if i % 2 == 0:
                self.ok(session.deleteMessage())
        self.ok(session.close())
        self.ok(session.close())
        again = self.session("bob")
        self.assertEqual(again.count, 2)
        bodies = [t.split(b"\n\n", 1)[1] for t in self.readAll(again)]
        self.assertEqual(bodies, [b"m1\n", b"m3\n"])

    def test_deletedHiddenFromOtherSessions(self):
        """
        A deleted message is never shown to another session, even before the
        deleting session ends, and other sessions neither skip nor repeat.
        """
        self.addUsers("bob")
        for i in range(3):
            self.ok(self.store.deliver("bob", "bob", b"m%d\n" % i))
        a = self.session("bob")
        b = self.session("bob")
        self.assertTrue(self.ok(b.readMessage()).endswith(b"m0\n"))
        self.ok(a.readMessage())
        self.assertTrue(self.ok(a.readMessage()).endswith(b"m1\n"))
        self.ok(a.deleteMessage())
        self.assertTrue(self.ok(b.readMessage()).endswith(b"m2\n"))
        self.ok(a.close())
        self.fails(b.readMessage(), errors.NoMoreMail)
        self.assertEqual(self.session("bob").count, 2)

    def test_cursorSurvivesExpunge(self):
        """
        A session's cursor follows messages across another session's
        expunge: it neither skips nor repeats.
        """
        self.addUsers("bob")
        for i in range(4):
            self.ok(self.store.deliver("bob", "bob", b"m%d\n" % i))
        reader = self.session("bob")
        self.ok(reader.readMessage())
        self.assertTrue(self.ok(reader.readMessage()).endswith(b"m1\n"))
        deleter = self.session("bob")
        self.ok(deleter.readMessage())
        self.ok(deleter.deleteMessage())
        self.ok(deleter.close())
        self.assertTrue(self.ok(reader.readMessage()).endswith(b"m2\n"))

    def test_currentDeletedElsewhere(self):
        """
        When another session deletes my current message, my DELM fails with
        NoCurrentMessage instead of deleting something else.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("bob", "bob", b"m0\n"))
        self.ok(self.store.deliver("bob", "bob", b"m1\n"))
        a = self.session("bob")
        b = self.session("bob")
        self.ok(a.readMessage())
        self.ok(b.readMessage())
        self.ok(b.deleteMessage())
        self.fails(a.deleteMessage(), errors.NoCurrentMessage)
        self.ok(b.close())
        self.assertEqual(self.session("bob").count, 1)

    def test_newMailDuringSession(self):
        """
        Mail that arrives during a session can be read in it.
        """
        self.addUsers("bob")
        session = self.session("bob")
        self.fails(session.readMessage(), errors.NoMoreMail)
        self.ok(self.store.deliver("alice", "bob", b"late\n"))
        self.assertTrue(self.ok(session.readMessage()).endswith(b"late\n"))

    def test_closeWithoutDeletes(self):
        """
        Closing a session that deleted nothing keeps every message.
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("bob", "bob", b"m\n"))
        session = self.session("bob")
        self.ok(session.readMessage())
        self.ok(session.close())
        self.assertEqual(self.session("bob").count, 1)

    def test_deliverMessageAsGiven(self):
        """
        A complete message (as SMTP brings it) is stored with its own headers
        and body, line endings normalised and nothing else changed.
        """
        self.addUsers("bob")
        message = b"Subject: hello\r\nFrom: Ann <ann@example.org>\r\n\r\nFrom me\r\n.\r\n"
        self.ok(self.store.deliverMessage("ann@example.org", "BOB", message))
        (text,) = self.readAll(self.session("bob"))
        self.assertEqual(text, message.replace(b"\r\n", b"\n"))

    def test_deliverMessageInPieces(self):
        """
        A message given as pieces (each ending at a line end, as the SMTP
        ingress gathers a big one) is stored as their concatenation, with
        C{From } lines quoted across the pieces.
        """
        self.addUsers("bob")
        pieces = [b"Subject: in pieces\n", bytearray(b"\nFrom here\n"),
                  b"middle\n>From there\n", b"end\n"]
        self.ok(self.store.deliverMessage("ann@example.org", "bob", pieces))
        (text,) = self.readAll(self.session("bob"))
        self.assertEqual(text, b"".join(pieces))

    def test_deliverMessageMissing(self):
        """
        A complete message for a user who does not exist is refused.
        """
        self.fails(self.store.deliverMessage("", "carol", b"S: x\n\nx\n"),
                   errors.NoSuchUser)


class MemoryStoreContractTests(StoreContractMixin, SynchronousTestCase):
    def makeStore(self, **kwargs):
        return MemoryStore(**kwargs)


class SpoolStoreContractTests(StoreContractMixin, SynchronousTestCase):
    def makeStore(self, **kwargs):
        return makeSpoolStore(self, **kwargs)

    def test_spoolIsMbox(self):
        """
        What the spool store wrote is read by the stdlib mailbox module with
        the same headers and bodies (the stdlib reads mboxrd quoting as it
        stands: a body line "From here" is ">From here" in the file).
        """
        self.addUsers("bob")
        self.ok(self.store.deliver("alice", "bob", b"From here\nhello\n"))
        box = mailbox.mbox(FilePath(self.store.path).child("bob").path, create=False)
        (message,) = list(box)
        self.assertEqual(message["From"], "alice@localhost")
        self.assertEqual(message["To"], "bob@localhost")
        self.assertEqual(message.get_payload(decode=True), b">From here\nhello\n")
        self.assertTrue(message.get_from().startswith("alice@localhost "))
