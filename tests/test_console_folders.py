"""
Tests for the console's folder commands (Folders, Folder, Flag, Unflag,
Move) and List marking unread mail: the real console, client and server
connected in memory (iosim) over the memory store, input piped.
"""

import time

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.console import render
from twisted_mail.console.client import FolderLine, MailClientProtocol, MessageLine
from twisted_mail.console.stdio import MailConsole
from twisted_mail.doors.line import MailServerFactory
from twisted_mail.mail.model import FLAGGED, SEEN
from twisted_mail.stores.memory import MemoryStore

from tests.test_server import ADDRESS, WHEN


class ConsoleFolderTests(SynchronousTestCase):
    """
    The console against a real server with the memory store.
    """

    def setUp(self):
        self.store = MemoryStore(clock=lambda: WHEN)
        for user in ("alice", "bob"):
            self.successResultOf(self.store.addUser(user))
        for subject in ("first", "second"):
            self.successResultOf(self.store.deliverMessage(
                "alice@localhost", "bob",
                "From: alice@localhost\nSubject: {}\n\n{} text\n".format(
                    subject, subject).encode()))
        self.clock = task.Clock()
        factory = MailServerFactory(self.store, reactor=self.clock)
        client, server, self.pump = iosim.connectedServerAndClient(
            lambda: factory.buildProtocol(ADDRESS), MailClientProtocol)
        self.console = MailConsole(client, None, localtime=time.gmtime)
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)
        self.pump.flush()
        self.output()
        self.type("SetUser bob\n")

    def type(self, text):
        self.console.dataReceived(text.encode("utf-8"))
        for _ in range(20):
            self.pump.flush()
        return self.output()

    def output(self):
        data = self.transport.value().decode("utf-8")
        self.transport.clear()
        return data

    def flags(self, folder="INBOX"):
        self.clock.advance(1)
        view = self.successResultOf(self.store.openFolder("bob", folder))
        return [sorted(m.flags) for m in self.successResultOf(view.listMessages()).messages]

    def test_listMarksUnread(self):
        """List marks unread messages N and flagged ones !; Read <n> marks read."""
        self.assertEqual(self.type("List\n"),
                         "1  N  2024-02-29 13:05  alice@localhost           first  (53 B)\n"
                         "2  N  2024-02-29 13:05  alice@localhost           second  (55 B)\n"
                         "Sub-Prompt-bob> ")
        self.assertIn("first text", self.type("Read 1\n"))
        self.assertEqual(self.flags(), [[SEEN], []])
        self.assertIn("flags: \\Flagged \\Seen", self.type("Flag\n"))
        listing = self.type("List\n").splitlines()
        self.assertTrue(listing[0].startswith("1   ! 2024"), listing)
        self.assertTrue(listing[1].startswith("2  N  2024"), listing)

    def test_plainReadMarksRead(self):
        """Read (the next message) marks it read on the server too."""
        self.type("Read\n")
        self.assertEqual(self.flags(), [[SEEN], []])

    def test_flagNames(self):
        """Flag and Unflag take seen, answered, flagged, draft or a keyword."""
        self.type("List\nRead 2\n")
        self.assertIn("flags: $Later \\Seen", self.type("Flag $Later\n"))
        self.assertIn("flags: $Later \\Answered \\Seen", self.type("Flag answered\n"))
        self.assertIn("flags: $Later \\Answered", self.type("Unflag seen\n"))
        self.assertIn("error: invalid flag: (x", self.type("Flag (x\n"))
        self.assertEqual(self.flags(), [[], sorted(["$Later", "\\Answered"])])

    def test_flagNeedsMessage(self):
        """Flag and Move need a message read; after a plain Read they act on it."""
        self.assertEqual(self.type("Flag\n"),
                         "error: no message read yet: Read one first\nSub-Prompt-bob> ")
        self.type("Read\n")
        self.assertEqual(self.type("Flag\n"), "flags: \\Flagged \\Seen\nSub-Prompt-bob> ")
        self.assertEqual(self.type("Move Archive\n"), "moved to Archive\nSub-Prompt-bob> ")
        self.assertEqual(self.flags("Archive"), [sorted([FLAGGED, SEEN])])
        self.type("Read\nDelete\n")
        self.assertEqual(self.type("Read\n"), "error: No More Mail\nSub-Prompt-bob> ")

    def test_foldersAndMove(self):
        """Folders lists counts; Move moves; Folder switches what List and Read show."""
        self.assertEqual(self.type("Folders\n"),
                         "INBOX    2 messages, 2 unread\n"
                         "Archive  0 messages, 0 unread\n"
                         "Drafts   0 messages, 0 unread\n"
                         "Junk     0 messages, 0 unread\n"
                         "Sent     0 messages, 0 unread\n"
                         "Trash    0 messages, 0 unread\n"
                         "Sub-Prompt-bob> ")
        self.type("List\nRead 2\n")
        self.assertEqual(self.type("Move Archive\n"), "moved to Archive\nSub-Prompt-bob> ")
        self.assertIn("error: no message read yet", self.type("Move Archive\n"))
        self.assertEqual(self.type("Folder Archive\n"),
                         "Archive: 1 message, 0 unread\nSub-Prompt-bob:Archive> ")
        self.assertIn("second", self.type("List\n"))
        self.assertIn("second text", self.type("Read\n"))
        self.assertEqual(self.type("Folder Nowhere\n"),
                         "error: no such folder: Nowhere\nSub-Prompt-bob:Archive> ")
        self.assertEqual(self.type("Folder inbox\n"),
                         "INBOX: 1 message, 1 unread\nSub-Prompt-bob> ")
        self.assertIn("first", self.type("List\n"))
        self.assertIn("error: usage: Folder <name>", self.type("Folder\n"))
        self.assertEqual(self.type("Folder inbox\n"),
                         "INBOX: 1 message, 1 unread\nSub-Prompt-bob> ")

    def test_folderWithSpaces(self):
        """A folder name may hold spaces."""
        self.successResultOf(self.store.createFolder("bob", "Old mail"))
        self.type("List\nRead 1\n")
        self.assertEqual(self.type("Move Old mail\n"), "moved to Old mail\nSub-Prompt-bob> ")
        self.assertEqual(self.type("Folder Old mail\n"),
                         "Old mail: 1 message, 0 unread\nSub-Prompt-bob:Old mail> ")

    def test_help(self):
        """Help lists the folder commands when the server has them."""
        out = self.type("Help\n")
        for usage in ("Folders", "Folder <name>", "Flag [flag]", "Unflag [flag]",
                      "Move <folder>"):
            self.assertIn(usage, out)

    def test_doneForgetsFolder(self):
        """Done and SetUser go back to INBOX."""
        self.type("Folder Sent\n")
        self.assertEqual(self.type("Done\n"), "goodbye bob\nMain-Prompt> ")
        self.assertEqual(self.type("SetUser bob\n"), "bob has 2 messages\nSub-Prompt-bob> ")


class RenderTests(SynchronousTestCase):
    """
    How Folders and a List with flags look.
    """

    def test_folders(self):
        """Names padded to one column; controls escaped."""
        self.assertEqual(render.renderFolders([
            FolderLine("INBOX", 1, 1), FolderLine("a\u202eb", 0, 0, "sent")]),
            "INBOX     1 message, 1 unread\na\\u202eb  0 messages, 0 unread\n")
        self.assertEqual(render.renderFolders([]), "no folders\n")

    def test_listingWithoutFlags(self):
        """A listing from a server without flags is as before: no status columns."""
        line = MessageLine("m1", 1, 0, "a", "s")
        self.assertEqual(render.renderListing([line], time.gmtime),
                         "1  1970-01-01 00:00  a                         s  (1 B)\n")
        self.assertEqual(render.renderListing([line._replace(flags=frozenset([FLAGGED]))],
                                              time.gmtime),
                         "1  N! 1970-01-01 00:00  a                         s  (1 B)\n")
