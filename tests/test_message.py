"""
Tests for L{twisted_mail.mail.message}: the stored message text and the mboxrd
records of the spool files.

A spool file must be readable as it stands by Python's L{mailbox.mbox}, so
some tests write records to a file and read them back with it.
"""

import email.utils
import mailbox
import re
import time
from email.parser import BytesParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.mail import message
from twisted_mail.mail.message import (
    buildMessage,
    fromMboxRecord,
    normaliseBody,
    quoteFrom,
    separatorLine,
    toMboxRecord,
    unquoteFrom,
)

_settings = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: 2024-02-29 13:05:09 UTC
WHEN = 1709211909

#: Bodies made of the bytes that matter to line handling and mbox quoting.
bodies = st.lists(
    st.sampled_from(
        [b"From ", b">", b"From", b"\n", b"\r\n", b"\r", b".", b"x", b" ", b"\xff", b":"]
    ),
    max_size=25,
).map(b"".join)

#: Bodies without carriage returns, for reading with Python's mailbox module
#: (whose email parser has its own views on a lone CR).
mboxBodies = st.lists(
    st.sampled_from([b"From ", b">", b"From", b"\n", b".", b"x", b" ", b":"]),
    max_size=25,
).map(b"".join)


def _split(message):
    """
    Split RFC 5322 text into its header block and its body at the first
    blank line.
    """
    headers, blank, body = message.partition(b"\n\n")
    return headers, body


class NormaliseBodyTests(SynchronousTestCase):
    """
    Tests for L{normaliseBody}.
    """

    def test_crlfBecomesLf(self):
        """
        CRLF line endings become LF.
        """
        self.assertEqual(normaliseBody(b"a\r\nb\r\n"), b"a\nb\n")

    def test_mixedEndings(self):
        """
        CRLF and LF endings in one body both end up as LF.
        """
        self.assertEqual(normaliseBody(b"a\r\nb\nc\r\n"), b"a\nb\nc\n")

    def test_finalNewlineAdded(self):
        """
        A last line without a line ending gets one.
        """
        self.assertEqual(normaliseBody(b"a\nb"), b"a\nb\n")
        self.assertEqual(normaliseBody(b"hello"), b"hello\n")

    def test_alreadyNormal(self):
        """
        A body with LF endings is kept as it is.
        """
        self.assertEqual(normaliseBody(b"a\n\nb\n"), b"a\n\nb\n")

    def test_empty(self):
        """
        An empty body stays empty.
        """
        self.assertEqual(normaliseBody(b""), b"")

    def test_loneCRKept(self):
        """
        A carriage return inside a line is data and is kept.
        """
        self.assertEqual(normaliseBody(b"a\rb\n"), b"a\rb\n")
        self.assertEqual(normaliseBody(b"\rx"), b"\rx\n")

    def test_eightBitKept(self):
        """
        Bytes that are not ASCII or not UTF-8 are kept byte for byte.
        """
        self.assertEqual(normaliseBody(b"caf\xe9\x00\xff\n"), b"caf\xe9\x00\xff\n")

    def test_crRunBeforeLineFeed(self):
        """
        Carriage returns right before a line feed are part of the line
        ending: C{a<CR><CR><LF>} is the line C{a}.
        """
        self.assertEqual(normaliseBody(b"a\r\r\nb\r\n"), b"a\nb\n")

    def test_trailingCR(self):
        """
        A body ending in a carriage return is normalised once and for all:
        its result holds no CRLF and normalising it again changes nothing.
        """
        once = normaliseBody(b"a\r")
        self.assertNotIn(b"\r\n", once)
        self.assertEqual(normaliseBody(once), once)

    @_settings
    @given(bodies)
    def test_idempotent(self, body):
        """
        Normalising a normalised body changes nothing.
        """
        once = normaliseBody(body)
        self.assertEqual(normaliseBody(once), once)

    @_settings
    @given(bodies.filter(lambda b: not b.endswith(b"\r")))
    def test_lineEndings(self, body):
        """
        Every CRLF, LF or run of CRs before an LF ends a line as a bare LF;
        a non-empty body ends with LF; every other byte is kept.
        """
        expected = re.sub(rb"\r*\n", b"\n", body)
        if expected and not expected.endswith(b"\n"):
            expected += b"\n"
        self.assertEqual(normaliseBody(body), expected)


class BuildMessageTests(SynchronousTestCase):
    """
    Tests for L{buildMessage}.
    """

    def build(self, body=b"hello\n", **kwargs):
        kwargs.setdefault("when", WHEN)
        return buildMessage("alice", "bob", body, "example.org", **kwargs)

    def parse(self, message):
        return BytesParser().parsebytes(message)

    def test_addresses(self):
        """
        From: and To: hold the sender and receiver at the mail domain.
        """
        parsed = self.parse(self.build())
        self.assertEqual(parsed["From"], "alice@example.org")
        self.assertEqual(parsed["To"], "bob@example.org")

    def test_date(self):
        """
        Date: is an RFC 5322 date that email.utils reads back as the
        delivery time.
        """
        parsed = self.parse(self.build())
        date = email.utils.parsedate_to_datetime(parsed["Date"])
        self.assertIsNotNone(date.tzinfo)
        self.assertEqual(date.timestamp(), WHEN)

    def test_dateDefaultsToNow(self):
        """
        Without a delivery time, Date: is the current time.
        """
        before = time.time()
        parsed = self.parse(buildMessage("alice", "bob", b"x", "localhost"))
        after = time.time()
        stamp = email.utils.parsedate_to_datetime(parsed["Date"]).timestamp()
        self.assertTrue(int(before) <= stamp <= after + 1, (before, stamp, after))

    def test_messageIdHasDomain(self):
        """
        Message-ID: is an RFC 5322 id C{<...@domain>}.
        """
        parsed = self.parse(self.build())
        self.assertRegex(parsed["Message-ID"], r"\A<[^<>@\s]+@example\.org>\Z")

    def test_messageIdsUnique(self):
        """
        Two messages get two different Message-IDs.
        """
        first = self.parse(self.build())["Message-ID"]
        second = self.parse(self.build())["Message-ID"]
        self.assertNotEqual(first, second)

    def test_messageIdGiven(self):
        """
        A Message-ID passed in is used as it is.
        """
        parsed = self.parse(self.build(messageId="<42@example.org>"))
        self.assertEqual(parsed["Message-ID"], "<42@example.org>")

    def test_headersThenBlankLineThenBody(self):
        """
        The message is exactly the four headers, a blank line and the body,
        with LF endings.
        """
        message = self.build(b"line one\r\nline two")
        headers, body = _split(message)
        names = [line.split(b":", 1)[0] for line in headers.split(b"\n")]
        self.assertEqual(names, [b"From", b"To", b"Date", b"Message-ID"])
        self.assertEqual(body, b"line one\nline two\n")
        self.assertNotIn(b"\r\n", message)

    def test_bodyLooksLikeHeaders(self):
        """
        A body that starts with header-like lines stays in the body.
        """
        parsed = self.parse(self.build(b"Subject: forged\n\nreal\n"))
        self.assertIsNone(parsed["Subject"])
        self.assertEqual(parsed.get_payload(), "Subject: forged\n\nreal\n")

    def test_emptyBody(self):
        """
        An empty body gives the headers and the blank line only.
        """
        message = self.build(b"")
        self.assertTrue(message.endswith(b"\n\n"))
        self.assertEqual(_split(message)[1], b"")

    def test_eightBitBody(self):
        """
        The body is stored byte for byte, even when it is not UTF-8.
        """
        self.assertEqual(_split(self.build(b"\xff\xfe\x00 caf\xe9\n"))[1], b"\xff\xfe\x00 caf\xe9\n")


class SeparatorLineTests(SynchronousTestCase):
    """
    Tests for L{separatorLine}.
    """

    def test_format(self):
        """
        The separator is C{From <sender> <UTC time in ctime() format>}.
        """
        self.assertEqual(
            separatorLine(b"alice@example.org", WHEN),
            b"From alice@example.org Thu Feb 29 13:05:09 2024",
        )

    def test_arrivalTime(self):
        """
        The arrival time of a separator is its ctime() stamp as POSIX
        seconds, as C{strptime} reads it (any case, one-digit fields),
        and 0 for a stamp that is no time.
        """
        import calendar
        from datetime import datetime

        from twisted_mail.mail.dates import arrivalTime

        self.assertEqual(arrivalTime(separatorLine(b"a@b", WHEN)), int(WHEN))
        for stamp in [b"thu FEB 29 1:2:3 2024", b"Sat Mar  9 23:59:59 2024",
                      b"Thursday Feb 29 13:05:09 2024", b"Thu Feb 30 13:05:09 2024",
                      b"Thu Feb 29 24:00:00 2024", b"Thu Feb 29 13:05:60 2024",
                      b"Thu Feb 29 13:05 2024", b"Thu Feb 0 13:05:09 2024",
                      b"Thu Feb 29 13:05:09 24", b"Thu Feb 29 13:05:09 02024"]:
            try:
                expected = calendar.timegm(datetime.strptime(
                    stamp.decode("ascii"), "%a %b %d %H:%M:%S %Y").timetuple())
            except ValueError:
                expected = 0
            self.assertEqual(arrivalTime(b"From a@b " + stamp), expected, stamp)

    def test_unsafeSender(self):
        """
        Spaces and control characters in the sender cannot forge a second
        field or a line break.
        """
        line = separatorLine(b"a b\nFrom x", WHEN)
        self.assertNotIn(b"\n", line)
        self.assertEqual(line.split(b" ")[1], b"a-b-From-x")


class QuotingTests(SynchronousTestCase):
    """
    Tests for mboxrd C{From } quoting.
    """

    @_settings
    @given(st.lists(st.sampled_from([b"F", b"r", b"o", b"m", b" ", b"\r", b"\n", b">", b"x",
                                     b"From "]), max_size=40).map(b"".join), st.data())
    def test_findInWindowsIsFind(self, text, data):
        """
        The search a window at a time (so a store thread lets the reactor
        run during a big message) finds what one C{find} finds, a match
        across a window's edge included; and quoting, unquoting and
        normalising with small windows are unchanged.
        """
        self.patch(message, "FIND_WINDOW", 3)
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, len(text)))
        for sub in (b"From ", b"\r\n"):
            self.assertEqual(message.findInWindows(text, sub, start, end),
                             text.find(sub, start, end))
        quoted, normalised = quoteFrom(text), normaliseBody(text)
        self.patch(message, "FIND_WINDOW", 1024 * 1024)
        self.assertEqual((quoted, normalised), (quoteFrom(text), normaliseBody(text)))
        self.assertEqual(unquoteFrom(quoted), text)

    def test_quoteFromLine(self):
        """
        A line starting with C{From } gets a C{>}.
        """
        self.assertEqual(quoteFrom(b"From here\n"), b">From here\n")

    def test_quoteQuotedFromLine(self):
        """
        Lines starting with C{>From } and C{>>From } get one more C{>}.
        """
        self.assertEqual(quoteFrom(b">From a\n>>From b\n"), b">>From a\n>>>From b\n")

    def test_quoteEveryLine(self):
        """
        Every matching line is quoted, not only the first.
        """
        self.assertEqual(
            quoteFrom(b"x\nFrom a\ny\nFrom b\n"), b"x\n>From a\ny\n>From b\n"
        )

    def test_notAtLineStart(self):
        """
        C{From } that is not at the start of a line is left alone.
        """
        self.assertEqual(quoteFrom(b"mail From me\n x>From y\n"), b"mail From me\n x>From y\n")

    def test_fromWithoutSpace(self):
        """
        C{From:} headers and words like C{Fromage} are not quoted.
        """
        self.assertEqual(quoteFrom(b"From: a\nFromage\n>Fromage\n"), b"From: a\nFromage\n>Fromage\n")

    def test_unquote(self):
        """
        Unquoting removes one C{>} from each quoted C{From } line.
        """
        self.assertEqual(
            unquoteFrom(b">From a\n>>From b\n>>>From c\n"), b"From a\n>From b\n>>From c\n"
        )

    def test_unquoteLeavesOtherLines(self):
        """
        Lines that are not quoted C{From } lines are left alone.
        """
        text = b"From a\n> quoted reply\n>Fromage\nx >From y\n"
        self.assertEqual(unquoteFrom(text), text)

    @_settings
    @given(bodies)
    def test_roundTrip(self, text):
        """
        Any text survives quoting and unquoting unchanged.
        """
        self.assertEqual(unquoteFrom(quoteFrom(text)), text)

    @_settings
    @given(bodies)
    def test_noSeparatorAfterQuoting(self, text):
        """
        After quoting, no line of a body can be taken for an mbox separator.
        """
        quoted = quoteFrom(text)
        self.assertIsNone(re.search(rb"(?m)^From ", quoted))


    @_settings
    @given(
        st.lists(st.sampled_from([b"From ", b">", b">>From x", b"\n", b"a", b"From"]),
                 max_size=30).map(b"".join),
        st.integers(min_value=0, max_value=200),
        st.integers(min_value=0, max_value=200),
    )
    def test_unquotePartOfText(self, text, start, end):
        """
        Unquoting part of a text in place (from a line start) is unquoting
        that part cut out.
        """
        start = text.rfind(b"\n", 0, min(start, len(text))) + 1
        end = max(start, min(end, len(text)))
        self.assertEqual(unquoteFrom(text, start, end), unquoteFrom(text[start:end]))

class RecordTests(SynchronousTestCase):
    """
    Tests for L{toMboxRecord} and L{fromMboxRecord}.
    """

    separator = b"From alice@example.org Thu Feb 29 13:05:09 2024"

    def message(self, body, **kwargs):
        return buildMessage("alice", "bob", body, "example.org", when=WHEN, **kwargs)

    def test_layout(self):
        """
        A record is the separator line, the quoted message and a blank line.
        """
        message = self.message(b"From the start\nend\n")
        record = toMboxRecord(self.separator, message)
        headers, _ = _split(message)
        self.assertEqual(
            record,
            self.separator + b"\n" + headers + b"\n\n>From the start\nend\n\n",
        )

    def test_roundTrip(self):
        """
        A record reads back as the message that was stored.
        """
        message = self.message(b"From x\n>From y\n.\n\n")
        self.assertEqual(fromMboxRecord(toMboxRecord(self.separator, message)), message)

    def test_otherToolsRecord(self):
        """
        A record written by another tool, with CRLF endings, reads back
        without its separator and trailing blank line.
        """
        record = b"From x@y Thu Feb 29 13:05:09 2024\r\nSubject: s\r\n\r\n>From b\r\n\r\n"
        self.assertEqual(fromMboxRecord(record), b"Subject: s\r\n\r\nFrom b\r\n")

    def test_noSeparatorLine(self):
        """
        A record with no complete separator line holds no message.
        """
        self.assertEqual(fromMboxRecord(b"From x@y"), b"")

    @_settings
    @given(bodies)
    def test_builtMessageRoundTrip(self, body):
        """
        Any message built from any body reads back from its record exactly
        as it was built.
        """
        message = self.message(body, messageId="<1@example.org>")
        self.assertEqual(fromMboxRecord(toMboxRecord(self.separator, message)), message)

    @_settings
    @given(bodies.filter(bool))
    def test_normalisedRoundTrip(self, text):
        """
        Any non-empty text stored in a record reads back as its normalised
        form.
        """
        self.assertEqual(
            fromMboxRecord(toMboxRecord(self.separator, text)), normaliseBody(text)
        )


class StdlibMboxTests(SynchronousTestCase):
    """
    Spool records are readable as they stand by Python's L{mailbox.mbox}.
    """

    def writeMbox(self, records):
        path = FilePath(self.mktemp())
        path.setContent(b"".join(records))
        box = mailbox.mbox(path.path, create=False)
        self.addCleanup(box.close)
        return box

    def test_messagesReadByMailboxModule(self):
        """
        Python's mailbox module finds each message with its headers, its
        separator sender and its body.
        """
        bodies = [b"first body\n", b"second\n\nwith a blank line\n", b"third\n"]
        records = []
        for index, body in enumerate(bodies):
            sender = "user{}".format(index)
            message = buildMessage(sender, "bob", body, "example.org", when=WHEN)
            records.append(
                toMboxRecord(separatorLine(sender.encode() + b"@example.org", WHEN), message)
            )
        box = self.writeMbox(records)
        messages = list(box)
        self.assertEqual(len(messages), 3)
        for index, (parsed, body) in enumerate(zip(messages, bodies)):
            self.assertEqual(parsed["From"], "user{}@example.org".format(index))
            self.assertEqual(parsed["To"], "bob@example.org")
            self.assertEqual(
                email.utils.parsedate_to_datetime(parsed["Date"]).timestamp(), WHEN
            )
            self.assertTrue(parsed["Message-ID"].endswith("@example.org>"))
            self.assertEqual(
                parsed.get_from(), "user{}@example.org Thu Feb 29 13:05:09 2024".format(index)
            )
            self.assertEqual(parsed.get_payload(decode=True), body)

    def test_fromLinesDoNotSplitMessages(self):
        """
        Body lines starting with C{From } do not start a new message for
        Python's mailbox module; it sees them mboxrd-quoted.
        """
        body = b"From the desk of alice\n>From quoted\nplain\n"
        message = buildMessage("alice", "bob", body, "example.org", when=WHEN)
        box = self.writeMbox(
            [
                toMboxRecord(self.separatorFor(b"alice"), message),
                toMboxRecord(self.separatorFor(b"carol"), buildMessage("carol", "bob", b"x\n", "example.org", when=WHEN)),
            ]
        )
        messages = list(box)
        self.assertEqual(len(messages), 2)
        payload = messages[0].get_payload(decode=True)
        self.assertEqual(payload, b">From the desk of alice\n>>From quoted\nplain\n")
        self.assertEqual(unquoteFrom(payload), body)
        self.assertEqual(messages[1]["From"], "carol@example.org")

    def separatorFor(self, user):
        return separatorLine(user + b"@example.org", WHEN)

    @_settings
    @given(st.lists(mboxBodies, min_size=1, max_size=4))
    def test_anyBodiesReadBack(self, bodyList):
        """
        For any bodies, Python's mailbox module reads back one message per
        record, each with its body once mboxrd quoting is undone.
        """
        records = [
            toMboxRecord(
                self.separatorFor(b"alice"),
                buildMessage("alice", "bob", body, "example.org", when=WHEN),
            )
            for body in bodyList
        ]
        box = self.writeMbox(records)
        messages = list(box)
        self.assertEqual(len(messages), len(bodyList))
        for parsed, body in zip(messages, bodyList):
            self.assertEqual(parsed["To"], "bob@example.org")
            payload = parsed.get_payload(decode=True)
            self.assertEqual(unquoteFrom(payload), normaliseBody(body))
