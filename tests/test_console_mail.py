"""
Tests for the console's mail commands (L{twisted_mail.console.commands}: List,
Read [n], Raw, Save, Send with a subject, completion) against an in-memory
fake client, and for how L{twisted_mail.console.render} shows real-world messages.
"""

import os
import time
from email.message import EmailMessage

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.test_console import ConsoleTestsMixin, FakeClient, FakeTerminal
from twisted_mail.console import render
from twisted_mail.console.client import MessageLine
from twisted_mail.console.stdio import MailConsole
from twisted_mail.errors import ServerError
from twisted_mail.mail.mime import parseMessage


class MailFakeClient(FakeClient):
    """
    L{FakeClient} with the mailbox-view commands.
    """

    def listMessages(self):
        return self._call("listMessages")

    def readMessageById(self, msgid):
        return self._call("readMessageById", msgid)

    def startSendMessage(self, receiver):
        return self._call("startSendMessage", receiver)


class EditingTerminal(FakeTerminal):
    """
    A stand-in for the line editor: records the prompts asked.
    """

    editing = True

    def __init__(self):
        FakeTerminal.__init__(self)
        self.prompts = []

    def prompt(self, text, kind):
        self.prompts.append((text, kind))


def attachmentMessage():
    """
    A message with a text part and a PDF attachment, as a mail program
    sends it.
    """
    m = EmailMessage()
    m["From"] = "J\u00fcrgen M\u00fcller <j@example.org>"
    m["To"] = "bob@localhost"
    m["Cc"] = "carol@localhost"
    m["Subject"] = "Bericht f\u00fcr Q4"
    m["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    m.set_content("Hallo Bob,\nanbei der Bericht.\n")
    m.add_attachment(
        b"%PDF-1.4 fake" * 10, maintype="application", subtype="pdf",
        filename="Bericht M\u00e4rz.pdf",
    )
    return m.as_bytes()


LISTING = [
    MessageLine("m1", 120, 0, "alice@localhost", ""),
    MessageLine("m2", 5 * 1024 * 1024, 86400 * 365, "J\u00fcrgen M\u00fcller <j@example.org>",
                "Bericht f\u00fcr Q4"),
]


class MailCommandTestsMixin(ConsoleTestsMixin):
    terminal = None

    def start(self, greet=True, capabilities=(), terminal=None, readable=None):
        self.client = MailFakeClient()
        self.console = MailConsole(
            self.client, terminal or self.terminal, readable=readable,
            localtime=time.gmtime,
        )
        self.transport = StringTransport()
        self.console.makeConnection(self.transport)
        self.client.greeting.callback("simplemail ready")
        self.lastCall("capabilities").callback(list(capabilities))
        self.output()

    def setUp(self):
        self.start()
        self.type("SetUser bob\n")
        self.lastCall("selectUser", "bob").callback("bob has 2 messages")
        self.output()

    def listed(self, messages=LISTING):
        self.type("List\n")
        self.lastCall("listMessages").callback(list(messages))
        return self.output()

    def readSecond(self, text=None):
        self.listed()
        self.type("Read 2\n")
        self.lastCall("readMessageById", "m2").callback(text or attachmentMessage())
        return self.output()


class ListAndReadTests(MailCommandTestsMixin, SynchronousTestCase):
    def test_list(self):
        """
        List shows one numbered line per message: number, date, sender,
        subject and size.
        """
        self.assertEqual(
            self.listed(),
            "1  1970-01-01 00:00  alice@localhost           (no subject)  (120 B)\n"
            "2  1971-01-01 00:00  J\u00fcrgen M\u00fcller <j@exampl\u2026  "
            "Bericht f\u00fcr Q4  (5.0 MB)\nSub-Prompt-bob> ",
        )

    def test_listLongSender(self):
        """
        A sender longer than its column is cut with an ellipsis, and control
        characters from a misbehaving server are shown escaped.
        """
        out = self.listed([MessageLine("x", 1, 0, "a" * 40, "s\x1b[2J")])
        self.assertIn("a" * 23 + "\u2026  s^[[2J  (1 B)\n", out)

    def test_listEmpty(self):
        """
        List of an empty mailbox says so.
        """
        self.assertEqual(self.listed([]), "no messages\nSub-Prompt-bob> ")

    def test_listRefused(self):
        """
        A server error for List is one error line.
        """
        self.type("List\n")
        self.lastCall("listMessages").errback(ServerError("unknown command"))
        self.assertEqual(self.output(), "error: unknown command\nSub-Prompt-bob> ")

    def test_listAtMainPrompt(self):
        """
        List, Raw and Save work only after SetUser.
        """
        self.type("Done\n")
        self.lastCall("done").callback("goodbye bob")
        self.output()
        for command in ("List", "Raw", "Save 1 x"):
            self.type(command + "\n")
            self.assertTrue(
                self.output().startswith("error: {} works only after SetUser".format(
                    command.split()[0]))
            )

    def test_readNumber(self):
        """
        Read <n> reads message n of the last List by its id and shows it
        readably: decoded From, To, Cc, Subject and Date, the text, then the
        attachments numbered with name, type and size.
        """
        self.assertEqual(
            self.readSecond(),
            "From: J\u00fcrgen M\u00fcller <j@example.org>\n"
            "To: bob@localhost\n"
            "Cc: carol@localhost\n"
            "Subject: Bericht f\u00fcr Q4\n"
            "Date: Fri, 04 Dec 2026 10:00:00 +0000\n"
            "\n"
            "Hallo Bob,\nanbei der Bericht.\n"
            "\n"
            "[1] Bericht M\u00e4rz.pdf (application/pdf, 130 B)\n"
            "Sub-Prompt-bob> ",
        )

    def test_readBadNumbers(self):
        """
        Read 0, Read 999 and Read x are answered locally with one line; the
        server is not asked.
        """
        self.listed()
        calls = len(self.client.calls)
        self.type("Read 0\nRead 999\nRead x\nRead 1 2\n")
        self.assertEqual(
            self.output(),
            "error: no message 0 in the last List (it has 2 messages)\nSub-Prompt-bob> "
            "error: no message 999 in the last List (it has 2 messages)\nSub-Prompt-bob> "
            "error: usage: Read [n]\nSub-Prompt-bob> "
            "error: usage: Read [n]\nSub-Prompt-bob> ",
        )
        self.assertEqual(len(self.client.calls), calls)

    def test_readNumberBeforeList(self):
        """
        Read <n> before any List says to List first.
        """
        self.type("Read 1\n")
        self.assertEqual(self.output(), "error: no list yet: type List first\nSub-Prompt-bob> ")

    def test_readNumberGone(self):
        """
        A message deleted since the List is one error line.
        """
        self.listed()
        self.type("Read 1\n")
        self.lastCall("readMessageById", "m1").errback(ServerError("no such message"))
        self.assertEqual(self.output(), "error: no such message\nSub-Prompt-bob> ")

    def test_readPipedUnchanged(self):
        """
        Piped, a plain Read still shows the message as stored (as before);
        Read <n> is readable.
        """
        self.type("Read\n")
        self.lastCall("readMessage").callback(b"Subject: =?utf-8?q?x?=\nX-A: b\n\nbody\n")
        self.assertEqual(
            self.output(), "Subject: =?utf-8?q?x?=\nX-A: b\n\nbody\nSub-Prompt-bob> "
        )

    def test_readReadable(self):
        """
        With readable output (on a terminal), a plain Read decodes too.
        """
        self.start(readable=True)
        self.selectBob()
        self.type("Read\n")
        self.lastCall("readMessage").callback(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nX-A: b\n\nbody\n")
        self.assertEqual(self.output(), "Subject: Gr\u00fc\u00dfe\n\nbody\nSub-Prompt-bob> ")

    def test_raw(self):
        """
        Raw shows the message read last as stored; before any, one error
        line.
        """
        self.type("Raw\n")
        self.assertEqual(self.output(), "error: no message read yet: Read one first\nSub-Prompt-bob> ")
        self.readSecond(b"Subject: =?utf-8?q?x?=\n\nbody\x1b[2J\n")
        self.type("Raw\n")
        self.assertEqual(
            self.output(), "Subject: =?utf-8?q?x?=\n\nbody^[[2J\nSub-Prompt-bob> "
        )

    def test_setUserForgetsList(self):
        """
        After switching user, Read <n> and Raw do not reach the old user's
        messages.
        """
        self.readSecond()
        self.type("SetUser alice\n")
        self.lastCall("selectUser", "alice").callback("alice has 0 messages")
        self.output()
        self.type("Read 1\nRaw\n")
        out = self.output()
        self.assertIn("error: no list yet", out)
        self.assertIn("error: no message read yet", out)

    def test_help(self):
        """
        Help at the sub-prompt lists the new commands.
        """
        self.type("Help\n")
        out = self.output()
        for usage in ("List", "Read [n]", "Raw", "Save <k> <file>",
                      "Send <receiverid> [subject]"):
            self.assertIn("  " + usage + " ", out)


class SaveTests(MailCommandTestsMixin, SynchronousTestCase):
    def setUp(self):
        MailCommandTestsMixin.setUp(self)
        self.dir = self.mktemp()
        os.mkdir(self.dir)

    def test_save(self):
        """
        Save <k> <file> writes attachment k, decoded, and says so.
        """
        self.readSecond()
        path = os.path.join(self.dir, "out file.pdf")
        self.type("Save 1 {}\n".format(path))
        self.assertEqual(
            self.output(),
            "saved attachment 1 (Bericht M\u00e4rz.pdf, 130 B) to {}\nSub-Prompt-bob> ".format(path),
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"%PDF-1.4 fake" * 10)

    def test_saveAfterPipedRead(self):
        """
        Save works on a message shown as stored too.
        """
        self.type("Read\n")
        self.lastCall("readMessage").callback(attachmentMessage())
        self.output()
        path = os.path.join(self.dir, "a.pdf")
        self.type("Save 1 {}\n".format(path))
        self.assertTrue(self.output().startswith("saved attachment 1"))

    def test_saveWithoutMessage(self):
        """
        Save before any message was read is one error line.
        """
        self.type("Save 1 x\n")
        self.assertEqual(self.output(), "error: no message read yet: Read one first\nSub-Prompt-bob> ")

    def test_saveBadNumber(self):
        """
        An attachment number the message does not have is one error line.
        """
        self.readSecond()
        self.type("Save 2 x\nSave 0 x\nSave x y\nSave 1\n")
        self.assertEqual(
            self.output(),
            "error: no attachment 2 (the message has 1 attachment)\nSub-Prompt-bob> "
            "error: no attachment 0 (the message has 1 attachment)\nSub-Prompt-bob> "
            "error: usage: Save <k> <file>\nSub-Prompt-bob> "
            "error: usage: Save <k> <file>\nSub-Prompt-bob> ",
        )

    def test_saveMissingDirectory(self):
        """
        A file in a directory that does not exist is one clear error line.
        """
        self.readSecond()
        path = os.path.join(self.dir, "nope", "x.pdf")
        self.type("Save 1 {}\n".format(path))
        self.assertEqual(
            self.output(),
            "error: cannot write {}: no such directory: {}\nSub-Prompt-bob> ".format(
                path, os.path.dirname(path)),
        )

    def test_saveDirectory(self):
        """
        A directory given as the file is refused.
        """
        self.readSecond()
        self.type("Save 1 {}\n".format(self.dir))
        self.assertIn("is a directory", self.output())

    def test_savePipedExisting(self):
        """
        Piped, an existing file is never overwritten: one clear line.
        """
        self.readSecond()
        path = os.path.join(self.dir, "x")
        with open(path, "wb") as f:
            f.write(b"mine")
        self.type("Save 1 {}\ny\n".format(path))
        out = self.output()
        self.assertTrue(out.startswith("error: {} exists; not overwritten\n".format(path)), out)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"mine")

    def test_saveTerminalAsks(self):
        """
        On a terminal, an existing file is overwritten only after a yes;
        anything else keeps it.
        """
        self.start(terminal=FakeTerminal())
        self.selectBob()
        self.readSecond()
        path = os.path.join(self.dir, "x")
        with open(path, "wb") as f:
            f.write(b"mine")
        self.type("Save 1 {}\n".format(path))
        self.assertEqual(self.output(), "{} exists; overwrite it? [y/N] ".format(path))
        self.type("\n")
        self.assertEqual(self.output(), "not saved\nSub-Prompt-bob> ")
        self.type("Save 1 {}\ny\n".format(path))
        self.assertIn("saved attachment 1", self.output())
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"%PDF-1.4 fake" * 10)

    def test_saveHugeAttachment(self):
        """
        A 5 MB base64 attachment is listed with its size and saved whole.
        """
        m = EmailMessage()
        m["Subject"] = "big"
        m.set_content("see attached")
        m.add_attachment(os.urandom(5 * 1024 * 1024), maintype="application",
                         subtype="octet-stream", filename="big.bin")
        out = self.readSecond(m.as_bytes())
        self.assertIn("[1] big.bin (application/octet-stream, 5.0 MB)\n", out)
        path = os.path.join(self.dir, "big.bin")
        self.type("Save 1 {}\n".format(path))
        self.assertTrue(self.output().startswith("saved attachment 1 (big.bin, 5.0 MB)"))
        self.assertEqual(os.path.getsize(path), 5 * 1024 * 1024)


class SendSubjectTests(MailCommandTestsMixin, SynchronousTestCase):
    def test_subjectOnCommandLine(self):
        """
        Send <id> <subject words> sends with SENDM a whole message whose
        Subject is RFC 2047 encoded and whose text is UTF-8 plain text.
        """
        self.type("Send alice Gr\u00fc\u00dfe  aus K\u00f6ln\n")
        self.lastCall("startSendMessage", "alice").callback("go ahead")
        self.assertEqual(self.output(), "Type Message: ")
        self.type("Hallo\n###\n")
        name, (body,), d = self.client.calls[-1]
        self.assertEqual(name, "sendBody")
        parsed = parseMessage(body)
        self.assertEqual(parsed.subject, "Gr\u00fc\u00dfe aus K\u00f6ln")
        self.assertEqual(parsed.text, "Hallo\n")
        self.assertTrue(body.isascii() or b"\n\n" in body)
        self.assertIn(b"Content-Type: text/plain; charset=utf-8\n", body)
        d.callback("message delivered to alice")
        self.assertEqual(self.output(), "message delivered to alice\nSub-Prompt-bob> ")

    def test_subjectControlCharacters(self):
        """
        A subject full of control characters is refused in one line before
        the server is asked.
        """
        calls = len(self.client.calls)
        self.type("Send alice \x1b[2J\x07\x08hi\n")
        self.assertEqual(
            self.output(),
            "error: a subject cannot hold control characters; nothing sent\nSub-Prompt-bob> ",
        )
        self.assertEqual(len(self.client.calls), calls)

    def test_pipedNoSubjectAsked(self):
        """
        Piped, Send <id> asks no subject and sends with SEND, as before.
        """
        self.type("Send alice\n")
        self.lastCall("startSend", "alice").callback("")
        self.assertEqual(self.output(), "Type Message: ")

    def test_terminalAsksSubject(self):
        """
        On a terminal, Send <id> asks Subject: first; a subject sends with
        SENDM, an empty one with SEND.
        """
        self.start(terminal=FakeTerminal())
        self.selectBob()
        self.type("Send alice\n")
        self.assertEqual(self.output(), "Subject: ")
        self.assertEqual(self.client.calls[-1][0], "selectUser")
        self.type("Hi there\n")
        self.lastCall("startSendMessage", "alice").callback("")
        self.assertEqual(self.output(), "Type Message: ")
        self.type("x###\n")
        self.assertIn(b"Subject: Hi there\n", self.client.calls[-1][1][0])
        self.client.calls[-1][2].callback("")
        self.output()
        self.type("Send alice\n\n")
        self.lastCall("startSend", "alice").callback("")
        self.type("y###\n")
        self.lastCall("sendBody", b"y\n")

    def test_terminalSubjectRefused(self):
        """
        A receiver the server refuses after the subject is one error line.
        """
        self.start(terminal=FakeTerminal())
        self.selectBob()
        self.type("Send carol\nHi\n")
        self.lastCall("startSendMessage", "carol").errback(ServerError("no such user: carol"))
        self.assertEqual(
            self.output(), "Subject: error: no such user: carol\nSub-Prompt-bob> "
        )


class CompletionTests(MailCommandTestsMixin, SynchronousTestCase):
    terminal = None

    def setUp(self):
        self.terminal = EditingTerminal()
        self.start()
        # On a line editor the user ids are fetched for completion.
        self.lastCall("listUsers").callback(["alice", "bob", "bobby"])

    def test_commandNames(self):
        """
        The first word completes to the command names of the prompt.
        """
        self.assertEqual(self.console.complete("s"), ["SetUser"])
        self.assertEqual(self.console.complete("Li"), ["Listusers"])
        self.assertEqual(self.console.complete("Re"), [])
        self.type("SetUser bob\n")
        self.lastCall("selectUser", "bob").callback("")
        self.assertEqual(self.console.complete("Re"), ["Read"])
        self.assertEqual(sorted(self.console.complete("li")), ["List", "Listusers"])

    def test_userIds(self):
        """
        Where a user id is expected (SetUser, Send), user ids complete; not
        after Adduser (a new id) nor for a second word.
        """
        self.assertEqual(self.console.complete("SetUser b"), ["bob", "bobby"])
        self.assertEqual(self.console.complete("setuser  A"), ["alice"])
        self.assertEqual(self.console.complete("Adduser b"), [])
        self.assertEqual(self.console.complete("Send bob b"), [])

    def test_refreshedAfterAdduser(self):
        """
        The ids are fetched again after Adduser, and taken from Listusers.
        """
        self.type("Adduser carol\n")
        self.lastCall("addUser", "carol").callback("user carol created")
        self.lastCall("listUsers").callback(["alice", "carol"])
        self.assertEqual(self.console.complete("SetUser c"), ["carol"])
        self.type("Listusers\n")
        self.lastCall("listUsers").callback(["dave"])
        self.assertEqual(self.console.complete("SetUser "), ["dave"])

    def test_promptsThroughEditor(self):
        """
        On a line editor the prompts go to the editor (with the kind of
        line), not to the output.
        """
        self.assertEqual(self.terminal.prompts, [("Main-Prompt> ", "command")])
        self.assertEqual(self.output(), "")

    def test_noFetchWhenPiped(self):
        """
        Piped, nothing more than before is sent: no user list is fetched.
        """
        self.terminal = None
        self.start()
        self.assertEqual([call[0] for call in self.client.calls], ["capabilities"])


def _mixed(*parts):
    m = EmailMessage()
    m["From"] = "a@example.org"
    m["Subject"] = "shapes"
    for part in parts:
        part(m)
    return m


class RenderTests(SynchronousTestCase):
    """
    Real-world message shapes as Read shows them.
    """

    def test_alternative(self):
        """
        multipart/alternative shows the plain part, no attachment.
        """
        m = _mixed(lambda m: m.set_content("plain text\n"),
                   lambda m: m.add_alternative("<p>html <b>text</b></p>", subtype="html"))
        text, parsed = render.renderMessage(m.as_bytes())
        self.assertTrue(text.endswith("\n\nplain text\n"), text)
        self.assertEqual(parsed.parts, [])

    def test_htmlOnly(self):
        """
        An HTML-only message is shown as readable text, without tags,
        scripts or styles.
        """
        msg = (b"Subject: h\nContent-Type: text/html; charset=utf-8\n\n"
               b"<html><head><style>p{}</style></head><body><p>Hello &amp; "
               b"welcome</p><script>alert(1)</script><ul><li>one</li></ul></body></html>\n")
        text, _ = render.renderMessage(msg)
        self.assertIn("Hello & welcome\n", text)
        self.assertIn("* one", text)
        self.assertNotIn("<", text)
        self.assertNotIn("alert", text)

    def test_nestedMixed(self):
        """
        Attachments inside a nested multipart/mixed are numbered in order.
        """
        msg = (
            b"Subject: nested\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="outer"\n\n'
            b"--outer\nContent-Type: multipart/mixed; boundary=\"inner\"\n\n"
            b"--inner\nContent-Type: text/plain\n\nthe text\n"
            b"--inner\nContent-Type: image/png\nContent-Disposition: attachment; filename=a.png\n"
            b"Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--inner--\n"
            b"--outer\nContent-Type: application/zip\nContent-Disposition: attachment; filename=b.zip\n"
            b"Content-Transfer-Encoding: base64\n\nUEsDBA==\n--outer--\n"
        )
        text, parsed = render.renderMessage(msg)
        self.assertIn("\n\nthe text\n", text)
        self.assertTrue(text.endswith(
            "\n[1] a.png (image/png, 8 B)\n[2] b.zip (application/zip, 4 B)\n"), text)

    def test_rfc2231FileName(self):
        """
        An RFC 2231 file name (charset, percent-encoding, continuations) is
        shown decoded.
        """
        msg = (
            b"Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
            b"--b\nContent-Type: text/plain\n\nhi\n"
            b"--b\nContent-Type: application/pdf\n"
            b"Content-Disposition: attachment;\n"
            b" filename*0*=utf-8''%E2%82%AC%20rates;\n filename*1=.pdf\n\n%PDF\n--b--\n"
        )
        text, parsed = render.renderMessage(msg)
        self.assertEqual(parsed.parts[0].filename, "\u20ac rates.pdf")
        self.assertIn("[1] \u20ac rates.pdf (application/pdf, ", text)

    def test_headers8bitAndEncoded(self):
        """
        Raw 8-bit UTF-8 headers and RFC 2047 encoded words are decoded.
        """
        msg = ("From: J\u00fcrgen <j@x>\nSubject: =?iso-8859-1?q?caf=E9?= =?utf-8?b?4oKs?=\n"
               "\nbody\n").encode("utf-8")
        text, _ = render.renderMessage(msg)
        self.assertTrue(text.startswith("From: J\u00fcrgen <j@x>\nSubject: caf\u00e9\u20ac\n"), text)

    def test_quotedPrintableLatin1(self):
        """
        Quoted-printable text in a declared charset is decoded.
        """
        msg = (b"Subject: q\nContent-Type: text/plain; charset=iso-8859-1\n"
               b"Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe, soft=\n break\n")
        text, _ = render.renderMessage(msg)
        self.assertIn("Gr\u00fc\u00dfe, soft break\n", text)

    def test_escapes(self):
        """
        Terminal escape codes in headers, text and file names are shown
        escaped, never sent to the terminal.
        """
        msg = (b"Subject: \x1b]0;owned\x07\nMIME-Version: 1.0\n"
               b"Content-Type: multipart/mixed; boundary=b\n\n"
               b"--b\nContent-Type: text/plain\n\nred \x1b[31m text\r\n"
               b"--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename=\"x\x1b[2J.txt\"\n\nz\n--b--\n")
        text, _ = render.renderMessage(msg)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertIn("Subject: ^[]0;owned^G\n", text)
        self.assertIn("red ^[[31m text\n", text)

    def test_brokenMime(self):
        """
        A multipart message whose boundary never comes is shown as well as
        it can be, with one line saying so.
        """
        msg = (b"Subject: broken\nMIME-Version: 1.0\n"
               b"Content-Type: multipart/mixed; boundary=nothere\n\njust text\n")
        text, _ = render.renderMessage(msg)
        self.assertEqual(text.count("(note: the MIME structure is damaged"), 1)
        self.assertIn("just text", text)

    def test_unknownCharset(self):
        """
        Text in a charset Python does not know is shown (as UTF-8), with one
        line saying so.
        """
        msg = b"Subject: u\nContent-Type: text/plain; charset=x-klingon\n\nqapla\xc3\xa4\n"
        text, _ = render.renderMessage(msg)
        self.assertIn("qapla\u00e4\n", text)
        self.assertIn("(note: unknown charset x-klingon; its text is shown as UTF-8 or Latin-1)\n",
                      text)

    def test_noHeaders(self):
        """
        A message without any of the shown headers starts with its text.
        """
        text, _ = render.renderMessage(b"X-Other: 1\n\nhello")
        self.assertEqual(text, "\nhello\n")

    def test_sizes(self):
        """
        Sizes read as B, KB and MB.
        """
        self.assertEqual([render.formatSize(n) for n in (0, 1023, 1536, 5 * 1024 * 1024)],
                         ["0 B", "1023 B", "1.5 KB", "5.0 MB"])
