"""
What the coverage-guided fuzz targets of fuzz/ found, kept as regression
tests, and a replay of every target's seed corpus (which holds each
finding's input as C{finding-*}) through the target's property checks.

The targets themselves run under atheris (fuzz/README.rst); these tests
need only their C{check} functions, not atheris.
"""

import os
import types

from twisted.trial.unittest import SynchronousTestCase

from fuzz import harness
from twisted_mail.errors import MalformedMessage
from twisted_mail.logins import portal
from twisted_mail.mail import message, mime

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "fuzz", "corpus")


def target(name):
    """
    The module of the fuzz target C{name}, ready to check inputs.
    """
    module = __import__("fuzz.fuzz_" + name, fromlist=["check"])
    return module


class SeedCorpusTests(SynchronousTestCase):
    """
    Every seed of every target passes that target's property checks.
    """

    def replay(self, name):
        module = target(name)
        if name == "passwords":
            module._PATH = os.path.join(self.mktemp())
            os.makedirs(os.path.dirname(module._PATH) or ".", exist_ok=True)
        seeds = sorted(os.listdir(os.path.join(CORPUS, name)))
        self.assertTrue(seeds, name)
        for seed in seeds:
            with open(os.path.join(CORPUS, name, seed), "rb") as f:
                data = f.read()
            try:
                module.check(data)
            except AssertionError as e:
                self.fail("{}/{}: {}".format(name, seed, e))

    def test_targets(self):
        """
        The targets CI fuzzes are the ones with a corpus here, each a
        fuzz/fuzz_<name>.py module.
        """
        self.assertEqual(sorted(harness.TARGETS), sorted(os.listdir(CORPUS)))
        for name in harness.TARGETS:
            self.assertTrue(callable(target(name).check), name)

    def test_wire(self):
        """The wire format's seeds keep its properties."""
        self.replay("wire")

    def test_lineServer(self):
        """The line-protocol server's seeds get well-formed replies."""
        self.replay("line_server")

    def test_pop3(self):
        """The POP3 door's seeds get well-formed replies."""
        self.replay("pop3")

    def test_smtpAuth(self):
        """Submission AUTH's seeds get well-formed replies and exchanges."""
        self.replay("smtp_auth")

    def test_headers(self):
        """SENDM header sections of the seeds are stored as promised."""
        self.replay("headers")

    def test_mime(self):
        """The reader's summaries of the seeds are printable, their parts sane."""
        self.replay("mime")

    def test_webAPI(self):
        """The web API answers the seeds' requests as the contract says."""
        self.replay("web_api")

    def test_passwords(self):
        """The seeds' password files are read and rewritten faithfully."""
        self.replay("passwords")

    def test_roundtrip(self):
        """The seeds' subjects and texts survive the builder and the reader."""
        self.replay("roundtrip")

    def test_imap(self):
        """The seeds' IMAP commands tokenize, and write back, as the grammar says."""
        self.replay("imap")

    def test_structure(self):
        """
        The seeds' ENVELOPE and BODYSTRUCTURE read back as RFC 3501 writes
        them; among them the findings: an empty part whose header reached
        into the next delimiter's line end, and an address without a host
        that a client would take for a group's start.
        """
        self.replay("structure")

    def test_smtpIngress(self):
        """
        The seeds' SMTP transactions are stored as sent, after our headers;
        among them the findings: a sender's NUL and 8-bit bytes echoed into
        the 553 line, and a Date: after an obsolete-syntax field that the
        reader does not see (so none was added).
        """
        self.replay("smtp_ingress")


class HeaderFindingTests(SynchronousTestCase):
    def test_unterminatedLastLineChecked(self):
        """
        A submitted header section whose last line lacks its LF is checked
        like every other line: garbage there is refused, a field there is
        kept.
        """
        with self.assertRaises(MalformedMessage):
            message.parseHeaderSection(b":ouS\x03 ")
        with self.assertRaises(MalformedMessage):
            message.buildSubmittedMessage("bob", "carol", "example.org", b":ouS\x03 ")
        self.assertEqual(message.parseHeaderSection(b"Subject: hi\nX-A: b"),
                         [(b"Subject", b"Subject: hi\n"), (b"X-A", b"X-A: b\n")])
        stored = b"".join(message.buildSubmittedMessage(
            "bob", "carol", "example.org", b"Subject: hi", when=0, messageId="<m@x>"))
        self.assertIn(b"\nSubject: hi\n\n", stored)


    def test_headersTheEmailPackageCannotRead(self):
        """
        A header section that makes the C{email} package raise when it
        reads the message (RFC 2231 parameters C{x*; x*0=a} in a multipart
        Content-Type: a TypeError in CPython's email.utils) is refused,
        not stored for every reader to trip over.
        """
        head = b"Content-Type: multipart/mixed; x*; x*0=a\n"
        with self.assertRaises(MalformedMessage):
            message.parseHeaderSection(head)
        with self.assertRaises(MalformedMessage):
            message.buildSubmittedMessage("bob", "carol", "example.org", head + b"\nbody\n")


class MimeFindingTests(SynchronousTestCase):
    def test_nulInCharset(self):
        """
        A charset name holding a NUL reads as an unknown charset (codecs
        raise ValueError for it, not LookupError).
        """
        parsed = mime.parseMessage(
            b"Content-Type: text/plain; charset=u\x00tf-8\n\nh\xc3\xa9\n")
        self.assertEqual(parsed.text, "h\xe9\n")
        self.assertEqual(len(parsed.problems), 1)
        self.assertTrue(parsed.problems[0].startswith("unknown charset u tf-8"))

    def test_eightBitDisposition(self):
        """
        8-bit bytes in Content-Disposition (the email package gives a Header
        object, not a string) do not stop the reader.
        """
        parsed = mime.parseMessage(
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
            b"Content-Type: application/pdf\n"
            b"Content-Disposition: attachment; filename=\"r\xe9.pdf\"\n\n%PDF\n--b--\n")
        self.assertEqual([(p.part, p.contentType) for p in parsed.parts],
                         [(1, "application/pdf")])

    def test_summaryOnOneLine(self):
        """
        A summary's sender, recipient and subject hold no control
        character (C1 ones from raw Latin-1, any from an encoded word),
        while a reader still sees the header as it is.
        """
        text = (b"From: \x90Eve\x9b <e@x>\nTo: =?utf-8?q?a=1B[2Jb?= <b@x>\n"
                b"Subject: =?utf-8?q?x=07y=00z?=\n\nhi\n")
        summary = mime.summarize(text, "m1", 0)
        self.assertEqual((summary.sender, summary.to, summary.subject),
                         (" Eve  <e@x>", "a [2Jb <b@x>", "x y z"))
        self.assertIn(("Subject", "x\x07y\x00z"), mime.parseMessage(text).headers)

    def test_contentTypeWithControls(self):
        """
        A part whose content type holds control characters is listed as
        application/octet-stream.
        """
        parsed = mime.parseMessage(b"Content-Type: \x08evil/rfc822\n\nbody\n")
        self.assertEqual([p.contentType for p in parsed.parts],
                         ["application/octet-stream"])

    def test_fourDigitYear(self):
        """
        A Date header in the year 428 is shown as 0428-..., ISO 8601.
        """
        summary = mime.summarize(b"Date: Thu, 26 Nov 428 12:00:00 +0000\n\nx\n", "m1", 0)
        self.assertEqual(summary.date, "0428-11-26T12:00:00Z")

    def test_findingInputs(self):
        """
        The inputs the mime target found each pass its checks now.
        """
        module = target("mime")
        for name in sorted(os.listdir(os.path.join(CORPUS, "mime"))):
            if name.startswith("finding-"):
                with open(os.path.join(CORPUS, "mime", name), "rb") as f:
                    module.check(f.read())


class PasswordFileFindingTests(SynchronousTestCase):
    def write(self, data):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return portal.PasswordFile(path)

    def test_notUTF8(self):
        """
        A byte that is not UTF-8 (a Latin-1 comment) does not make every
        login fail, and a rewrite keeps it.
        """
        passwords = self.write(b"# caf\xe9\nbob:hash1\ncarol:h\xe9sh\n")
        self.assertEqual(passwords.lookup("bob"), "hash1")
        passwords.setPassword("dave", "pw")
        self.assertEqual(passwords.lookup("bob"), "hash1")
        with open(passwords.path, "rb") as f:
            self.assertIn(b"carol:h\xe9sh\n", f.read())

    def test_byteOrderMarkAndCRLF(self):
        """
        A file saved with a byte order mark and CRLF line ends (a Windows
        editor) finds its first user, without a CR in the hash.
        """
        passwords = self.write(b"\xef\xbb\xbfbob:hash1\r\ncarol:hash2\r\n")
        self.assertEqual(passwords.read(), {"bob": "hash1", "carol": "hash2"})

    def test_onlyLineFeedsEndLines(self):
        """
        A form feed or NEL in a line does not cut it in two.
        """
        passwords = self.write("bob:ha\x0csh\x85x\n".encode("utf-8"))
        self.assertEqual(passwords.read(), {"bob": "ha\x0csh\x85x"})

    def test_costlyHashMatchesNothing(self):
        """
        A stored hash asking for far more scrypt work than the server's own
        (256 times: r = 1, p = 2048, within scrypt's memory limit) matches
        nothing, without computing it.
        """
        stored = portal.hashPassword("pw")
        scheme, n, r, p, salt, digest = stored.split("$")
        self.assertTrue(portal.verifyPassword("pw", stored))
        costly = "$".join([scheme, n, "1", "2048", salt, digest])
        computed = []
        self.patch(portal, "hashlib", types.SimpleNamespace(
            scrypt=lambda *a, **kw: computed.append(kw) or b""))
        self.assertFalse(portal.verifyPassword("pw", costly))
        self.assertEqual(computed, [])


class RoundTripFindingTests(SynchronousTestCase):
    def test_subjectLikeEncodedWord(self):
        """
        A subject that looks like an RFC 2047 encoded word is read back as
        it was written, not decoded.
        """
        subject = "=?utf-8?q?not_encoded?="
        built = message.buildMessageWithSubject(
            "bob", "carol", subject, "text\n", "example.org", when=0, messageId="<m@x>")
        self.assertEqual(mime.parseMessage(built).subject, subject)
        self.assertEqual(message.encodeSubject("plain words"), "plain words")
