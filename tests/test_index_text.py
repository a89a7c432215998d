"""
The quick paths of the index's text extraction and ordering: each must give
exactly what the slow, obvious way gives.
"""

import email
import os
import random
import sqlite3
import subprocess
import sys
from email import policy

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail import mime
from twisted_mail.mail import query as Q
from twisted_mail.stores.spool import index, indexquery, indexrows

_TRICKY = ("aZ09_-.,;:!?\u00e9\u0301\u00df\u00a0\u2019\u2014\u0674\u0661\u3000\u6f22"
           "\U0001d400\u00b2\u2163\x85\x1c _\t\n\u0130\u212a\ue000")

_PIECES = [b"Subject: x\n", b"From: a\n", b" cont\n", b"\n", b"\r\n",
           b"Content-Type: multipart/mixed; boundary=b\n", b"Content-Type: message/rfc822\n",
           b"--b\n", b"body\n", b"From x\n", b":x\n", b"X-\xe9: y\n",
           b"Content-Type: text/plain; charset=latin-1\n", b"\t\n", b"bad line\n", b"\xff\n",
           b"\n\n", b"Content-Transfer-Encoding: base64\n", b"aGVsbG8=\n",
           b"Subject: \t \n", b"X-A:b: c \n", b"To: \xe9\xff \n", b"  \t two\n", b"Date:\n",
           b"Content-Type: TEXT/Plain\n", b"\x0b\x0c: x\x1c\n"]


def _stdlibParse(text):
    return email.message_from_bytes(text, policy=policy.compat32)


def _sameMessage(a, b):
    pa, pb = a.get_payload(), b.get_payload()
    if isinstance(pa, list) or isinstance(pb, list):
        payloads = (isinstance(pa, list) and isinstance(pb, list) and len(pa) == len(pb)
                    and all(_sameMessage(x, y) for x, y in zip(pa, pb)))
    else:
        payloads = pa == pb
    return (payloads and a._headers == b._headers and a._unixfrom == b._unixfrom
            and [type(d) for d in a.defects] == [type(d) for d in b.defects]
            and a.preamble == b.preamble and a.epilogue == b.epilogue)


class TokenTextTests(SynchronousTestCase):
    def test_sameAsTheExpression(self):
        """The token text of any text is its words as the word expression cuts them."""
        r = random.Random(21)
        for _ in range(5000):
            text = "".join(r.choice(_TRICKY) for _ in range(r.randint(0, 30)))
            self.assertEqual(Q.tokenText(text), " ".join(Q.tokens(text)), repr(text))

    def test_examples(self):
        """Punctuation, accents and case are gone; letters and digits of any script stay."""
        self.assertEqual(Q.tokenText("E-mail at 10:30, Caf\u00e9!"), "e mail at 10 30 cafe")
        self.assertEqual(Q.tokenText("\u6f22\u5b57\u2014x_y \u00b2"), "\u6f22\u5b57 x y 2")


class GramTextTests(SynchronousTestCase):
    def test_sameAsPairsOfWords(self):
        """A message's grams are each common word and the word after it in the same field: no more, no fewer."""
        r = random.Random(9)
        vocabulary = list(indexquery.COMMON_WORDS) + ["theory", "an", "anda", "ofa", "lake", "x1"]
        for _ in range(2000):
            fields = [" ".join(r.choice(vocabulary) for _ in range(r.randint(0, 6)))
                      for _ in range(r.randint(0, 4))]
            pairs = [a + "\u00b7" + b for text in fields
                     for a, b in zip(text.split(), text.split()[1:])
                     if a in indexquery.COMMON_WORDS]
            self.assertEqual(sorted(indexquery.gramText(fields).split()), sorted(pairs),
                             repr(fields))

    def test_examples(self):
        """A common word twice makes two pairs; a field's last word and a word merely starting like a common one make none."""
        self.assertEqual(
            sorted(indexquery.gramText(["we met at the the lake", "", "the", "theory anda a"]).split()),
            ["the\u00b7lake", "the\u00b7the"])


class ParseBytesTests(SynchronousTestCase):
    def test_sameAsTheParser(self):
        """A message read through the headers-only path is the one the whole parse makes."""
        r = random.Random(22)
        texts = [b"", b"\n", b"\n\nbody", b"Subject: a\n", b"Subject: a\n\n",
                 b"Subject: a\n\nbody\r\nmore\n", b"From x@y Thu Nov 26 12:00:00 2026\nS: a\n\nb",
                 b" Subject: a\n\nb", b"Subject: a\r\n\r\nbody\r\n",
                 b"Content-Type: multipart/alternative; boundary=q\n\n--q\n\nx\n--q--\n",
                 b"Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n",
                 b"Subject: \xe9t\xe9\n\n\xff\xfe body\n", b"Subject a\n\nb\n"]
        texts += [b"".join(r.choice(_PIECES) for _ in range(r.randint(0, 8)))
                  for _ in range(3000)]
        for text in texts:
            self.assertTrue(_sameMessage(mime.parseBytes(text), _stdlibParse(text)), repr(text))


def _parsedFacts(parsed):
    return (parsed.headers, parsed.sender, parsed.to, parsed.cc, parsed.subject, parsed.date,
            parsed.text, parsed.html, parsed.problems,
            [(p.part, p.filename, p.contentType, p.size) for p in parsed.parts])


class ParseMessageTests(SynchronousTestCase):
    def test_sameAsTheWholeWay(self):
        """A message without MIME headers reads the same through the shortcut as the whole way."""
        r = random.Random(24)
        pieces = _PIECES + [b"Content-Disposition: attachment; filename=a.txt\n",
                            b"content-type: text/html\n", b"Content-Transfer-Encoding: 8bit\n",
                            b"Content-Typo: x\n", b"Contents: y\n", b"\xc3\xa9t\xc3\xa9\n",
                            b"<b>x</b>\n", b"=?utf-8?q?caf=C3=A9?=\n", b"Subject: =?utf-8?q?x?=\n"]
        texts = [b"", b"\n", b"body", b"Subject: a\n\n\xff\xfe\n", b"Subject: a\r\n\r\nb\r\n"]
        texts += [b"".join(r.choice(pieces) for _ in range(r.randint(0, 10)))
                  for _ in range(4000)]
        shortcuts = 0
        for text in texts:
            fast = mime.parseMessage(text)
            self.patch(mime, "_SHORTCUT", False)
            whole = mime.parseMessage(text)
            self.patch(mime, "_SHORTCUT", True)
            self.assertEqual(_parsedFacts(fast), _parsedFacts(whole), repr(text))
            shortcuts += not any(n.lower().startswith("content-") for n, _ in whole.headers)
        self.assertGreater(shortcuts, 500)


class ReaderTextTests(SynchronousTestCase):
    def test_sameAsTheWholeWay(self):
        """A record's text for readers is the same by the quick way (one search for store fields) as by reading its header line by line: records as the store writes them, with an id line alone, or neither, with store fields anywhere."""
        from twisted_mail.stores.spool import flags

        r = random.Random(25)
        heads = [b"From x@y Thu Nov 26 12:00:00 2026\n", b"From x\n", b"From \n"]
        firsts = [b"", b"X-Simplemail-Id: abc\n", b"X-Simplemail-Id: abc",
                  b"X-Simplemail-Id: abc\nX-UID: 4\nStatus: RO\nX-Status: \nX-Keywords: $x  \n",
                  b"X-UID: 7\n", b"X-Simplemail-Id: a\nX-Simplemail-Id: b\n"]
        pieces = _PIECES + [b"Status: O\n", b"X-Status: A\n", b"x-uid: 3\n", b"X-Keywords:\n",
                            b"Content-Length: 3\n", b"X-IMAPbase: 1 2\n", b"Statusx: y\n",
                            b" folded\n", b"not a header\n", b"\n", b"\r\n", b">From me\n",
                            b"From me\n", b"X-Simplemail-Id: c\n", b"Status : R\n"]
        records = [b"", b"From x", b"From x\n", b"From x\n\n", b"From x\n\n\n"]
        records += [r.choice(heads) + r.choice(firsts) + b"".join(
            r.choice(pieces) for _ in range(r.randint(0, 10))) for _ in range(5000)]
        slow = []
        byHeader = flags._readerTextByHeader
        self.patch(flags, "_readerTextByHeader", lambda *a: slow.append(1) or byHeader(*a))
        for record in records:
            fast = flags.readerText(record)
            self.patch(flags, "_QUICK_READER_TEXT", False)
            whole = flags.readerText(record)
            self.patch(flags, "_QUICK_READER_TEXT", True)
            self.assertEqual(fast, whole, repr(record))
        # Both ways were tried: the quick one answered for many records.
        self.assertGreater(len(records) * 2 - len(slow), 500)


class SummaryTextTests(SynchronousTestCase):
    def test_roundTrip(self):
        """A summary kept in the index reads back equal, whatever its fields hold."""
        r = random.Random(23)
        texts = ["", "a", "\x00", "x\x00y", "[1]", "\u00e9\u2026\U0001d400", "\n\t", '"\\']
        for _ in range(2000):
            summary = mime.MessageSummary(
                r.choice(texts + ["id1"]), r.choice([0, 7, 2 ** 40, 1.5]),
                r.choice([0, -5, 1796567943, 2.25]),
                *[r.choice(texts) for _ in range(3)], r.choice(["", "2026-12-06T14:39:03Z"]),
                r.choice(texts), r.choice([0, 3]), uid=r.randint(0, 9),
                flags=r.choice([[], ["\\Seen"], ["\\Seen", "$x"]]), folder=r.choice(texts))
            text = indexrows._summaryText(summary)
            flags = indexrows._flagsText(summary.flags)
            self.assertEqual(indexrows.summaryFromRow(text, summary.uid, flags, summary.folder),
                             summary, repr(text))
        # The quick form for the usual summary.
        self.assertTrue(indexrows._summaryText(mime.MessageSummary("a", 1, 2)).startswith("\x00"))


class OrderKeyTests(SynchronousTestCase):
    def test_arrivalOrder(self):
        """Rowids descend with the arrival time, then indexing order; absurd times are clamped."""
        keys = [indexrows.orderKey(t, s) for t, s in [(-10 ** 20, 0), (-5, 0), (0, 0), (0, 1),
                                                  (1, 0), (1796601600, 0), (10 ** 20, 0)]]
        self.assertEqual(keys, sorted(keys, reverse=True))
        self.assertEqual(len(set(keys)), len(keys))
        self.assertLess(keys[0], 2 ** 63)
        self.assertGreaterEqual(keys[-1], 0)

    def test_aFullSecondGoesAfterTheRest(self):
        """More messages of one second than the key has room for still get unique rowids."""
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE msg(rowid INTEGER PRIMARY KEY)")
        full = indexrows.orderKey(5, (1 << indexrows._SEQUENCE_BITS) - 1)
        db.execute("INSERT INTO msg VALUES(?)", (full,))
        keys = indexrows._OrderKeys(db)
        first, second = keys.next(5), keys.next(5)
        self.assertLess(first, full)
        self.assertEqual(second, first - 1)
        self.assertEqual(keys.next(4), indexrows.orderKey(4))
        self.assertEqual(keys.next(4), indexrows.orderKey(4, 1))


class SharedFileTests(SynchronousTestCase):
    def test_anotherProcessLeavesTheWAL(self):
        """While this process has an index open twice (a mailbox's reader and writer), another process closing its connection to it neither checkpoints nor deletes the WAL they write to; the file is made readable by its owner alone."""
        path = os.path.join(self.mktemp(), ".bob.index")
        os.makedirs(os.path.dirname(path))
        writer, reader = index.SearchDatabase(path), index.SearchDatabase(path)
        self.addCleanup(writer.close)
        self.addCleanup(reader.close)
        writer.open()
        reader.open()
        other = ("import sqlite3, sys\n"
                 "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                 "db.execute(\"INSERT INTO meta VALUES('other', 1)\")\n"
                 "db.close()\n")
        subprocess.run([sys.executable, "-c", other, path], check=True, timeout=60)
        self.assertTrue(os.path.exists(path + "-wal"))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)


class MergeSettingsTests(SynchronousTestCase):
    def _automerge(self, db):
        return db._db.execute("SELECT v FROM text_config WHERE k='automerge'").fetchone()

    def test_heldUntilTheStamp(self):
        """A build holds FTS5's merges until its last update, which records the stamp."""
        db = index.SearchDatabase(self.mktemp())
        self.addCleanup(db.close)
        db.holdMerges()
        self.assertEqual(self._automerge(db), (0,))
        db.update("INBOX", (), ())
        self.assertEqual(self._automerge(db), (0,))
        db.update("INBOX", (), (), stamp=(None, None))
        self.assertEqual(self._automerge(db), (index._AUTOMERGE,))

    def test_aBuildStoppedHalfWay(self):
        """Merges held by a build that stopped half way are given back by the next full sync."""
        path = self.mktemp()
        stopped = index.SearchDatabase(path)
        stopped.holdMerges()
        stopped.close()
        db = index.SearchDatabase(path)
        self.addCleanup(db.close)
        db.update("INBOX", (), ())
        self.assertEqual(self._automerge(db), (0,))
        db.update("INBOX", (), (), stamp=(None, None))
        self.assertEqual(self._automerge(db), (index._AUTOMERGE,))
