"""
Tests for C{simplemail-reindex} (L{twisted_mail.service.reindex}): build,
check and rebuild a spool's search indexes by hand.
"""

import io
import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail.query import parseQuery
from twisted_mail.service.reindex import main
from twisted_mail.stores.spool.index import indexName

from tests.searchsamples import SAMPLES
from tests.test_store import makeSpoolStore


class ReindexTests(SynchronousTestCase):
    """
    The command line tool.
    """

    def setUp(self):
        self.path = self.mktemp()
        store = makeSpoolStore(self, self.path, searchIndex=False)
        for user in ("alice", "bob"):
            self.successResultOf(store.addUser(user))
        for text in SAMPLES:
            self.successResultOf(store.deliverMessage("x@example.com", "bob", text))

    def run_(self, *args):
        out, err = io.StringIO(), io.StringIO()
        status = main(["--spool", self.path] + list(args), out, err)
        return status, out.getvalue(), err.getvalue()

    def test_buildThenCheck(self):
        """It builds every user's index; --check then finds them in step."""
        status, out, _ = self.run_()
        self.assertEqual(status, 0)
        self.assertIn("bob: 4/4 messages indexed", out)
        self.assertIn("bob: index in step", out)
        self.assertTrue(os.path.exists(os.path.join(self.path, indexName("bob"))))
        self.assertEqual(self.run_("--check"),
                         (0, "alice: index in step\nbob: index in step\n", ""))

    def test_checkFindsStale(self):
        """--check reports an index that lacks messages, and changes nothing."""
        self.run_("bob")
        store = makeSpoolStore(self, self.path, searchIndex=False)
        self.successResultOf(store.deliverMessage("x@example.com", "bob", b"Subject: new\n\nx\n"))
        status, out, _ = self.run_("--check", "bob")
        self.assertEqual((status, out), (1, "bob: index out of step: 1 missing, 0 extra\n"))
        self.assertEqual(self.run_("--check", "bob")[0], 1)

    def test_rebuild(self):
        """--rebuild throws a damaged index away and builds it again."""
        self.run_("bob")
        FilePath(self.path).child(indexName("bob")).setContent(b"not a database" * 100)
        status, out, _ = self.run_("--rebuild", "bob")
        self.assertEqual(status, 0)
        store = makeSpoolStore(self, self.path)
        found = self.successResultOf(store.search("bob", parseQuery("meeting")))
        self.assertEqual(found.total, 1)

    def test_usage(self):
        """A bad user id, or --check with --rebuild, is a usage error."""
        self.assertEqual(self.run_("../x")[0], 2)
        self.assertEqual(self.run_("--check", "--rebuild")[0], 2)

    def test_noSuchUser(self):
        """A user with no mailbox is an error line, not a traceback."""
        status, _, err = self.run_("carol")
        self.assertEqual(status, 1)
        self.assertIn("carol", err)
