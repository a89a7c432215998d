"""
The web page's search box in Chromium (as tests/test_web_browser.py runs
it): results across folders, the matched words marked in the snippet, a
malformed query one clear message.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.test_web_browser import BrowserMixin


class SearchBoxTests(BrowserMixin, SynchronousTestCase):
    """
    The search box of the inbox page.
    """

    def search(self, text):
        box = self.css("#search")[0]
        box.clear()
        box.send_keys(text + "\n")

    def test_searchBox(self):
        """A search lists the matches, marks the words found, and an empty search lists all."""
        self.smtp("From: Ren\u00e9e <renee@example.fr>\nSubject: Caf\u00e9 tomorrow\n"
                  "Content-Type: text/plain; charset=utf-8\n\n"
                  "Meeting at the caf\u00e9 near the station.\n")
        self.smtp("From: Bob <bob@example.org>\nSubject: Budget\n\nNumbers inside.\n")
        self.driver.get("about:blank")
        self.openInbox()
        self.waitFor(lambda: len(self.listed()) == 2, "both messages")
        self.search("cafe meet")
        self.waitFor(lambda: self.listed() == ["Caf\u00e9 tomorrow"], "one match")
        self.assertEqual(self.css("#mailbox-title")[0].text, "Search results")
        self.assertEqual(self.css("#mailbox-count")[0].text, "1 match")
        marked = [e.text for e in self.css("#message-list li .snippet mark")]
        self.assertEqual(marked, ["Meeting", "caf\u00e9"])
        self.search("")
        self.waitFor(lambda: len(self.listed()) == 2, "the whole inbox again")

    def test_badQuery(self):
        """A malformed query shows the server's one-line reason."""
        self.driver.get("about:blank")
        self.openInbox()
        self.search("before:2026-02-30")
        self.waitFor(lambda: "no such day: 2026-02-30" in self.css("#status")[0].text,
                     "the reason")
        self.assertNotEqual(self.css("#mailbox-title")[0].text, "Search results")
