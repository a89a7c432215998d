"""
Search through the line protocol (C{SRCH}, CAPA C{SEARCH}) and the
console's C{Search <query>}, numbered like C{List} so that C{Read <n>}
reads a match.
"""

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.console.client import MessageLine
from twisted_mail.errors import ServerError

from tests.searchsamples import SAMPLES
from tests.test_console_mail import MailCommandTestsMixin, MailFakeClient
from tests.test_server import ServerTestCase


class SearchCommandTests(ServerTestCase):
    """
    C{SRCH <query>} answers the matches in C{LSTM}'s format, newest first.
    """

    def setUp(self):
        ServerTestCase.setUp(self)
        self.addUsers("bob")
        for text in SAMPLES:
            self.successResultOf(self.store.deliverMessage("x@example.com", "bob", text))
        self.conn = self.connect()
        self.conn.send(b"USER bob")
        self.assertOK(self.conn.line())

    def test_capability(self):
        """CAPA announces SEARCH."""
        self.conn.send(b"CAPA")
        status, lines = self.conn.multiline()
        self.assertIn(b"SEARCH", lines)

    def test_matches(self):
        """SRCH lists the matches as LSTM does, newest first, and READM <id> reads one."""
        self.conn.send(b"LSTM")
        _, listed = self.conn.multiline()
        self.conn.send("SRCH bob -from:dave -\u00e9t\u00e9".encode("utf-8"))
        status, lines = self.conn.multiline()
        self.assertEqual(status, b"+OK 2 of 2 messages match")
        self.assertEqual(lines, [listed[2], listed[0]])
        msgid = lines[0].split()[0]
        self.conn.send(b"READM " + msgid)
        self.assertTrue(self.conn.line().startswith(b"+OK message follows"))

    def test_noMatch(self):
        """A search that finds nothing is an empty listing."""
        self.conn.send(b"SRCH nothinglikethis")
        self.assertEqual(self.conn.multiline(), (b"+OK 0 of 0 messages match", []))

    def test_malformed(self):
        """A malformed query is one -ERR line with the reason; the session goes on."""
        for query, reason in [(b"x" * 60000, b"longer than"), (b'"open', b"unbalanced"),
                              (b"*", b"letter or digit"), (b"on:2026-02-30", b"no such day"),
                              (b"larger:1e999", b"a size is")]:
            self.conn.send(b"SRCH " + query)
            line = self.conn.line()
            self.assertERR(line)
            self.assertIn(reason, line)
        self.conn.send(b"SRCH")
        self.assertEqual(self.conn.line(), b"-ERR usage: SRCH <query>")
        self.conn.send(b"SRCH meeting")
        self.assertOK(self.conn.multiline()[0])

    def test_needsUser(self):
        """SRCH needs a selected user, as LSTM does."""
        conn = self.connect()
        conn.send(b"SRCH x")
        self.assertERR(conn.line())


class SearchFakeClient(MailFakeClient):
    def searchMessages(self, query):
        return self._call("searchMessages", query)


class ConsoleSearchTests(MailCommandTestsMixin, SynchronousTestCase):
    """
    The console's C{Search <query>}.
    """

    def setUp(self):
        MailCommandTestsMixin.setUp(self)
        self.client.__class__ = SearchFakeClient

    def test_searchThenRead(self):
        """Search numbers its matches like List; Read <n> reads match n by its id."""
        self.type('Search from:alice "a phrase"  is:unread\n')
        self.lastCall("searchMessages", 'from:alice "a phrase"  is:unread').callback(
            [MessageLine("m7", 120, 0, "alice@localhost", "found")])
        self.assertEqual(
            self.output(),
            "1  1970-01-01 00:00  alice@localhost           found  (120 B)\n"
            "Sub-Prompt-bob> ")
        self.type("Read 1\n")
        self.lastCall("readMessageById", "m7")

    def test_searchRefused(self):
        """A malformed query is the server's one error line."""
        self.type("Search *\n")
        self.lastCall("searchMessages", "*").errback(
            ServerError("bad search: a search word needs a letter or digit: '*'"))
        self.assertEqual(self.output(),
                         "error: bad search: a search word needs a letter or digit: '*'\n"
                         "Sub-Prompt-bob> ")

    def test_searchNeedsQuery(self):
        """Search without a query says how to use it."""
        self.type("Search\n")
        self.assertIn("usage: Search <query>", self.output())
