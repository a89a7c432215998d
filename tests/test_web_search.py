"""
Search through the web API's C{q=} (MAILBOX.md, "Search"): the matches
with the total they count, every folder searched, and a malformed query a
400 with a one-line reason, never a 500.
"""

from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.searchsamples import ATTACHMENT, ENCODED, HTML_ONLY, PLAIN
from tests.test_web import WebMixin


class SearchAPITests(WebMixin, SynchronousTestCase):
    """
    C{GET /api/v1/users/{user}/messages?q=...}.
    """

    def setUp(self):
        WebMixin.setUp(self)
        self.ids = [self.deliver(text) for text in (PLAIN, ENCODED, HTML_ONLY, ATTACHMENT)]

    def get(self, query, extra=""):
        return self.client.request(
            "GET", "/api/v1/users/alice/messages?q=" + quote(query) + extra)

    def test_matches(self):
        """q= lists the matches newest first; total counts them; matched names the words."""
        response = self.get("bob -from:dave")
        self.assertEqual(response.code, 200, response)
        body = response.json()
        plain, encoded, html, attachment = self.ids
        self.assertEqual([m["id"] for m in body["messages"]], [html, encoded, plain])
        self.assertEqual(body["total"], 3)
        self.assertEqual(body["matched"], ["bob"])

    def test_pages(self):
        """start and limit page through the matches; total counts them all."""
        body = self.get("bob", "&start=1&limit=1").json()
        self.assertEqual((body["total"], len(body["messages"])), (4, 1))
        self.assertEqual(body["messages"][0]["id"], self.ids[2])

    def test_accents(self):
        """A query with accents finds text without them, and the reverse."""
        self.assertEqual(self.get("café").json()["total"], 1)
        self.assertEqual(self.get("CAFE creme").json()["total"], 1)

    def test_everyFolder(self):
        """With q and no folder every folder is searched; folder= narrows it."""
        view = self.successResultOf(self.store.openMailbox("alice"))
        self.successResultOf(view.moveMessages([self.ids[0]], "Archive"))
        self.successResultOf(view.close())
        body = self.get("meeting").json()
        self.assertEqual([m["id"] for m in body["messages"]], [self.ids[0]])
        self.assertEqual(self.get("meeting", "&folder=INBOX").json()["total"], 0)
        self.assertEqual(self.get("meeting", "&folder=Archive").json()["total"], 1)

    def test_unknownFolder(self):
        """A folder that does not exist is a 404."""
        self.assertError(self.get("x", "&folder=Nope"), 404)

    def test_blankQueryLists(self):
        """A blank q is the plain listing."""
        body = self.get("  ").json()
        self.assertEqual(body["total"], 4)
        self.assertNotIn("matched", body)

    def test_malformed(self):
        """Malformed queries are a 400 with the one-line reason, never a 500."""
        for query, reason in [
            # (A 100 KB query is longer than an HTTP request line may be:
            # the web server refuses it before the API sees it.)
            ("x" * 10000, "longer than"),
            (" ".join(["a"] * 4000), "longer than"),
            (" ".join(["a"] * 60), "more than 50"),
            ('"unbalanced', "unbalanced quote"),
            ("NEAR *", "letter or digit"),
            ("^", "letter or digit"),
            (":", "letter or digit"),
            ("before:2026-02-30", "no such day"),
            ("larger:1e999", "a size is"),
            ("folder:a//b", "folder"),
        ]:
            response = self.get(query)
            self.assertError(response, 400)
            error = response.json()["error"]
            self.assertIn(reason, error)
            self.assertNotIn("\n", error)

    def test_notUTF8(self):
        """A query that is not UTF-8 is a 400."""
        response = self.client.request("GET", "/api/v1/users/alice/messages?q=%ff")
        self.assertError(response, 400)
