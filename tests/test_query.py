"""
Tests for L{twisted_mail.mail.query}: the query language's parser, its
one-line errors, and the reference evaluator over decoded mail.
"""

import datetime

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail import errors
from twisted_mail.mail import model
from twisted_mail.mail.mime import parseMessage, summarize
from twisted_mail.mail.query import (
    All,
    And,
    Date,
    Flag,
    Folder,
    HasAttachment,
    Header,
    Ids,
    Not,
    Or,
    Size,
    Text,
    document,
    highlightWords,
    matches,
    parseQuery,
)
from tests.searchsamples import ATTACHMENT, ENCODED, HTML_ONLY, PLAIN

DAY = datetime.date


class ParseTests(SynchronousTestCase):
    """
    The parser turns each form of the language into its tree.
    """

    def test_word(self):
        """A bare word looks in the text fields."""
        self.assertEqual(parseQuery("meet"), Text("text", "meet"))

    def test_blank(self):
        """A blank query matches everything."""
        self.assertEqual(parseQuery("  "), All())

    def test_clauses(self):
        """Every clause of MAILBOX.md parses, all of them ANDed in order."""
        self.assertEqual(
            parseQuery('from:alice "a phrase" to:bob cc:carol subject:"x y" body:z '
                       'folder:Archive is:unread is:read is:flagged is:answered '
                       'has:attachment before:2026-12-01 after:2026-11-30 '
                       'on:2026-12-04 larger:10k smaller:2M'),
            And([Text("from", "alice"), Text("text", "a phrase"), Text("to", "bob"),
                 Text("cc", "carol"), Text("subject", "x y"), Text("body", "z"),
                 Folder("Archive"), Not(Flag(model.SEEN)), Flag(model.SEEN),
                 Flag(model.FLAGGED), Flag(model.ANSWERED), HasAttachment(),
                 Date("arrived", "before", DAY(2026, 12, 1)),
                 Date("arrived", "since", DAY(2026, 12, 1)),
                 Date("arrived", "on", DAY(2026, 12, 4)),
                 Size("larger", 10240), Size("smaller", 2 * 1024 * 1024)]))

    def test_negation(self):
        """A leading '-' negates a word, a phrase or a clause."""
        self.assertEqual(parseQuery('-spam -"big sale" -from:x'),
                         And([Not(Text("text", "spam")), Not(Text("text", "big sale")),
                              Not(Text("from", "x"))]))

    def test_folderNormalised(self):
        """folder: takes a quoted name, normalised (inbox is INBOX)."""
        self.assertEqual(parseQuery('folder:inbox'), Folder("INBOX"))
        self.assertEqual(parseQuery('folder:"My Mail/2026"'), Folder("My Mail/2026"))

    def test_keysAnyCase(self):
        """Keys and is:/has: values are read without regard to case."""
        self.assertEqual(parseQuery("FROM:alice IS:Unread"),
                         And([Text("from", "alice"), Not(Flag(model.SEEN))]))

    def test_fts5OperatorsAreWords(self):
        """NEAR, AND, OR and NOT are ordinary words."""
        self.assertEqual(parseQuery("NEAR OR"),
                         And([Text("text", "NEAR"), Text("text", "OR")]))

    def test_nodesCompareByValue(self):
        """Trees are values: equal trees are equal and hash alike."""
        a = And([Or([Text("from", "a"), Ids(["x"])]), Header("X-Spam", "yes")])
        b = And([Or([Text("from", "a"), Ids(["x"])]), Header("x-spam", "yes")])
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))


class InvalidQueryTests(SynchronousTestCase):
    """
    Malformed queries are one L{errors.InvalidQuery} with a one-line reason.
    """

    def assertInvalid(self, text, reason):
        e = self.assertRaises(errors.InvalidQuery, parseQuery, text)
        message = str(e)
        self.assertNotIn("\n", message)
        self.assertLess(len(message), 300)
        self.assertIn(reason, message)

    def test_huge(self):
        """A 100 KB query is refused for its length."""
        self.assertInvalid("x" * 100000, "longer than")

    def test_manyTerms(self):
        """10,000 terms (or a few hundred that fit the length) are refused."""
        self.assertInvalid(" ".join(["a"] * 10000), "longer than")
        self.assertInvalid(" ".join(["a"] * 500), "more than 50")

    def test_unbalancedQuote(self):
        """An unclosed quote is refused."""
        self.assertInvalid('"meeting agenda', "unbalanced quote")
        self.assertInvalid('subject:"x', "unbalanced quote")

    def test_operatorsAsWords(self):
        """FTS5 operators typed as words are refused for having no letter."""
        for op in ["*", '""', "^", ":", "(", ")", "+"]:
            self.assertInvalid(op, "needs a letter or digit")

    def test_quoteInsideWord(self):
        """A quote in the middle of a word is refused."""
        self.assertInvalid('ab"c"', "quote inside a word")

    def test_unknownKey(self):
        """An unknown key is named in the reason."""
        self.assertInvalid("color:red", "unknown key 'color:'")

    def test_emptyValue(self):
        """A key with no value is refused."""
        self.assertInvalid("from: alice", "'from:' needs a value")

    def test_badDates(self):
        """A day that does not exist, or not YYYY-MM-DD, is refused."""
        self.assertInvalid("before:2026-02-30", "no such day: 2026-02-30")
        self.assertInvalid("on:yesterday", "YYYY-MM-DD")
        self.assertInvalid("after:9999-12-31", "no day comes after")

    def test_badSizes(self):
        """larger:1e999 and friends are refused."""
        self.assertInvalid("larger:1e999", "'1e999'")
        self.assertInvalid("smaller:-3", "not '-3'")
        self.assertInvalid("larger:" + "9" * 40, "a size is")

    def test_badFlagsAndFolder(self):
        """is:, has: and folder: accept only what they know."""
        self.assertInvalid("is:purple", "is: takes")
        self.assertInvalid("has:cake", "has: takes")
        self.assertInvalid("folder:a//b", "folder:")

    def test_loneMinus(self):
        """A '-' with nothing after it, or '--', is refused."""
        self.assertInvalid("a - b", "'-' must be followed")
        self.assertInvalid("--a", "'--'")

    def test_controlCharacters(self):
        """A control character is refused, not searched for."""
        self.assertInvalid("a\x00b", "control character")

    def test_notText(self):
        """Bytes are not a query."""
        self.assertInvalid(b"abc", "not text")


def _summary(text, msgid="m1", arrived=1796601600, flags=(), folder="INBOX"):
    return summarize(text, msgid, arrived).replace(flags=frozenset(flags), folder=folder)


class EvaluatorTests(SynchronousTestCase):
    """
    L{matches}, the reference a scan of the mailbox gives.
    """

    def assertFinds(self, query, text, expected=True, **kw):
        if isinstance(query, str):
            query = parseQuery(query)
        summary = _summary(text, **kw)
        self.assertEqual(matches(query, summary, parseMessage(text)), expected,
                         "{!r} on {!r}".format(query, summary.subject))

    def test_prefixAndCase(self):
        """A word matches words it begins, in any case."""
        self.assertFinds("meet", PLAIN)
        self.assertFinds("MEETING", PLAIN)
        self.assertFinds("eeting", PLAIN, False)

    def test_phrase(self):
        """A phrase matches its words in a row only."""
        self.assertFinds('"quarterly review"', PLAIN)
        self.assertFinds('"review quarterly"', PLAIN, False)
        self.assertFinds('"quarterly rev"', PLAIN)

    def test_punctuatedWords(self):
        """e-mail and 10:30 match as the phrases they are."""
        self.assertFinds("e-mail", PLAIN)
        self.assertFinds("10:30", PLAIN)
        self.assertFinds("10:31", PLAIN, False)

    def test_fields(self):
        """from:, to:, cc:, subject: and body: look in their field only."""
        self.assertFinds("from:alice", PLAIN)
        self.assertFinds("from:bob", PLAIN, False)
        self.assertFinds("to:bob cc:carol subject:agenda body:lake", PLAIN)
        self.assertFinds("subject:lake", PLAIN, False)
        self.assertFinds("from:example.com", PLAIN)

    def test_encodedHeadersAndAccents(self):
        """RFC 2047 headers and QP Latin-1 bodies match without accents."""
        self.assertFinds("from:renee", ENCODED)
        self.assertFinds("subject:cafe creme", ENCODED)
        self.assertFinds("subject:CAFÉ", ENCODED)
        self.assertFinds('"pres de la gare"', ENCODED)
        self.assertFinds("ete", ENCODED)
        self.assertFinds("Été", ENCODED)

    def test_htmlOnly(self):
        """Base64 HTML is searched as its text, not its markup or style."""
        self.assertFinds("discounts bicycles", HTML_ONLY)
        self.assertFinds("hidden", HTML_ONLY, False)
        self.assertFinds("html", HTML_ONLY, False)

    def test_attachments(self):
        """has:attachment and encoded attachment names match."""
        self.assertFinds("has:attachment", ATTACHMENT)
        self.assertFinds("has:attachment", PLAIN, False)
        self.assertFinds("rechnung", ATTACHMENT)
        self.assertFinds("marz", ATTACHMENT)
        self.assertFinds("JVBERi0xLjQK", ATTACHMENT, False)

    def test_negation(self):
        """A negated term matches what the term does not."""
        self.assertFinds("-lake", PLAIN, False)
        self.assertFinds("-bicycles", PLAIN)
        self.assertFinds("meeting -from:dave", PLAIN)

    def test_flags(self):
        """is: looks at the flags."""
        self.assertFinds("is:unread", PLAIN)
        self.assertFinds("is:read", PLAIN, False)
        self.assertFinds("is:read is:flagged", PLAIN, flags=[model.SEEN, model.FLAGGED])
        self.assertFinds("is:answered", PLAIN, False, flags=[model.SEEN])

    def test_datesAtTheEdges(self):
        """before:/after:/on: compare UTC days of arrival, strictly."""
        midnight = 1796601600  # 2026-12-07T00:00:00Z
        self.assertFinds("on:2026-12-07", PLAIN, arrived=midnight)
        self.assertFinds("on:2026-12-06", PLAIN, arrived=midnight - 1)
        self.assertFinds("before:2026-12-07", PLAIN, False, arrived=midnight)
        self.assertFinds("before:2026-12-07", PLAIN, arrived=midnight - 1)
        self.assertFinds("after:2026-12-06", PLAIN, arrived=midnight)
        self.assertFinds("after:2026-12-06", PLAIN, False, arrived=midnight - 1)

    def test_sentDates(self):
        """SENTON compares the Date header's own day, not its UTC day."""
        # Thu, 03 Dec 2026 23:30:00 -0500 is 04 Dec in UTC.
        self.assertFinds(Date("sent", "on", DAY(2026, 12, 3)), PLAIN)
        self.assertFinds(Date("sent", "before", DAY(2026, 12, 3)), PLAIN, False)
        self.assertFinds(Date("sent", "since", DAY(2026, 12, 3)), PLAIN)

    def test_sizes(self):
        """larger: and smaller: are strict, in CRLF octets."""
        size = _summary(PLAIN).size
        self.assertFinds(Size("larger", size - 1), PLAIN)
        self.assertFinds(Size("larger", size), PLAIN, False)
        self.assertFinds(Size("smaller", size + 1), PLAIN)
        self.assertFinds(Size("smaller", size), PLAIN, False)
        self.assertFinds("smaller:1k", PLAIN)

    def test_folder(self):
        """folder: compares the summary's folder."""
        self.assertFinds("folder:Archive", PLAIN, folder="Archive")
        self.assertFinds("folder:Archive", PLAIN, False)

    def test_imapForms(self):
        """Or, Ids, Header and substring Text answer IMAP SEARCH keys."""
        self.assertFinds(Or([Text("from", "zed"), Ids(["m1"])]), PLAIN)
        self.assertFinds(Header("subject", "ting agen"), PLAIN)
        self.assertFinds(Header("x-missing", ""), PLAIN, False)
        self.assertFinds(Header("cc", ""), PLAIN)
        self.assertFinds(Text("body", "uarterl", substring=True), PLAIN)
        self.assertFinds(Text("body", "uarterl"), PLAIN, False)
        self.assertFinds(Text("headers", "quarterly"), PLAIN, False)
        self.assertFinds(Text("headers", "cc carol"), PLAIN)

    def test_documentReused(self):
        """A SearchDocument answers as the parsed message does."""
        doc = document(parseMessage(ENCODED))
        self.assertTrue(matches(parseQuery("cafe"), _summary(ENCODED), doc))

    def test_highlightWords(self):
        """The words to show are the folded positive words."""
        self.assertEqual(highlightWords(parseQuery('Café -spam "big Sale" from:x')),
                         ["cafe", "big", "sale", "x"])


class EightBitHeaderTests(SynchronousTestCase):
    """
    Raw 8-bit bytes in a MIME part's headers are read, not raised on.
    """

    def test_eightBitDisposition(self):
        """An attachment whose Content-Disposition holds raw UTF-8 is listed and searched."""
        text = ("From: a@example.com\nSubject: x\nMIME-Version: 1.0\n"
                'Content-Type: multipart/mixed; boundary="B"\n\n'
                "--B\nContent-Type: text/plain\n\nhello\n"
                "--B\nContent-Type: application/pdf\n"
                'Content-Disposition: attachment; filename="naïve.pdf"\n\n'
                "xx\n--B--\n").encode("utf-8")
        parsed = parseMessage(text)
        self.assertEqual(len(parsed.parts), 1)
        self.assertTrue(matches(parseQuery("naive"), _summary(text), parsed))
