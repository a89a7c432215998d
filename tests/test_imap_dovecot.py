"""
IMAP differential tests: the same scripted sessions against simplemail's
IMAP door (a real C{twistd simplemail --imap} on a spool) and Debian's
Dovecot 2.3 (mbox), holding the same messages, and the answers compared
command by command.

The mail reaches both as the same mbox file, written byte for byte as each
user's INBOX before either server looks at it (L{tests.differential}). One
Dovecot and one simplemail serve the whole class; each test has a user of
its own.

What legitimately differs is normalised away by L{normalise}, and nothing
else: tags (the same on both sides anyway), the human text after
C{OK}/C{NO}/C{BAD}, C{UIDVALIDITY} values, capability lists, the order of a
FETCH response's items and of a flag list, the order of C{LIST} answers,
and how a string is sent (quoted, literal or, for a folder name, an atom).
Where simplemail deliberately answers otherwise than Dovecot, L{ALLOWED}
says so, rule by rule, and docs/imap.rst ("Where simplemail differs from
Dovecot") says why. Each command's expected status is checked against
Dovecot, so that a script that goes wrong on both sides cannot pass.
"""

import time

from twisted.trial.unittest import SynchronousTestCase

from .differential import Atom, IMAPClient, PairMixin, expunged, listOrder, readResponse

# -- the allow-list: deliberate or harmless differences, each documented in
# docs/imap.rst ("Where simplemail differs from Dovecot"). A rule takes a
# normalised response, the side it came from ("dovecot" or "simplemail")
# and the command's verb, and returns the response with that one difference
# taken out; none of them hides anything else.


def _recent(answer, side, verb):
    """
    \\Recent: simplemail gives it to messages that arrive while a session
    has the folder selected (SELECT shows C{* 0 RECENT}); Dovecot gives it
    to the first session that sees a message, which needs state shared
    between processes that MAILBOX.md does not have. The C{RECENT} counts
    and the C{\\Recent} flag are not compared, nor whether a C{RECENT}
    response comes with new mail (only SELECT and EXAMINE must send one).
    """
    if answer[:1] == ("*",) and answer[2:] == ("RECENT",):
        return ("*", "n", "RECENT") if verb in ("SELECT", "EXAMINE") else None
    if answer[:1] == ("*",) and answer[2:3] == ("FETCH",):
        return answer[:3] + (tuple(
            (name, tuple(f for f in value if f != "\\Recent") if name == "FLAGS" else value)
            for name, value in answer[3]),)
    if answer[:2] == ("*", "STATUS"):
        return answer[:3] + (tuple((name, "n" if name == "RECENT" else value)
                                   for name, value in answer[3]),)
    return answer


def _listAttributes(answer, side, verb):
    """
    Dovecot's mbox folders are files, and its directories hold no mail:
    it lists a folder C{\\NoInferiors} (it can never have children), and a
    name created with a trailing C{/} as a C{\\Noselect} directory. A
    simplemail folder may hold mail and get children at any time
    (MAILBOX.md): C{\\HasNoChildren}, selectable. Dovecot's attributes
    are read as simplemail's.
    """
    if side != "dovecot" or answer[:2] not in (("*", "LIST"), ("*", "LSUB")):
        return answer
    attributes = {"\\HasNoChildren" if a == "\\NoInferiors" else a for a in answer[2]}
    if "\\HasNoChildren" in attributes:
        attributes.discard("\\Noselect")
    return answer[:2] + (tuple(sorted(Atom(a) for a in attributes)),) + answer[3:]


def _badCharset(answer, side, verb):
    """
    simplemail's C{NO [BADCHARSET (UTF-8 US-ASCII)]} lists the charsets it
    takes (RFC 3501 allows the list); Dovecot's C{[BADCHARSET]} does not.
    """
    if side == "simplemail" and answer[1:2] == ("NO",) and answer[2] and \
            answer[2][0] == "BADCHARSET":
        return answer[:2] + (answer[2][:1],)
    return answer


def _clientBug(answer, side, verb):
    """
    Dovecot answers a STATUS of the selected folder C{OK [CLIENTBUG]} (a
    hint to client writers, RFC 5530); simplemail answers C{OK}.
    """
    if side == "dovecot" and verb == "STATUS" and answer[:2] == ("tagged", "OK"):
        return ("tagged", "OK", None)
    return answer


def _nonexistent(answer, side, verb):
    """
    SELECT, EXAMINE and STATUS of a folder that does not exist: simplemail
    answers C{NO [NONEXISTENT]} (RFC 5530), as Dovecot does for DELETE and
    RENAME; Dovecot 2.3 sends these three without the code.
    """
    if side == "simplemail" and verb in ("SELECT", "EXAMINE", "STATUS") and \
            answer == ("tagged", "NO", ("NONEXISTENT",)):
        return ("tagged", "NO", None)
    return answer


def _searchedKeyword(answer, side, verb):
    """
    A SEARCH KEYWORD of a keyword no message has makes Dovecot add it to
    the folder's keywords and announce them (C{FLAGS}, C{PERMANENTFLAGS});
    simplemail announces a keyword when a message gets it.
    """
    if side == "dovecot" and verb == "SEARCH" and (
            answer[:2] == ("*", "FLAGS") or
            (answer[:2] == ("*", "OK") and answer[2][:1] == ("PERMANENTFLAGS",))):
        return None
    return answer


def _unsolicitedUid(answer, side, verb):
    """
    A flag change made elsewhere: simplemail's untagged FETCH always
    carries the UID; Dovecot's only during a UID command (or with
    QRESYNC). simplemail's UID is not compared outside FETCH, STORE and
    the UID commands.
    """
    if side == "simplemail" and answer[2:3] == ("FETCH",) and \
            verb not in ("FETCH", "STORE") and not verb.startswith("UID ") and \
            [name for name, _ in answer[3]] == ["FLAGS", "UID"]:
        return answer[:3] + (answer[3][:1],)
    return answer


#: Every comparison applies all of them, in this order.
ALLOWED = [_recent, _listAttributes, _badCharset, _clientBug, _nonexistent,
           _searchedKeyword, _unsolicitedUid]


# -- normalising


def normalise(answers, side, line):
    """
    A command's answer (its responses) as a comparable value, the
    allow-list applied.
    """
    verb = b" ".join(line.upper().split()[:2 if line.upper().startswith(b"UID ") else 1])
    verb = verb.decode("latin-1")
    out = []
    for response in answers:
        value = readResponse(response)
        for rule in ALLOWED:
            if value is not None:
                value = rule(value, side, verb)
        # (A rule may drop a response: None.)
        if value is not None:
            out.append(value)
    return expunged(listOrder(out))


# -- running a script on both


class Both:
    """
    One IMAP session on each server, logged in as the test's user: each
    command goes to both and the answers must agree.
    """

    def __init__(self, case):
        self.case = case
        self.dovecot = IMAPClient(case.pair.dovecot.imapPort)
        case.addCleanup(self.dovecot.close)
        self.simplemail = IMAPClient(case.pair.simplemail.imapPort)
        case.addCleanup(self.simplemail.close)
        for client in (self.dovecot, self.simplemail):
            client.login(case.user)

    def send(self, line, literals=()):
        """
        Send C{line} to both.

        @return: C{(Dovecot's answer, simplemail's)}, each normalised.
        """
        d = self.dovecot.command(line, literals)
        s = self.simplemail.command(line, literals)
        self.raw = (d, s)
        return normalise(d, "dovecot", line), normalise(s, "simplemail", line)

    def check(self, line, expect="OK", literals=()):
        """
        Send C{line} to both; Dovecot's tagged status must be C{expect},
        and the normalised answers the same.

        @return: the normalised answer.
        """
        nd, ns = self.send(line, literals)
        d, s = self.raw
        self.case.assertEqual(nd[-1][1], expect, "{!r}: Dovecot answered {!r}".format(line, d))
        if nd != ns:
            self.case.fail("{!r} answered differently.\nDovecot:\n  {}\nsimplemail:\n  {}\n"
                           "normalised, Dovecot:\n  {}\nsimplemail:\n  {}".format(
                               line, "\n  ".join(map(repr, d)), "\n  ".join(map(repr, s)),
                               "\n  ".join(map(repr, nd)), "\n  ".join(map(repr, ns))))
        return nd

    def checkAll(self, lines, expect="OK"):
        for line in lines:
            self.check(line, expect)

    def differs(self, line, dovecot, simplemail, literals=()):
        """
        A known difference (docs/imap.rst): C{line}'s normalised answers
        must be exactly C{dovecot} and C{simplemail}.
        """
        nd, ns = self.send(line, literals)
        self.case.assertEqual((nd, ns), (dovecot, simplemail), self.raw)


#: An mbox whose message has body lines quoted the mboxrd way (RFC 4155):
#: ">From " stands for "From ", ">>From " for ">From ".
MBOXRD = (b"From alice@example.org Mon Nov  2 08:00:05 2026\n"
          b"From: alice@example.org\nSubject: quoted\n\n"
          b">From the kitchen: soup.\n>>From the cellar: wine.\n\n")


def _searched(answer):
    """
    The numbers of a SEARCH answer (normalised).
    """
    return [n for v in answer if v[:2] == ("*", "SEARCH") for n in v[2:]]


class DovecotIMAPTests(PairMixin, SynchronousTestCase):
    mailboxes = {"test_mboxrdQuoting": MBOXRD}

    def both(self):
        return Both(self)

    def test_select(self):
        """
        SELECT and EXAMINE give the same untagged data (EXISTS, RECENT,
        FLAGS, PERMANENTFLAGS, UNSEEN, UIDVALIDITY, UIDNEXT) and code.
        """
        b = self.both()
        b.checkAll([b"SELECT INBOX", b"EXAMINE INBOX", b"SELECT inbox"])
        b.checkAll([b"STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
                    b"CLOSE"])

    def test_fetchAttributes(self):
        """
        FETCH of FLAGS (from the file's Status: and X-Status: lines), UID,
        RFC822.SIZE and INTERNALDATE (the mbox From line's time) agrees, by
        sequence number and by UID.
        """
        b = self.both()
        b.checkAll([b"EXAMINE INBOX",
                    b"FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)",
                    b"UID FETCH 2:4 (FLAGS RFC822.SIZE)",
                    b"FETCH 2,4:* FAST", b"FETCH 3 ALL", b"FETCH 6 FULL",
                    b"UID FETCH 1:* UID"])

    def test_envelope(self):
        """
        ENVELOPE of every message agrees: names with encoded words, a
        group, Reply-To and Sender, In-Reply-To.
        """
        b = self.both()
        b.checkAll([b"EXAMINE INBOX", b"FETCH 1:* ENVELOPE"])

    def test_bodyStructure(self):
        """
        BODYSTRUCTURE and BODY agree on plain, alternative, mixed,
        8-bit and message/rfc822 messages.
        """
        b = self.both()
        b.check(b"EXAMINE INBOX")
        for n in range(1, 7):
            b.checkAll([b"FETCH %d BODYSTRUCTURE" % n, b"FETCH %d BODY" % n])

    def test_sections(self):
        """
        Sections and partial fetches agree: HEADER.FIELDS (and .NOT), TEXT,
        numbered parts, MIME headers, the parts of an attached message,
        RFC822.HEADER and RFC822.TEXT, ranges inside and past the end.
        """
        b = self.both()
        b.check(b"EXAMINE INBOX")
        b.checkAll([
            b"FETCH 1:* BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]",
            b"FETCH 1:* BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED REFERENCES)]",
            b"FETCH 1,5 BODY.PEEK[TEXT]",
            b"FETCH 1:* BODY.PEEK[1]",
            b"FETCH 2:3 (BODY.PEEK[2] BODY.PEEK[1.MIME] BODY.PEEK[2.MIME])",
            b"FETCH 6 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1])",
            b"FETCH 1:* BODY.PEEK[]<0.120>",
            b"FETCH 4 (BODY.PEEK[]<100.50> BODY.PEEK[TEXT]<10.20> BODY.PEEK[1]<5000.10>)",
            b"FETCH 1:* RFC822.HEADER",
            b"FETCH 1 BODY.PEEK[HEADER]",
            b"FETCH 1:* BODY.PEEK[]",
        ])

    def test_readingSetsSeen(self):
        """
        BODY[] (partial or not), BODY[TEXT] and RFC822 set \\Seen and carry
        the new FLAGS; .PEEK, RFC822.HEADER and RFC822.SIZE do not.
        """
        b = self.both()
        b.checkAll([b"SELECT INBOX",
                    b"FETCH 1 (BODY.PEEK[TEXT] RFC822.HEADER RFC822.SIZE)",
                    b"FETCH 1:* FLAGS",
                    b"FETCH 1 BODY[TEXT]", b"FETCH 2 BODY[]<0.10>", b"FETCH 3 RFC822",
                    b"FETCH 4 RFC822.TEXT", b"FETCH 5 BODY[HEADER.FIELDS (SUBJECT)]",
                    b"FETCH 1:* FLAGS"])

    def test_search(self):
        """
        SEARCH and UID SEARCH agree over text, flags, sizes, dates, sets,
        NOT and OR.
        """
        b = self.both()
        b.check(b"SELECT INBOX")
        b.checkAll([
            b"SEARCH ALL", b"SEARCH FROM alice", b"SEARCH FROM \"example.org\"",
            b"SEARCH SUBJECT lunch", b"SEARCH SUBJECT report", b"SEARCH TO bob",
            b"SEARCH CC carol", b"SEARCH TEXT pumpkin", b"SEARCH TEXT Bob",
            b"SEARCH BODY figures", b"SEARCH BODY Lunch", b"SEARCH BODY \"Line 44\"",
            b"SEARCH HEADER List-Id list", b"SEARCH HEADER Message-ID \"\"",
            b"SEARCH UNSEEN", b"SEARCH SEEN", b"SEARCH FLAGGED", b"SEARCH ANSWERED",
            b"SEARCH UNFLAGGED", b"SEARCH DELETED", b"SEARCH NEW", b"SEARCH OLD",
            b"SEARCH LARGER 1000", b"SEARCH SMALLER 600",
            b"SEARCH SINCE 18-Nov-2026", b"SEARCH BEFORE 18-Nov-2026",
            b"SEARCH ON 26-Nov-2026", b"SEARCH SENTSINCE 1-Dec-2026",
            b"SEARCH SENTBEFORE 10-Nov-2026", b"SEARCH SENTON 10-Nov-2026",
            b"SEARCH NOT SEEN", b"SEARCH OR FLAGGED SUBJECT lunch",
            b"SEARCH NOT OR FROM alice FROM dave", b"SEARCH 2:4", b"SEARCH 4:*",
            b"SEARCH *", b"SEARCH 1,3,5 SUBJECT re", b"SEARCH UID 2:*",
            b"SEARCH UID 3,5 NOT SEEN", b"UID SEARCH ALL", b"UID SEARCH FROM joerg",
            b"UID SEARCH 5:*", b"UID SEARCH UID 4:*", b"SEARCH CHARSET UTF-8 ALL",
            b"SEARCH KEYWORD $Forwarded", b"SEARCH UNKEYWORD $Forwarded",
        ])

    def test_searchDecoded(self):
        """
        SEARCH looks into decoded text: encoded words in headers,
        quoted-printable and 8-bit UTF-8 bodies, base64 attachments.
        """
        b = self.both()
        b.check(b"SELECT INBOX")
        for key, text in [(b"SUBJECT", b"Gr\xc3\xbc\xc3\x9fe"), (b"FROM", b"M\xc3\xbcller"),
                          (b"BODY", b"K\xc3\xb6ln"), (b"BODY", b"costs \xe2\x80\x93 flat"),
                          (b"TEXT", b"caf\xc3\xa9")]:
            b.check(b"SEARCH CHARSET UTF-8 " + key + b" \0", literals=[text])
        b.checkAll([b"SEARCH BODY \"break joins\"", b"SEARCH BODY PDF",
                    b"SEARCH TEXT draft.pdf", b"SEARCH TEXT \"See below\""])

    def test_searchDifferences(self):
        """
        Where simplemail's one search engine (MAILBOX.md: words of the
        decoded text, HTML as text, case- and accent-insensitive) finds
        otherwise than Dovecot's substring search of the raw parts.
        """
        b = self.both()
        b.check(b"SELECT INBOX")
        for line, dovecot, simplemail in [
                # HTML tags are not text; Dovecot searches the HTML source.
                (b"SEARCH BODY html", [2], []),
                # A part's own header (Content-Description) is not text.
                (b"SEARCH TEXT \"the draft\"", [3], []),
                # Accents, sharp s and runs of spaces do not matter.
                (b"SEARCH BODY Koln", [], [4]), (b"SEARCH FROM Muller", [], [4]),
                (b"SEARCH SUBJECT grusse", [], [4]),
                (b"SEARCH BODY \"lunch  on\"", [], [1, 6])]:
            d, s = b.send(line)
            self.assertEqual((_searched(d), _searched(s)), (dovecot, simplemail), line)
            self.assertEqual((d[-1], s[-1]), (("tagged", "OK", None),) * 2)

    def test_mboxrdQuoting(self):
        """
        A message another program wrote to the mbox with mboxrd quoting
        (">From ", RFC 4155): simplemail's spool is mboxrd (PROTOCOL.md) and
        removes one ">"; Dovecot, which keeps mbox bodies as they are (its
        own writes use Content-Length), shows the quotes. Appended through
        IMAP, a "From " line comes back the same from both.
        """
        b = self.both()
        b.check(b"SELECT INBOX")
        d, s = b.send(b"FETCH 1 (RFC822.SIZE BODY.PEEK[TEXT])")
        self.assertEqual(d[0][3], (("BODY[TEXT]", b">From the kitchen: soup.\r\n"
                                                  b">>From the cellar: wine.\r\n"),
                                   ("RFC822.SIZE", 96)))
        self.assertEqual(s[0][3], (("BODY[TEXT]", b"From the kitchen: soup.\r\n"
                                                  b">From the cellar: wine.\r\n"),
                                   ("RFC822.SIZE", 94)))
        b.check(b"APPEND INBOX \0", literals=[b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n"])
        b.check(b"FETCH 2 (RFC822.SIZE BODY.PEEK[])")

    def test_store(self):
        """
        STORE and UID STORE with FLAGS, +FLAGS, -FLAGS and their .SILENT
        forms, system flags and keywords, answer the same FETCH data.
        """
        b = self.both()
        b.checkAll([
            b"SELECT INBOX",
            b"STORE 1 +FLAGS (\\Flagged)", b"STORE 1:2 +FLAGS (\\Seen \\Answered)",
            b"STORE 2 -FLAGS (\\Seen)", b"STORE 3 FLAGS (\\Draft $Forwarded)",
            b"STORE 4 +FLAGS.SILENT (\\Deleted)", b"STORE 4 -FLAGS.SILENT (\\Deleted)",
            b"UID STORE 5:* +FLAGS ($Junk)", b"UID STORE 6 FLAGS.SILENT ()",
            b"STORE 1 +FLAGS (\\Flagged)", b"STORE 1 -FLAGS (\\Draft)",
            b"UID STORE 99 +FLAGS (\\Seen)",
            b"FETCH 1:* (UID FLAGS)", b"SEARCH KEYWORD $Junk",
        ])

    def test_copyMove(self):
        """
        COPY and MOVE (MOVE is advertised by both) answer the same COPYUID
        and EXPUNGE responses; the folders hold the same messages after.
        """
        b = self.both()
        b.checkAll([
            b"SELECT INBOX", b"STORE 1 +FLAGS (\\Flagged)",
            b"COPY 1:2 Archive", b"UID COPY 5 Archive", b"MOVE 3 Trash",
            b"UID MOVE 5:6 Trash", b"FETCH 1:* (UID FLAGS)",
            b"STATUS Archive (MESSAGES UIDNEXT UNSEEN)",
            b"STATUS Trash (MESSAGES UIDNEXT UNSEEN)",
            b"SELECT Archive", b"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)",
            b"SELECT Trash", b"FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        ])
        b.check(b"COPY 1 Nowhere", "NO")
        b.check(b"MOVE 1 Nowhere", "NO")

    def test_expunge(self):
        """
        EXPUNGE and UID EXPUNGE answer the same untagged EXPUNGEs, in the
        same order; CLOSE expunges without them.
        """
        b = self.both()
        b.checkAll([
            b"SELECT INBOX", b"STORE 2,4:5 +FLAGS.SILENT (\\Deleted)", b"EXPUNGE",
            b"FETCH 1:* UID", b"UID STORE 1:* +FLAGS.SILENT (\\Deleted)",
            b"UID EXPUNGE 3,6", b"FETCH 1:* (UID FLAGS)", b"CLOSE",
            b"SELECT INBOX", b"EXPUNGE",
        ])

    def test_folders(self):
        """
        CREATE, LIST and LSUB with *, % and "" patterns, RENAME, DELETE and
        STATUS agree, and so do their failures.
        """
        b = self.both()
        b.checkAll([
            b"CREATE Projects/2026", b"CREATE Projects/2027/", b"CREATE Receipts",
            b"LIST \"\" \"\"", b"LIST \"\" *", b"LIST \"\" %", b"LIST \"\" Projects/%",
            b"LIST \"\" Pro*", b"LIST Projects/ *", b"LIST \"\" INBOX", b"LIST \"\" inbox",
            b"LIST \"\" Nothing*", b"LIST \"\" Projects",
            b"STATUS Receipts (MESSAGES RECENT UIDNEXT UNSEEN)",
            b"RENAME Receipts Receipts-2026", b"LIST \"\" Rec*",
            b"RENAME Projects/2026 Projects/Old", b"LIST \"\" Projects/*",
            b"DELETE Receipts-2026", b"DELETE Projects/Old", b"LIST \"\" *",
            b"CREATE Receipts",
        ])
        for line in (b"CREATE Projects/2027", b"CREATE INBOX", b"DELETE Nowhere",
                     b"RENAME Nowhere Somewhere", b"RENAME Projects/2027 Receipts",
                     b"STATUS Nowhere (MESSAGES)", b"SELECT Nowhere", b"EXAMINE Nowhere"):
            b.check(line, "NO")

    def test_subscriptions(self):
        """
        In simplemail every folder is subscribed (docs/imap.rst): its LSUB
        answers what its LIST answers, and, with every folder subscribed on
        Dovecot too, names the same folders that hold mail (Dovecot's LSUB
        leaves out the children attributes and, for C{*}, a parent that is
        not subscribed itself). UNSUBSCRIBE is OK and changes nothing.
        """
        b = self.both()
        b.checkAll([b"CREATE Projects/2026", b"CREATE Receipts"])
        for name in (b"INBOX", b"Projects/2026", b"Receipts"):
            self.assertEqual(b.dovecot.command(b"SUBSCRIBE " + name)[-1].split()[1], b"OK")
        b.check(b"SUBSCRIBE Receipts")
        for pattern in (b"\"\" *", b"\"\" %", b"\"\" Projects/%", b"Projects/ *"):
            dovecot, simplemail = b.send(b"LSUB " + pattern)
            listed = b.send(b"LIST " + pattern)[1]
            self.assertEqual(simplemail, [v[:1] + ("LSUB",) + v[2:] if v[1] == "LIST" else v
                                          for v in listed])
            selectable = [[v[4] for v in answer if v[1] == "LSUB" and "\\Noselect" not in v[2]]
                          for answer in (dovecot, simplemail)]
            self.assertEqual(selectable[0], selectable[1], pattern)
            self.assertEqual(dovecot[-1], simplemail[-1])
        b.check(b"UNSUBSCRIBE Receipts")
        dovecot, simplemail = b.send(b"LSUB \"\" Receipts")
        self.assertEqual((dovecot, [v[4] for v in simplemail[:-1]]),
                         ([("tagged", "OK", None)], [b"Receipts"]))

    def test_specialFolders(self):
        """
        INBOX and the special-use folders (Sent, Drafts, Trash, Junk,
        Archive) are fixed in simplemail (MAILBOX.md): NO where Dovecot
        renames INBOX (moving its mail), creates a special folder it lists
        but has not made yet, or deletes and renames one.
        """
        b = self.both()
        b.differs(b"CREATE Sent", [("tagged", "OK", None)],
                  [("tagged", "NO", ("ALREADYEXISTS",))])
        b.differs(b"RENAME Sent Sent-old", [("tagged", "OK", None)],
                  [("tagged", "NO", ("CANNOT",))])
        b.differs(b"RENAME INBOX Old", [("tagged", "OK", None)],
                  [("tagged", "NO", ("CANNOT",))])
        b.differs(b"DELETE INBOX", [("tagged", "NO", None)],
                  [("tagged", "NO", ("CANNOT",))])

    def test_append(self):
        """
        APPEND with flags and a date, to INBOX and to another folder, answers
        the same APPENDUID; the message reads back the same; APPEND to a
        folder that does not exist is NO [TRYCREATE].
        """
        message = (b"From: gina@example.org\r\nTo: bob@localhost\r\n"
                   b"Subject: appended\r\nDate: Sat, 05 Dec 2026 10:00:00 +0100\r\n"
                   b"\r\nAn appended message.\r\n")
        b = self.both()
        b.check(b"APPEND INBOX (\\Seen $Label1) \"05-Dec-2026 10:00:01 +0100\" \0",
                literals=[message])
        b.check(b"APPEND Drafts (\\Draft) \"01-Jan-2026 00:00:00 -0800\" \0",
                literals=[message])
        b.check(b"APPEND Nowhere \0", "NO", literals=[message])
        b.checkAll([b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)", b"SELECT INBOX",
                    b"FETCH 7 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[] ENVELOPE)",
                    b"SELECT Drafts", b"FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE)"])

    def test_idle(self):
        """
        IDLE is answered with a continuation and DONE ends it with OK.
        """
        b = self.both()
        b.check(b"SELECT INBOX")
        answers = []
        for client in (b.dovecot, b.simplemail):
            client.send(b"i1 IDLE\r\n")
            first = client.response()
            client.send(b"DONE\r\n")
            answers.append([first, client.response()])
        self.assertEqual([[readResponse(a) for a in answer] for answer in answers],
                         [[("+",), ("tagged", "OK", None)]] * 2, answers)

    def test_errors(self):
        """
        Bad syntax, an unknown command, a folder that does not exist, bad
        sequence sets, a missing UID and commands of the wrong state get the
        same BAD, NO or OK.
        """
        b = self.both()
        for line in (b"FETCH 1 FLAGS", b"STORE 1 +FLAGS (\\Seen)", b"EXPUNGE", b"CLOSE",
                     b"SEARCH ALL", b"UID FETCH 1 FLAGS", b"FROBNICATE", b"SELECT",
                     b"LIST \"\"", b"STATUS INBOX", b"CREATE"):
            b.check(line, "BAD")
        b.check(b"SELECT Nowhere", "NO")
        b.check(b"SELECT INBOX")
        for line in (b"FETCH 0 FLAGS", b"FETCH 1:x FLAGS", b"FETCH 7 FLAGS",
                     b"FETCH 1 (FLAGS", b"FETCH 1 NONSENSE", b"STORE 1 +FLAGS (\\Bogus)",
                     b"STORE 1 FROB (\\Seen)", b"SEARCH FROB", b"SEARCH CHARSET KOI8-Z ALL",
                     b"COPY 9 Archive", b"UID", b"UID FROB 1"):
            b.check(line, "BAD" if line != b"SEARCH CHARSET KOI8-Z ALL" else "NO")
        # Part 0 is not in RFC 3501's grammar: simplemail says BAD, Dovecot
        # sends an empty section.
        b.differs(b"FETCH 1 BODY.PEEK[0]", [
            ("*", 1, "FETCH", (("BODY[0]", b""),)), ("tagged", "OK", None)],
            [("tagged", "BAD", None)])
        b.checkAll([b"UID FETCH 99999 FLAGS", b"UID FETCH 99999:* FLAGS",
                    b"UID STORE 99999 +FLAGS (\\Seen)", b"UID COPY 99999 Archive",
                    b"UID SEARCH UID 99999", b"NOOP", b"CHECK"])

    def test_sessionEnd(self):
        """
        UNSELECT, NAMESPACE and LOGOUT agree.
        """
        b = self.both()
        b.checkAll([b"SELECT INBOX", b"UNSELECT", b"NAMESPACE"])
        b.check(b"UNSELECT", "BAD")
        b.check(b"LOGOUT")

    def test_changesMadeElsewhere(self):
        """
        A second session on the folder is told of a flag change, a new
        message and an expunge made by the first, at its next NOOP, and of
        a new message during IDLE. (simplemail's sessions learn of changes
        within 2 seconds: its NOOP is repeated until it has something to
        say.)
        """
        first, second = self.both(), self.both()
        first.check(b"SELECT INBOX")
        second.check(b"SELECT INBOX")
        message = b"From: h@example.org\r\nSubject: new\r\n\r\nnew\r\n"
        changes = [b"STORE 2 +FLAGS.SILENT (\\Flagged $Later)",
                   b"APPEND INBOX (\\Seen) \"06-Dec-2026 10:00:00 +0000\" \0",
                   b"STORE 3 +FLAGS.SILENT (\\Deleted)"]
        for change in changes:
            first.check(change, literals=[message] if b"\0" in change else ())
            if change.startswith(b"STORE 3"):
                first.check(b"EXPUNGE")
            self.assertEqual(*self.nextNews(second, b"NOOP"))
        second.dovecot.send(b"i1 IDLE\r\n")
        second.simplemail.send(b"i1 IDLE\r\n")
        for client in (second.dovecot, second.simplemail):
            self.assertTrue(client.response().startswith(b"+"))
        first.check(b"APPEND INBOX () \"06-Dec-2026 11:00:00 +0000\" \0", literals=[message])
        news = []
        for client, side in ((second.dovecot, "dovecot"), (second.simplemail, "simplemail")):
            told = [client.response()]  # within 2 seconds (TIMEOUT bounds it)
            client.send(b"DONE\r\n")
            while not told[-1].startswith(b"i1 "):
                told.append(client.response())
            news.append(normalise(told, side, b"IDLE"))
        self.assertEqual(news[0], news[1])
        self.assertEqual(news[0], [("*", 7, "EXISTS"), ("tagged", "OK", None)])

    def nextNews(self, both, line, timeout=5.0):
        """
        Send C{line} to both; simplemail's again until it tells of
        something (its sessions learn of changes within 2 seconds).

        @return: C{(Dovecot's normalised answer, simplemail's)}.
        """
        dovecot = normalise(both.dovecot.command(line), "dovecot", line)
        deadline = time.monotonic() + timeout
        while True:
            simplemail = normalise(both.simplemail.command(line), "simplemail", line)
            if len(simplemail) > 1 or time.monotonic() > deadline:
                return dovecot, simplemail
            time.sleep(0.1)
