"""
Tests for the line protocol's folder extension (CAPA FOLDERS:
L{twisted_mail.doors.linefolders}) and for reading marking C{\\Seen}
(C{READM}), over a StringTransport against the memory store.
"""

from twisted_mail.mail.model import FLAGGED, SEEN

from tests import pgserver
from tests.test_server import ServerTestCase
from tests.test_store import makeSpoolStore
from tests.test_server_mailbox import MailboxViewTestsMixin


class FolderCommandTests(ServerTestCase):
    """
    LSTF, FOLDER, LSTMF, FLAG, UNFLAG and MOVE.
    """

    def setUp(self):
        ServerTestCase.setUp(self)
        self.addUsers("alice", "bob")

    selected = MailboxViewTestsMixin.selected

    def ids(self, userid="bob", folder="INBOX"):
        view = self.successResultOf(self.store.openFolder(userid, folder))
        listing = self.successResultOf(view.listMessages())
        self.successResultOf(view.close())
        return [(m.id, sorted(m.flags)) for m in listing.messages]

    def test_capa(self):
        """CAPA lists FOLDERS (and SEARCH) after what it listed before."""
        connection = self.connect()
        connection.send(b"CAPA")
        status, lines = connection.multiline()
        self.assertEqual(lines[-4:], [b"LSTM", b"SENDM", b"FOLDERS", b"SEARCH"])

    def test_needsUser(self):
        """The folder commands need a user, like LSTM."""
        connection = self.connect()
        for line in (b"LSTF", b"FOLDER Work", b"LSTMF", b"FLAG m1 \\Seen", b"MOVE m1 Work"):
            connection.send(line)
            self.assertEqual(connection.line(), b"-ERR no user selected (use USER <userid> first)")

    def test_lstf(self):
        """LSTF lists each folder: total, unseen, special use (or -), name."""
        self.deliver("alice", "bob", b"one\n")
        self.successResultOf(self.store.createFolder("bob", "Work/Project X"))
        connection = self.selected()
        connection.send(b"LSTF")
        status, lines = connection.multiline()
        self.assertEqual(status, b"+OK 7 folders")
        self.assertEqual(lines, [
            b"1 1 - INBOX", b"0 0 archive Archive", b"0 0 drafts Drafts",
            b"0 0 junk Junk", b"0 0 sent Sent", b"0 0 trash Trash",
            b"0 0 - Work/Project X"])

    def test_lstmfShowsFlags(self):
        """LSTMF is LSTM with a third tab and the flags."""
        self.deliver("alice", "bob", b"one\n")
        [(msgid, _)] = self.ids()
        connection = self.selected()
        connection.send(b"LSTMF")
        status, [line] = connection.multiline()
        self.assertEqual(line.split(b"\t")[1:], [b"alice@localhost", b"", b""])
        connection.send(b"FLAG " + msgid.encode() + b" \\Flagged $Work")
        self.assertEqual(connection.line(), b"+OK flags: $Work \\Flagged")
        connection.send(b"LSTMF")
        status, [line] = connection.multiline()
        self.assertEqual(line.split(b"\t")[-1], b"$Work \\Flagged")
        connection.send(b"LSTM")
        status, [line] = connection.multiline()
        self.assertEqual(line.count(b"\t"), 2)

    def test_flagAndUnflag(self):
        """FLAG and UNFLAG change the flags durably and answer what they are now."""
        self.deliver("alice", "bob", b"one\n")
        [(msgid, _)] = self.ids()
        connection = self.selected()
        connection.send(b"FLAG " + msgid.encode() + b" \\seen")
        self.assertEqual(connection.line(), b"+OK flags: \\Seen")
        connection.send(b"FLAG " + msgid.encode() + b" \\Seen")
        self.assertEqual(connection.line(), b"+OK flags: \\Seen")
        connection.send(b"UNFLAG " + msgid.encode() + b" \\Seen")
        self.assertEqual(connection.line(), b"+OK flags: none")
        self.assertEqual(self.ids(), [(msgid, [])])

    def test_flagBadInput(self):
        """Bad flags, ids and missing arguments are one -ERR line; nothing changes."""
        self.deliver("alice", "bob", b"one\n")
        [(msgid, _)] = self.ids()
        connection = self.selected()
        for line, reply in [
                (b"FLAG " + msgid.encode() + b" \\Recent", b"-ERR invalid flag: \\Recent"),
                (b"FLAG " + msgid.encode() + b" (x", b"-ERR invalid flag: (x"),
                (b"FLAG " + msgid.encode(), b"-ERR usage: FLAG <id> <flag>..."),
                (b"FLAG", b"-ERR usage: FLAG <id> <flag>..."),
                (b"FLAG ../x \\Seen", b"-ERR no such message"),
                (b"FLAG nosuch \\Seen", b"-ERR no such message"),
                (b"UNFLAG nosuch \\Seen", b"-ERR no such message")]:
            connection.send(line)
            self.assertEqual(connection.line(), reply)
        self.assertEqual(self.ids(), [(msgid, [])])
        self.assertOpen(connection)

    def test_currentMessage(self):
        """. names the message READM read last, in INBOX and in a folder."""
        self.deliver("alice", "bob", b"one\n")
        connection = self.selected()
        connection.send(b"FLAG . \\Flagged")
        self.assertEqual(connection.line(),
                         b"-ERR no current message (READM a message first; it may already be deleted)")
        connection.send(b"READM")
        connection.message()
        connection.send(b"FLAG . \\Flagged")
        self.assertEqual(connection.line(), b"+OK flags: \\Flagged \\Seen")
        connection.send(b"MOVE . Trash")
        self.assertEqual(connection.line(), b"+OK moved to Trash")
        connection.send(b"FOLDER Trash", b"READM", b"UNFLAG . \\Seen")
        self.assertOK(connection.line())
        connection.message()
        self.assertEqual(connection.line(), b"+OK flags: \\Flagged")
        connection.send(b"DELM", b"FLAG . \\Seen")
        self.assertOK(connection.line())
        self.assertERR(connection.line())

    def test_folderSelectsAndListsIt(self):
        """After FOLDER, LSTM, READM and DELM work on that folder; FOLDER INBOX goes back."""
        self.deliver("alice", "bob", b"in the inbox\n")
        self.successResultOf(self.store.createFolder("bob", "Work"))
        for body in (b"first\n", b"second\n"):
            self.successResultOf(self.store.appendMessage("bob", "Work", body, flags=[SEEN]))
        work = self.ids(folder="Work")
        connection = self.selected()
        connection.send(b"FOLDER work")
        self.assertEqual(connection.line(), b"-ERR no such folder: work")
        connection.send(b"FOLDER Work")
        self.assertEqual(connection.line(), b"+OK Work: 2 messages, 0 unread")
        connection.send(b"LSTM")
        status, lines = connection.multiline()
        self.assertEqual([line.split(b" ")[0].decode() for line in lines],
                         [msgid for msgid, _ in work])
        connection.send(b"READM")
        self.assertEqual(connection.message()[1], b"first\n")
        connection.send(b"DELM")
        self.assertEqual(connection.line(), b"+OK message deleted")
        connection.send(b"READM")
        self.assertEqual(connection.message()[1], b"second\n")
        connection.send(b"READM")
        self.assertEqual(connection.line(), b"-ERR No More Mail")
        connection.send(b"READM " + work[0][0].encode())
        self.assertEqual(connection.line(), b"-ERR no such message")
        connection.send(b"FOLDER inbox")
        self.assertEqual(connection.line(), b"+OK INBOX: 1 message, 1 unread")
        connection.send(b"READM")
        self.assertEqual(connection.message()[1].split(b"\n\n", 1)[1], b"in the inbox\n")
        self.assertEqual(self.ids(folder="Work"), [work[1]])

    def test_folderBadNames(self):
        """Hostile folder names are one -ERR line each; the connection goes on."""
        connection = self.selected()
        for name in (b"../x", b"a/../../b", b"a//b", b"x" * 300, b"\xff"):
            connection.send(b"FOLDER " + name)
            self.assertERR(connection.line())
        connection.send(b"FOLDER")
        self.assertEqual(connection.line(), b"-ERR usage: FOLDER <folder>")
        connection.send(b"LSTM")
        self.assertOK(connection.multiline()[0])

    def test_move(self):
        """MOVE moves a message to another folder, keeping its id."""
        self.deliver("alice", "bob", b"one\n")
        [(msgid, _)] = self.ids()
        connection = self.selected()
        connection.send(b"MOVE " + msgid.encode() + b" Archive")
        self.assertEqual(connection.line(), b"+OK moved to Archive")
        self.assertEqual(self.ids(), [])
        self.assertEqual(self.ids(folder="Archive"), [(msgid, [])])
        for line, reply in [
                (b"MOVE " + msgid.encode() + b" Archive", b"-ERR no such message"),
                (b"MOVE " + msgid.encode() + b" Nowhere", b"-ERR no such folder: Nowhere"),
                (b"MOVE " + msgid.encode(), b"-ERR usage: MOVE <id> <folder>"),
                (b"MOVE " + msgid.encode() + b" ../x", b"-ERR invalid folder name: ../x")]:
            connection.send(line)
            self.assertEqual(connection.line(), reply)
        connection.send(b"FOLDER Archive")
        self.assertOK(connection.line())
        connection.send(b"MOVE " + msgid.encode() + b" Archive")
        self.assertEqual(connection.line(), b"-ERR the message is in Archive already")
        connection.send(b"MOVE " + msgid.encode() + b" INBOX")
        self.assertEqual(connection.line(), b"+OK moved to INBOX")
        self.assertEqual(self.ids(), [(msgid, [])])

    def test_userResetsFolder(self):
        """USER (another user, or again) goes back to INBOX."""
        self.successResultOf(self.store.appendMessage("bob", "Sent", b"sent\n"))
        connection = self.selected()
        connection.send(b"FOLDER Sent")
        self.assertOK(connection.line())
        connection.send(b"USER bob")
        self.assertOK(connection.line())
        connection.send(b"LSTM")
        self.assertEqual(connection.multiline(), (b"+OK 0 messages", []))


class ReadMarksSeenMixin:
    """
    READM (by cursor and by id) marks the message C{\\Seen}, against the
    store C{makeStore} makes.
    """

    def setUp(self):
        ServerTestCase.setUp(self)
        self.store = self.makeStore()
        self.addUsers("alice", "bob")
        for body in (b"one\n", b"two\n"):
            self.deliver("alice", "bob", body)

    def flags(self):
        view = self.successResultOf(self.store.openMailbox("bob"))
        listing = self.successResultOf(view.listMessages())
        return [sorted(m.flags) for m in listing.messages]

    def test_readmMarksSeen(self):
        """READM marks the message read; the next one stays unread."""
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        self.assertOK(connection.line())
        self.assertEqual(connection.message()[1].split(b"\n\n", 1)[1], b"one\n")
        self.assertEqual(self.flags(), [[SEEN], []])

    def test_readmByIdMarksSeen(self):
        """READM <id> marks that message read."""
        view = self.successResultOf(self.store.openMailbox("bob"))
        second = self.successResultOf(view.listMessages()).messages[1].id
        connection = self.connect()
        connection.send(b"USER bob", b"READM " + second.encode())
        self.assertOK(connection.line())
        connection.message()
        self.assertEqual(self.flags(), [[], [SEEN]])

    def test_otherConnectionSeesReadAtOnce(self):
        """Once READM is answered, LSTMF on another connection shows the message \\Seen, with no wait."""
        reader = self.connect()
        reader.send(b"USER bob", b"READM")
        self.assertOK(reader.line())
        reader.message()
        other = self.connect()
        other.send(b"USER bob", b"LSTMF")
        self.assertOK(other.line())
        status, lines = other.multiline()
        self.assertEqual([line.split(b"\t")[-1] for line in lines], [b"\\Seen", b""])

    def test_eachReadMarkedAtOnce(self):
        """Each READM marks its message at once, not in a batch later."""
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        self.assertOK(connection.line())
        connection.message()
        self.assertEqual(self.flags(), [[SEEN], []])
        connection.send(b"READM")
        connection.message()
        self.assertEqual(self.flags(), [[SEEN], [SEEN]])

    def test_ownCommandsSeeReads(self):
        """LSTMF and FLAG right after READM see the read at once."""
        connection = self.connect()
        connection.send(b"USER bob", b"READM", b"LSTMF", b"UNFLAG . \\Seen")
        self.assertOK(connection.line())
        connection.message()
        status, lines = connection.multiline()
        self.assertEqual([line.split(b"\t")[-1] for line in lines], [b"\\Seen", b""])
        self.assertEqual(connection.line(), b"+OK flags: none")
        self.assertEqual(self.flags(), [[], []])

    def test_endOfSessionMarks(self):
        """A connection that ends hands its reads to the store first."""
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        connection.lose()
        self.assertEqual(self.flags(), [[SEEN], []])

    def test_failedReadmMarksNothing(self):
        """READM past the end or of an unknown id marks nothing."""
        connection = self.connect()
        connection.send(b"USER bob", b"READM nosuch")
        self.assertOK(connection.line())
        self.assertEqual(connection.line(), b"-ERR no such message")
        self.assertEqual(self.flags(), [[], []])

    def test_flaggedStaysFlagged(self):
        """Reading keeps the flags a message had."""
        view = self.successResultOf(self.store.openMailbox("bob"))
        first = self.successResultOf(view.listMessages()).messages[0].id
        self.successResultOf(view.setFlags([first], add=[FLAGGED]))
        connection = self.connect()
        connection.send(b"USER bob", b"READM")
        self.assertOK(connection.line())
        connection.message()
        self.assertEqual(self.flags(), [sorted([SEEN, FLAGGED]), []])


class MemoryReadMarksSeenTests(ReadMarksSeenMixin, ServerTestCase):
    def makeStore(self):
        return self.store


class SpoolReadMarksSeenTests(ReadMarksSeenMixin, ServerTestCase):
    def makeStore(self):
        return makeSpoolStore(self)


class JournalledSpoolReadMarksSeenTests(ReadMarksSeenMixin, ServerTestCase):
    def makeStore(self):
        return makeSpoolStore(self, journal=True)


class PostgresReadMarksSeenTests(ReadMarksSeenMixin, ServerTestCase):
    skip = pgserver.skipReason()

    def makeStore(self):
        from tests.test_pgstore import makePostgresStore

        return makePostgresStore(self, pgserver.freshDatabase())
