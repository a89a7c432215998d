"""
The parts of the differential tests against Dovecot (C{test_imap_dovecot},
C{test_pop3_dovecot}) that are not tests: the messages both servers hold,
the pair of servers one test class shares, blocking IMAP and POP3 clients
that keep every byte of an answer, and the IMAP answer reader that the
comparison is made on, with what legitimately differs between any two
servers taken out (what simplemail does otherwise on purpose is the test
modules' allow-lists). Not a test module.

Both servers get the same mail the same way: the mbox file below, written
byte for byte as each user's INBOX file before the server first looks at
it (Dovecot's C{INBOX=} file; simplemail's spool file C{<spool>/<user>},
which the spool reads as mail another program appended). Each test method
has a user of its own (its name), so tests that change mail stay apart
while the class shares one Dovecot and one simplemail.
"""

import atexit
import os
import re
import shutil
import socket
import tempfile
import time

from .dovecotserver import DovecotServer, needDovecot
from .serverprocess import ServerProcess, freePort

TIMEOUT = 15.0

# -- the messages


def _message(fromLine, text):
    return b"From " + fromLine + b"\n" + text.replace(b"\r\n", b"\n") + b"\n"


#: Plain ASCII text, an address with a name, a Cc.
PLAIN = (
    b"From: Alice Example <alice@example.org>\n"
    b"To: Bob <bob@localhost>\n"
    b"Cc: carol@example.net\n"
    b"Subject: Lunch on Friday\n"
    b"Date: Mon, 02 Nov 2026 09:00:00 +0100\n"
    b"Message-ID: <plain.1@example.org>\n"
    b"\n"
    b"Hi Bob,\n"
    b"\n"
    b"shall we meet for lunch on Friday? The usual place.\n"
    b"Soup of the day is pumpkin.\n"
    b"\n"
    b"Alice\n"
)

#: multipart/alternative: quoted-printable text and HTML.
ALTERNATIVE = (
    b"From: Dave <dave@example.com>\n"
    b"To: bob@localhost\n"
    b"Subject: Quarterly report\n"
    b"Date: Tue, 10 Nov 2026 14:30:00 +0000\n"
    b"Message-ID: <alt.2@example.com>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/alternative; boundary=\"ALT-b1\"\n"
    b"\n"
    b"This is a multi-part message in MIME format.\n"
    b"\n"
    b"--ALT-b1\n"
    b"Content-Type: text/plain; charset=\"utf-8\"\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n"
    b"The figures are in: revenue up 12 per cent, costs =E2=80=93 flat.\n"
    b"A soft line break=\n"
    b" joins these.\n"
    b"\n"
    b"--ALT-b1\n"
    b"Content-Type: text/html; charset=\"utf-8\"\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n"
    b"<html><body><p>The figures are in: <b>revenue</b> up 12 per cent.</p></body></html>\n"
    b"\n"
    b"--ALT-b1--\n"
)

#: multipart/mixed: text and a base64 PDF attachment with a file name.
ATTACHMENT = (
    b"From: erin@example.org\n"
    b"To: Bob <bob@localhost>, frank@example.org\n"
    b"Subject: Contract draft attached\n"
    b"Date: Wed, 18 Nov 2026 08:15:00 -0500\n"
    b"Message-ID: <att.3@example.org>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"MIX-7\"\n"
    b"\n"
    b"--MIX-7\n"
    b"Content-Type: text/plain; charset=us-ascii\n"
    b"\n"
    b"Please find the contract draft attached.\n"
    b"\n"
    b"--MIX-7\n"
    b"Content-Type: application/pdf; name=\"draft.pdf\"\n"
    b"Content-Disposition: attachment; filename=\"draft.pdf\"\n"
    b"Content-Transfer-Encoding: base64\n"
    b"Content-Description: the draft\n"
    b"\n"
    b"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURl\n"
    b"Y29kZT4+CnN0cmVhbQp4nCvkcgrhMlAwMDFTMAKyjU31LBSKUrnCtRTyuAoVDACKAQjbCmVuZHN0\n"
    b"cmVhbQplbmRvYmoK\n"
    b"--MIX-7--\n"
)

#: RFC 2047 encoded words (UTF-8 base64, ISO-8859-1 quoted-printable) in
#: Subject and From, an 8-bit UTF-8 body.
ENCODED = (
    b"From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.de>\n"
    b"To: bob@localhost\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4piV?=\n"
    b"Date: Thu, 26 Nov 2026 18:45:10 +0100\n"
    b"Message-ID: <enc.4@example.de>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"Sch\xc3\xb6ne Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, wir sehen uns im Caf\xc3\xa9.\n"
)

#: A long, folded References header, a long folded Subject, Received lines;
#: a body of about 3 KiB (the largest message), lines that start with dots.
LONG = (
    b"Received: from mx.example.org (mx.example.org [192.0.2.25])\n"
    b"\tby mail.localhost with ESMTP id 4F2A1; Tue, 1 Dec 2026 07:59:58 +0000\n"
    b"Received: from [10.0.0.7] by mx.example.org; Tue, 1 Dec 2026 07:59:50 +0000\n"
    b"From: \"Mailing list\" <list@lists.example.org>\n"
    b"Reply-To: list@lists.example.org\n"
    b"Sender: owner-list@lists.example.org\n"
    b"To: Undisclosed recipients:;\n"
    b"Subject: [list] A rather long subject line that goes on and on, folded\n"
    b" over two lines of the header as long subjects are\n"
    b"Date: Tue, 01 Dec 2026 08:00:00 +0000\n"
    b"Message-ID: <long.5@lists.example.org>\n"
    b"In-Reply-To: <thread.9@lists.example.org>\n"
    b"References: " + b"\n ".join(
        b"<thread.%d@lists.example.org>" % n for n in range(1, 10)) + b"\n"
    b"List-Id: The list <list.lists.example.org>\n"
    b"\n"
    + b"".join(b"Line %02d of the digest: nothing to see here, keep scrolling down.\n" % n
               for n in range(45))
    + b".A line that starts with a dot (POP3 stuffs it).\n..And two dots.\n.\n"
)

#: A forwarded message (message/rfc822), already read, answered and
#: flagged in the file (Status: and X-Status:, as mutt and Dovecot write).
FORWARD = (
    b"From: bob@localhost\n"
    b"To: alice@example.org\n"
    b"Subject: Fwd: Lunch on Friday\n"
    b"Date: Fri, 04 Dec 2026 12:00:00 +0000\n"
    b"Message-ID: <fwd.6@localhost>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"FWD\"\n"
    b"Status: RO\n"
    b"X-Status: AF\n"
    b"\n"
    b"--FWD\n"
    b"Content-Type: text/plain\n"
    b"\n"
    b"See below.\n"
    b"--FWD\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    + PLAIN +
    b"--FWD--\n"
)

#: The messages, in INBOX order, with their mbox "From " lines (arrival
#: times: INTERNALDATE).
MESSAGES = [
    (b"alice@example.org Mon Nov  2 08:00:05 2026", PLAIN),
    (b"dave@example.com Tue Nov 10 14:30:02 2026", ALTERNATIVE),
    (b"erin@example.org Wed Nov 18 13:15:09 2026", ATTACHMENT),
    (b"joerg@example.de Thu Nov 26 17:45:12 2026", ENCODED),
    (b"list@lists.example.org Tue Dec  1 07:59:59 2026", LONG),
    (b"bob@localhost Fri Dec  4 12:00:01 2026", FORWARD),
]


def mbox():
    """
    The INBOX file both servers get.
    """
    return b"".join(_message(fromLine, text) for fromLine, text in MESSAGES)


# -- the two servers


class ServerPair:
    """
    One Dovecot and one simplemail (IMAP and POP3 doors on a spool), with a
    user for each test of a class, each holding L{mbox}. Started by the
    first test of the class that needs it; closed after its last test (or at
    exit, when only some of its tests ran).
    """

    def __init__(self, users, mailboxes=None):
        self.users = users
        self.mailboxes = mailboxes or {}
        self.done = 0
        self.root = tempfile.mkdtemp(prefix="simplemail-differential-")
        # Dovecot's processes (users dovecot and nobody) read below it.
        os.chmod(self.root, 0o755)
        self.dovecot = self.simplemail = None
        atexit.register(self.close)

    def start(self):
        common = mbox()
        self.dovecot = DovecotServer(os.path.join(self.root, "dovecot"))
        spool = os.path.join(self.root, "spool")
        os.makedirs(spool)
        for user in self.users:
            mail = self.mailboxes.get(user, common)
            self.dovecot.addUser(user, mail)
            with open(os.path.join(spool, user), "wb") as f:
                f.write(mail)
        self.dovecot.start()
        imapPort, pop3Port = freePort(), freePort()
        self.simplemail = ServerProcess(spool, [
            "--imap", "tcp:{}:interface=127.0.0.1".format(imapPort),
            "--pop3", "tcp:{}:interface=127.0.0.1".format(pop3Port)])
        self.simplemail.start()
        self.simplemail.imapPort = imapPort
        self.simplemail.pop3Port = pop3Port

    def finished(self):
        self.done += 1
        if self.done >= len(self.users):
            self.close()

    def close(self):
        try:
            if self.simplemail is not None:
                self.simplemail.close()
        finally:
            self.simplemail = None
            try:
                if self.dovecot is not None:
                    self.dovecot.close()
            finally:
                self.dovecot = None
                shutil.rmtree(self.root, ignore_errors=True)


class PairMixin:
    """
    For a test case: C{self.pair}, the class's L{ServerPair}, and
    C{self.user}, this test's user, whose INBOX is L{mbox} unless
    C{mailboxes} names the test. The simplemail log must stay free of
    tracebacks.
    """

    pair = None
    mailboxes = {}

    def setUp(self):
        needDovecot()
        cls = type(self)
        if cls.pair is None or cls.pair.simplemail is None:
            tests = sorted(n for n in dir(cls) if n.startswith("test_"))
            cls.pair = ServerPair([userFor(n) for n in tests], {
                userFor(n): mail for n, mail in cls.mailboxes.items()})
            try:
                cls.pair.start()
            except BaseException:
                cls.pair.close()
                raise
        self.pair = cls.pair
        self.user = userFor(self._testMethodName)
        self.addCleanup(cls.pair.finished)
        self.addCleanup(self.assertCleanLog, self.pair.simplemail)

    def assertCleanLog(self, server):
        log = server.log()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)


def userFor(testName):
    """
    The user of test C{testName}: its name, lower case (a valid user id of
    both servers).
    """
    return testName.lower()[:64]


# -- clients that keep every byte


class Connection:
    """
    A blocking socket with a buffer: lines and counted bytes, each read
    bounded by L{TIMEOUT}.
    """

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        if time.monotonic() > deadline:
            raise AssertionError("no answer within {}s; got {!r}".format(TIMEOUT, self.buf))
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("connection closed; got {!r}".format(self.buf))
        self.buf += data

    def line(self):
        """
        One line, with its CRLF.
        """
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        end = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:end], self.buf[end:]
        return line

    def bytes(self, n):
        deadline = time.monotonic() + TIMEOUT
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def closed(self, timeout=TIMEOUT):
        """
        Whether the peer closes the connection within C{timeout} seconds,
        with nothing more to say.
        """
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        finally:
            self.sock.settimeout(TIMEOUT)
        return not data and not self.buf


class IMAPClient(Connection):
    """
    Commands in, whole answers out: every untagged response (its literals
    inline, as C{{n}}CRLF and the bytes), then the tagged one.
    """

    def __init__(self, port):
        Connection.__init__(self, port)
        self.greeting = self.response()
        self.tags = 0

    def response(self):
        """
        One response, literals included.
        """
        data = self.line()
        while data.endswith(b"}\r\n") and b"{" in data:
            size = data[data.rindex(b"{") + 1:-3]
            if not size.isdigit():
                break
            data += self.bytes(int(size))
            data += self.line()
        return data

    def command(self, line, literals=()):
        """
        Send C{line} (each C{{n}} in it followed by one of C{literals},
        sent after the server's continuation) and return every response up
        to the tagged one.
        """
        self.tags += 1
        tag = b"t%d" % self.tags
        pieces = line.split(b"\0")
        self.send(tag + b" " + pieces[0])
        answers = []
        for literal, rest in zip(literals, pieces[1:]):
            self.send(b"{%d}\r\n" % len(literal))
            answer = self.response()
            if not answer.startswith(b"+"):
                answers.append(answer)
                return answers
            self.send(literal + rest)
        self.send(b"\r\n")
        while True:
            answer = self.response()
            answers.append(answer)
            if answer.startswith(tag + b" "):
                return answers

    def login(self, user, password=b"secret"):
        answer = self.command(b"LOGIN " + user.encode() + b" " + password)
        assert answer[-1].split()[1] == b"OK", answer


class POP3Client(Connection):
    """
    POP3 commands in, the status line and (when asked) the data lines out.
    """

    def __init__(self, port):
        Connection.__init__(self, port)
        self.greeting = self.line()

    def command(self, line, multiline=False):
        """
        C{(status line, data lines or None)}; data lines are read only when
        C{multiline} and the status is C{+OK}; they keep their CRLF and
        their dot-stuffing, and exclude the final C{.}.
        """
        self.send(line + b"\r\n")
        status = self.line()
        if not (multiline and status.startswith(b"+OK")):
            return status, None
        lines = []
        while True:
            line = self.line()
            if line == b".\r\n":
                return status, lines
            lines.append(line)


# -- reading IMAP answers


class Atom(str):
    """
    An IMAP atom (a number, a flag, a keyword), apart from a string.
    """

    def __repr__(self):
        return str(self)


def tokens(data):
    """
    The tokens of one IMAP response (or a part of one): L{int}s for
    numbers, L{Atom}s, L{bytes} for strings (quoted or literal: the same value), L{None} for C{NIL},
    L{tuple}s for parenthesised lists. An atom keeps a section in brackets
    (C{BODY[HEADER.FIELDS (FROM)]<0>}) whole.
    """
    result, pos = _tokens(data, 0, False)
    return result


def _tokens(data, pos, nested):
    found = []
    while pos < len(data):
        c = data[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif c == b"(":
            inner, pos = _tokens(data, pos + 1, True)
            found.append(tuple(inner))
        elif c == b")":
            if not nested:
                raise ValueError("unbalanced ) in {!r}".format(data))
            return found, pos + 1
        elif c == b'"':
            value = bytearray()
            pos += 1
            while data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\":
                    pos += 1
                if pos >= len(data):
                    raise ValueError("unterminated string in {!r}".format(data))
                value += data[pos:pos + 1]
                pos += 1
            found.append(bytes(value))
            pos += 1
        elif c == b"{":
            end = data.index(b"}\r\n", pos)
            size = int(data[pos + 1:end])
            found.append(data[end + 3:end + 3 + size])
            pos = end + 3 + size
        else:
            start = pos
            depth = 0
            while pos < len(data):
                c = data[pos:pos + 1]
                if c == b"[":
                    depth += 1
                elif c == b"]":
                    depth -= 1
                elif depth == 0 and c in (b" ", b"(", b")", b"\r", b"\n"):
                    break
                pos += 1
            atom = data[start:pos].decode("latin-1")
            if atom.isdigit():
                found.append(int(atom))
            else:
                found.append(None if atom.upper() == "NIL" else Atom(atom))
    if nested:
        raise ValueError("unbalanced ( in {!r}".format(data))
    return found, pos


# -- comparing IMAP answers

STATUS = {"OK", "NO", "BAD", "BYE", "PREAUTH"}


def listOrder(values):
    """
    LIST and LSUB answers in name order (RFC 3501 gives them none).
    """
    lists = sorted((v for v in values if v[:2] in (("*", "LIST"), ("*", "LSUB"))),
                   key=lambda v: v[4])
    if not lists:
        return values
    rest = [v for v in values if v[:2] not in (("*", "LIST"), ("*", "LSUB"))]
    return lists + rest


def expunged(values):
    """
    A run of C{EXPUNGE} responses as the set of sequence numbers (before
    the run) it removes: C{* 2 EXPUNGE * 2 EXPUNGE} and C{* 3 EXPUNGE * 2
    EXPUNGE} say the same.
    """
    out = []
    for value in values:
        if value[2:] != ("EXPUNGE",):
            out.append(value)
            continue
        if not (out and out[-1][:2] == ("*", "EXPUNGED")):
            out.append(("*", "EXPUNGED", ()))
        removed = list(out[-1][2])
        n, number = int(value[1]), 0
        while n:
            number += 1
            if number not in removed:
                n -= 1
        out[-1] = ("*", "EXPUNGED", tuple(sorted(removed + [number])))
    return out


def _code(code):
    """
    A response code's tokens, with what legitimately differs taken out.
    """
    words = tokens(code)
    name = words[0].upper() if words else ""
    if name == "CAPABILITY":
        return ("CAPABILITY",)
    if name in ("UIDVALIDITY", "APPENDUID", "COPYUID"):
        # The UIDVALIDITY value is each server's own.
        return (name, "v") + tuple(words[2:])
    if name == "PERMANENTFLAGS":
        return (name, tuple(sorted(words[1])))
    return tuple(words)


def readResponse(answer):
    """
    One IMAP response as a comparable value: what legitimately differs
    between servers taken out (the human text, UIDVALIDITY values,
    capability lists, the order of FETCH items and of flags, how a string
    is sent, the case of BODYSTRUCTURE's names).
    """
    if answer.startswith(b"+"):
        return ("+",)
    tag, rest = answer.split(b" ", 1)
    tag = "*" if tag == b"*" else "tagged"
    word = rest.split(b" ", 1)[0].rstrip(b"\r\n").decode("latin-1").upper()
    if word in STATUS:
        # The human text after the status and its code is each server's own.
        code = re.match(rb"\w+ ?(\[[^\]]*\])?", rest).group(1)
        return (tag, word, _code(code[1:-1]) if code else None)
    words = tokens(rest)
    if len(words) >= 2 and str(words[1]).upper() in ("EXISTS", "RECENT", "EXPUNGE"):
        return ("*", words[0], str(words[1]).upper())
    if len(words) == 3 and str(words[1]).upper() == "FETCH":
        return ("*", words[0], "FETCH", _fetchItems(words[2]))
    name = str(words[0]).upper()
    if name == "CAPABILITY":
        return ("*", "CAPABILITY")
    if name == "FLAGS":
        return ("*", "FLAGS", tuple(sorted(words[1])))
    if name in ("LIST", "LSUB"):
        # A folder name may be an atom or a string: the same name.
        return ("*", name, tuple(sorted(words[1])), words[2], _string(words[3]))
    if name == "STATUS":
        items = words[2]
        pairs = [(str(items[i]).upper(), items[i + 1]) for i in range(0, len(items), 2)]
        return ("*", "STATUS", _string(words[1]), tuple(sorted(
            (n, "v" if n == "UIDVALIDITY" else v) for n, v in pairs)))
    return ("*",) + tuple(words)


def _string(value):
    return value.encode("latin-1") if isinstance(value, Atom) else value


def _fetchItems(items):
    """
    A FETCH response's items, in a fixed order (RFC 3501 gives them none),
    flag lists sorted, BODY and BODYSTRUCTURE with their case-insensitive
    names in lower case.
    """
    pairs = []
    for i in range(0, len(items), 2):
        name, value = str(items[i]).upper(), items[i + 1]
        if name == "FLAGS":
            value = tuple(sorted(value))
        elif name in ("BODY", "BODYSTRUCTURE"):
            value = _structure(value)
        pairs.append((name, value))
    return tuple(sorted(pairs))


def _lower(value):
    return value.lower() if isinstance(value, bytes) else value


def _parameters(value):
    if not isinstance(value, tuple):
        return value
    return tuple(_lower(v) if i % 2 == 0 else v for i, v in enumerate(value))


def _disposition(value):
    if not isinstance(value, tuple) or len(value) != 2:
        return value
    return (_lower(value[0]), _parameters(value[1]))


def _structure(value):
    """
    A BODY or BODYSTRUCTURE with media types, subtypes, encodings,
    disposition types and parameter names (case-insensitive: RFC 2045,
    2183) in lower case: Dovecot sends them as the message has them,
    simplemail in upper case, as RFC 3501's examples do.
    """
    if not isinstance(value, tuple) or not value:
        return value
    if isinstance(value[0], tuple):
        n = 0
        while n < len(value) and isinstance(value[n], tuple):
            n += 1
        rest = list(value[n:])
        for i, fix in enumerate([_lower, _parameters, _disposition]):
            if i < len(rest):
                rest[i] = fix(rest[i])
        return tuple(_structure(part) for part in value[:n]) + tuple(rest)
    out = list(value)
    for i, fix in ((0, _lower), (1, _lower), (2, _parameters), (5, _lower)):
        if i < len(out):
            out[i] = fix(out[i])
    extension = 7
    if out[:2] == [b"message", b"rfc822"] and len(out) > 8:
        out[8] = _structure(out[8])
        extension = 10
    elif out[:1] == [b"text"]:
        extension = 8
    if len(out) > extension + 1:
        out[extension + 1] = _disposition(out[extension + 1])
    return tuple(out)
