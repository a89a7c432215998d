"""
The IMAP door's pure parts: the command parser, modified UTF-7, the MIME
structure, FETCH items, sequence sets, SEARCH compiled to the query tree.
"""

import datetime

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.doors.imap import fetch, parser, search, structure, utf7
from twisted_mail.doors.imap.parser import Atom, BadCommand, SequenceSet, String
from twisted_mail.doors.imap.selected import formatSet
from twisted_mail.mail import query as Q
from twisted_mail.mail.mime import MessageSummary


class ParserTests(SynchronousTestCase):
    def test_tokens(self):
        """
        A command reads as its tag, upper-cased name and typed arguments.
        """
        tag, name, args = parser.tokenize([b'a1 login "b\\"ob" (x (y)) NIL'])
        self.assertEqual((tag, name), (b"a1", "LOGIN"))
        self.assertEqual(args, [String(b'b"ob'), [Atom(b"x"), [Atom(b"y")]], Atom(b"NIL")])
        self.assertIsInstance(args[0], String)

    def test_literals(self):
        """
        A chunk ending in a literal announcement is followed by its octets.
        """
        tag, name, args = parser.tokenize([b"a LOGIN {3}", b" {5+}", b""],
                                          [b"bob", b"p w\r\n"])
        self.assertEqual(args, [b"bob", b"p w\r\n"])
        self.assertEqual(parser.literalAnnounced(b"a APPEND x {12+}"), (12, False))
        self.assertEqual(parser.literalAnnounced(b"a LOGIN {7}"), (7, True))
        self.assertIsNone(parser.literalAnnounced(b"a NOOP"))

    def test_bracketsInAtom(self):
        """
        A section with spaces and parentheses stays one atom.
        """
        _, _, args = parser.tokenize([b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (A B)]<0.10> UID)"])
        self.assertEqual(args[1], [Atom(b"BODY.PEEK[HEADER.FIELDS (A B)]<0.10>"), Atom(b"UID")])

    def test_errors(self):
        """
        Unbalanced parentheses, bad quoting and deep nesting are BAD, with
        the tag when one was read.
        """
        for line in [b"a X (", b"a X )", b'a X "abc', b"a X " + b"(" * 100 + b")" * 100,
                     b'a X "\\x"']:
            e = self.assertRaises(BadCommand, parser.tokenize, [line])
            self.assertEqual(e.args[1], b"a")
        e = self.assertRaises(BadCommand, parser.tokenize, [b"+x NOOP"])
        self.assertIsNone(e.args[1])

    def test_sequenceSets(self):
        """
        Sequence sets resolve * and reversed ranges, merge, and match by
        binary search.
        """
        s = SequenceSet.parse(Atom(b"5:3,9,*,2"))
        self.assertEqual(s.resolve(10), [(2, 5), (9, 10)])
        self.assertEqual(s.matching([1, 4, 9, 11, 20], 20), [1, 2, 4])
        for bad in [b"0", b"1:0", b"a", b"1,,2", b"4294967296"]:
            self.assertRaises(BadCommand, SequenceSet.parse, Atom(bad))

    def test_dates(self):
        """
        Search dates and APPEND date-times parse; impossible ones are BAD.
        """
        self.assertEqual(parser.date(Atom(b"1-Feb-1994")), (1994, 2, 1))
        self.assertRaises(BadCommand, parser.date, Atom(b"30-Feb-1994"))
        self.assertEqual(parser.dateTime(String(b"17-Jul-1996 02:44:25 -0700")), 837596665)
        self.assertEqual(parser.dateTime(String(b" 7-Jul-1996 02:44:25 +0000")), 836707465)
        self.assertRaises(BadCommand, parser.dateTime, String(b"17-Jul-1996 25:44:25 -0700"))


class UTF7Tests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        Names with non-ASCII characters and & round-trip.
        """
        for name, wire in [("Entwürfe", b"Entw&APw-rfe"), ("a&b", b"a&-b"),
                           ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-")]:
            self.assertEqual(utf7.encode(name), wire)
            self.assertEqual(utf7.decode(wire), name)

    def test_bad(self):
        """
        8-bit bytes, unterminated or non-canonical shifts are refused; two
        shifted runs side by side are one run written twice (Dovecot refuses
        them too), but a run then C{&-} is not.
        """
        for bad in [b"caf\xc3\xa9", b"&Jjo", b"&AGE-", b"&APw", b"&=-",
                    b"Entw&APw-&ZeVnLIqe-"]:
            self.assertRaises(utf7.BadUTF7, utf7.decode, bad)
        self.assertEqual(utf7.decode(b"&APw-&-"), "\u00fc&")


class StructureTests(SynchronousTestCase):
    def test_crlf(self):
        """
        Stored text gets CRLF line ends and a final one.
        """
        self.assertEqual(structure.crlf(b"a\nb"), b"a\r\nb\r\n")
        self.assertEqual(structure.crlf(b"a\r\nb\n"), b"a\r\nb\r\n")

    def test_emptyPart(self):
        """
        An empty part (a delimiter line right after the one before) has an
        empty header and body: its header does not reach into the line end
        of the next delimiter (found by the C{structure} fuzz target).
        """
        text = structure.crlf(b"Content-Type: multipart/mixed; boundary=b\n\n"
                              b"--b\n\n--b\n\nsecond\n--b--\n")
        entity = structure.Entity(text, 0, len(text))
        part = entity.child(1)
        self.assertEqual((part.headerBytes, part.body), (b"", b""))
        self.assertEqual(part.headerFields([b"FROM"]), b"\r\n")
        self.assertEqual(entity.child(2).body, b"second")

    def test_envelopeDefaults(self):
        """
        Sender and Reply-To default to From; missing fields are NIL.
        """
        text = structure.crlf(b"From: A <a@x>\nSubject: s\n\nb\n")
        env = structure.envelope(structure.Entity(text, 0, len(text)))
        self.assertEqual(env, b'(NIL "s" (("A" NIL "a" "x")) (("A" NIL "a" "x")) '
                              b'(("A" NIL "a" "x")) NIL NIL NIL NIL NIL)')

    def test_addressesAsTheStdlibReadsThem(self):
        """
        ENVELOPE addresses, read by the fast path or the stdlib's parser,
        are what email.utils.getaddresses makes of the field, whatever its
        form.
        """
        import email.utils

        values = [
            "alice@localhost", "Al <al@example.org>", "Al  B   <al.b@x.y>", "<a@b>",
            "Al\t<a@b>", "Al B<al@x>", "=?utf-8?q?J=C3=B6rg?= <j@x>", "a..b@c", ".a@b",
            "a@b.", "a@b, c@d", '"Al B" <a@b>', "Al (c) <a@b>", "a@[1.2.3.4]",
            "Al.B <a@b>", "Al <a@b> x", "Al\u00a0<a@b>", "grp: a@b;", "Al <>", "<a@b",
            "Al <a@b>,", "#!$%&*+/=?^_`{|}~- <a+x@b-c.d>", "J\udcc3\udcb6rg <j@x>",
        ]
        for value in values:
            self.assertEqual(structure._addressPairs(value),
                             email.utils.getaddresses([value]), value)

    def test_envelopeGroups(self):
        """
        A group in an address field is a start marker (its name as the
        mailbox name, host NIL), its members and an end marker (all NIL), as
        RFC 3501 7.4.2 says and Dovecot sends; colons in quoted names do not
        start a group.
        """
        text = structure.crlf(
            b"To: Undisclosed recipients:;\nCc: a@b, Team: c@d, \"E F\" <e@f>;, g@h\n"
            b"Bcc: \"Team A\": ;\nReply-To: \"x:y\" <a@b>\n\nbody\n")
        env = structure.envelope(structure.Entity(text, 0, len(text)))
        self.assertEqual(env, b'(NIL NIL NIL NIL (("x:y" NIL "a" "b")) '
                              b'((NIL NIL "Undisclosed recipients" NIL)(NIL NIL NIL NIL)) '
                              b'((NIL NIL "a" "b")(NIL NIL "Team" NIL)(NIL NIL "c" "d")'
                              b'("E F" NIL "e" "f")(NIL NIL NIL NIL)(NIL NIL "g" "h")) '
                              b'((NIL NIL "Team A" NIL)(NIL NIL NIL NIL)) NIL NIL)')

    def test_envelopeMissingParts(self):
        """
        An address without a domain or a mailbox names what it lacks, as
        Dovecot does: a NIL host would make it a group's start marker, and
        a client would read the addresses after it as the group's members.
        Addresses follow one another without a space (C{1*address}).
        """
        text = structure.crlf(b"To: bob\nCc: undisclosed, carol@x.org\n"
                              b"Bcc: Al <>\n\nbody\n")
        env = structure.envelope(structure.Entity(text, 0, len(text)))
        self.assertEqual(env, b'(NIL NIL NIL NIL NIL ((NIL NIL "bob" "MISSING_DOMAIN")) '
                              b'((NIL NIL "undisclosed" "MISSING_DOMAIN")(NIL NIL "carol" "x.org")) '
                              b'(("Al" NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) NIL NIL)')

    def test_textWithoutCharset(self):
        """
        A text part whose Content-Type has no charset is shown with
        C{("CHARSET" "us-ascii")} (RFC 2045's default, as Dovecot shows it);
        other parameters are kept before it.
        """
        text = structure.crlf(b"Content-Type: text/html; format=flowed\n\n<p>x</p>\n")
        value = structure.bodyStructure(structure.Entity(text, 0, len(text)), extended=False)
        self.assertEqual(value, b'("TEXT" "HTML" ("FORMAT" "flowed" "CHARSET" "us-ascii") '
                                b'NIL NIL "7BIT" 10 1)')

    def test_linesAreLineEnds(self):
        """
        The line count of a part is its number of line ends: the last line
        of a part, whose line end belongs to the boundary after it, does
        not count (as Dovecot counts).
        """
        text = structure.crlf(b"Content-Type: multipart/mixed; boundary=b\n\n"
                              b"--b\n\none\ntwo\n--b\n\nthree\n\n--b--\n")
        entity = structure.Entity(text, 0, len(text))
        parts = [structure.bodyStructure(c, extended=False) for c in entity.children]
        self.assertEqual([p.rsplit(b" ", 1)[1] for p in parts], [b"1)", b"1)"])

    def test_noHeaderBody(self):
        """
        A message without a body still has a BODYSTRUCTURE.
        """
        text = structure.crlf(b"Subject: only\n")
        self.assertIn(b'"TEXT" "PLAIN"',
                      structure.bodyStructure(structure.Entity(text, 0, len(text))))

    def test_deepNesting(self):
        """
        Multiparts nested 200 deep are shown to a bounded depth, never
        raising.
        """
        text = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
                        for i in range(200)) + b"x\n"
        text = structure.crlf(text)
        value = structure.bodyStructure(structure.Entity(text, 0, len(text)))
        self.assertTrue(value.startswith(b"("))

    def test_quote(self):
        """
        Strings are quoted when they can be, literals otherwise.
        """
        self.assertEqual(structure.quote('a "b"'), b'"a \\"b\\""')
        self.assertEqual(structure.quote(b"a\r\nb"), b"{4}\r\na\r\nb")
        self.assertEqual(structure.quote(None), b"NIL")


class FetchItemTests(SynchronousTestCase):
    def test_macros(self):
        """
        ALL, FAST and FULL expand as RFC 3501 says.
        """
        self.assertEqual([i.name for i in fetch.parseItems(Atom(b"fast"))],
                         ["FLAGS", "INTERNALDATE", "RFC822.SIZE"])

    def test_sections(self):
        """
        Sections read their part path, specifier, fields and partial.
        """
        item, = fetch.parseItems([Atom(b"BODY.PEEK[1.2.HEADER.FIELDS (from To)]<5.10>")])
        self.assertEqual((item.path, item.spec, item.fields, item.partial, item.peek),
                         ((1, 2), "HEADER.FIELDS", (b"FROM", b"TO"), (5, 10), True))
        self.assertEqual(item.label, b"BODY[1.2.HEADER.FIELDS (FROM TO)]")
        for bad in [b"BODY[0]", b"BODY[MIME]", b"BODY[1.FOO]", b"BODY[]<1.0>", b"FOO"]:
            self.assertRaises(BadCommand, fetch.parseItems, [Atom(bad)])

    def test_internalDate(self):
        """
        INTERNALDATE is in UTC.
        """
        self.assertEqual(fetch.internalDate(0), b'"01-Jan-1970 00:00:00 +0000"')


class FakeView:
    summaries = [MessageSummary("m%d" % i, 100, 0, uid=i * 10) for i in range(1, 6)]
    uids = [s.uid for s in summaries]

    def recentIds(self):
        return ["m5"]

    def seqPositions(self, s, strict=True):
        return [p for p in range(5) if any(lo <= p + 1 <= hi for lo, hi in s.resolve(5))]

    def uidPositions(self, s):
        return s.matching(self.uids, self.uids[-1])


class SearchCompileTests(SynchronousTestCase):
    def compile(self, line, uid=False):
        _, _, args = parser.tokenize([b"a SEARCH " + line])
        return search.compileSearch(args, FakeView(), uid)

    def test_keys(self):
        """
        RFC 3501 keys become query nodes.
        """
        self.assertEqual(self.compile(b"UNSEEN"), Q.Not(Q.Flag("\\Seen")))
        self.assertEqual(self.compile(b"FROM alice"), Q.Text("from", "alice", substring=True))
        self.assertEqual(self.compile(b"SENTBEFORE 1-Feb-2020"),
                         Q.Date("sent", "before", datetime.date(2020, 2, 1)))
        self.assertEqual(self.compile(b"OR LARGER 5 NEW"),
                         Q.Or([Q.Size("larger", 5),
                               Q.And([Q.Ids(frozenset(["m5"])), Q.Not(Q.Flag("\\Seen"))])]))
        self.assertEqual(self.compile(b"UID 20:30"), Q.Ids(frozenset(["m2", "m3"])))
        self.assertEqual(self.compile(b"(2 KEYWORD $Junk)"),
                         Q.And([Q.Ids(frozenset(["m2"])), Q.Flag("$Junk")]))

    def test_needsText(self):
        """
        Only text keys go to the store's search engine.
        """
        self.assertFalse(search.needsText(self.compile(b"FLAGGED SINCE 1-Jan-2020 1:3")))
        self.assertTrue(search.needsText(self.compile(b"NOT BODY x")))
        self.assertTrue(search.needsText(self.compile(b"SENTON 1-Jan-2020")))

    def test_errors(self):
        """
        Missing arguments and unknown keys are BAD.
        """
        for line in [b"FROM", b"BEFORE x", b"FOO", b"OR SEEN", b"()"]:
            self.assertRaises(BadCommand, self.compile, line)


class FormatSetTests(SynchronousTestCase):
    def test_runs(self):
        """
        COPYUID sets join runs.
        """
        self.assertEqual(formatSet([1, 2, 3, 5, 7, 8]), "1:3,5,7:8")
        self.assertEqual(formatSet([4]), "4")
