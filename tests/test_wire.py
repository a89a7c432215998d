"""
Tests for L{twisted_mail.wire}: parsing command lines, checking user ids,
formatting and parsing replies, dot-stuffing.

The expected values come from the protocol contract (PROTOCOL.md /
docs/protocol.rst), not from running the code.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail import wire
from twisted_mail.errors import InvalidUserId, ProtocolError
from twisted_mail.wire import (
    Command,
    Reply,
    formatCommand,
    formatError,
    formatMultiline,
    formatOK,
    normalizeUserId,
    parseCommand,
    parseReplyLine,
    splitLines,
    stuff,
    unstuff,
)

#: Deterministic, modest hypothesis runs: the suite must stay fast and CI
#: must see the same examples every time.
_settings = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_ID_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_REST = _ID_FIRST + "._-"

#: User ids that follow the rules of the protocol.
validUserIds = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_ID_FIRST),
    st.text(alphabet=_ID_REST, max_size=63),
).filter(lambda u: not u.lower().endswith(".lock"))


def _decodeMultiline(data):
    """
    Read a multi-line reply as a client does: split on CRLF, take the status
    line, then data lines up to the lone C{.}, removing one leading C{.} from
    each.

    @return: (status line, data lines, bytes left after the C{.} line)
    """
    lines = data.split(b"\r\n")
    status = lines[0]
    out = []
    for index, line in enumerate(lines[1:], 1):
        if line == b".":
            rest = b"\r\n".join(lines[index + 1 :])
            return status, out, rest
        out.append(line[1:] if line.startswith(b".") else line)
    raise AssertionError("no terminating . line in {!r}".format(data))


class ParseCommandTests(SynchronousTestCase):
    """
    Tests for L{parseCommand}.
    """

    def assertProtocolError(self, line, *fragments):
        """
        Assert that C{line} is refused with a L{ProtocolError} whose text
        holds every one of C{fragments} and is a single line.
        """
        exc = self.assertRaises(ProtocolError, parseCommand, line)
        text = str(exc)
        for fragment in fragments:
            self.assertIn(fragment, text)
        self.assertNotIn("\n", text)
        self.assertNotIn("\r", text)
        return text

    def test_verbsWithoutArguments(self):
        """
        LSTU, READM, DELM, DONEU, QUIT and CAPA parse with no arguments.
        """
        for verb in ["LSTU", "READM", "DELM", "DONEU", "QUIT", "CAPA"]:
            self.assertEqual(
                parseCommand(verb.encode("ascii")), Command(verb, (), None)
            )

    def test_addu(self):
        """
        ADDU takes one user id.
        """
        self.assertEqual(parseCommand(b"ADDU bob"), Command("ADDU", ("bob",), None))

    def test_user(self):
        """
        USER takes one user id.
        """
        self.assertEqual(parseCommand(b"USER bob"), Command("USER", ("bob",), None))

    def test_sendMultiLineForm(self):
        """
        SEND with only a receiver is the multi-line form: no text.
        """
        self.assertEqual(parseCommand(b"SEND bob"), Command("SEND", ("bob",), None))

    def test_sendOneLineForm(self):
        """
        SEND with text after the receiver carries that text as the body.
        """
        self.assertEqual(
            parseCommand(b"SEND bob hello there"),
            Command("SEND", ("bob",), "hello there"),
        )

    def test_sendTextKeptExactly(self):
        """
        The one-line body is everything after the single space that follows
        the receiver id, extra spaces and trailing spaces included.
        """
        self.assertEqual(
            parseCommand(b"SEND bob   two  spaces  ").text, "  two  spaces  "
        )
        self.assertEqual(parseCommand(b"SEND bob x ").text, "x ")

    def test_sendTrailingSpacesIsMultiLine(self):
        """
        C{SEND bob} followed by nothing but spaces is the multi-line form.
        """
        self.assertEqual(parseCommand(b"SEND bob   "), Command("SEND", ("bob",), None))
        self.assertEqual(parseCommand(b"SEND bob "), Command("SEND", ("bob",), None))

    def test_sendTextKeepsNonAsciiAndDots(self):
        """
        The one-line body keeps UTF-8 text and leading dots as sent.
        """
        self.assertEqual(
            parseCommand("SEND bob .caf\u00e9 \u2603".encode("utf-8")).text,
            ".caf\u00e9 \u2603",
        )

    def test_caseInsensitiveVerbs(self):
        """
        Commands are case-insensitive: C{readm}, C{Readm} and C{READM} are
        one command.
        """
        for line in [b"readm", b"Readm", b"rEaDm"]:
            self.assertEqual(parseCommand(line).verb, "READM")
        self.assertEqual(parseCommand(b"send bob hi"), Command("SEND", ("bob",), "hi"))
        self.assertEqual(parseCommand(b"user Bob"), Command("USER", ("Bob",), None))

    def test_multipleSpacesBetweenArguments(self):
        """
        Arguments may be separated by more than one space.
        """
        self.assertEqual(parseCommand(b"USER    bob"), Command("USER", ("bob",), None))
        self.assertEqual(parseCommand(b"ADDU  bob  "), Command("ADDU", ("bob",), None))
        self.assertEqual(parseCommand(b"LSTU   "), Command("LSTU", (), None))
        self.assertEqual(
            parseCommand(b"SEND    bob hi"), Command("SEND", ("bob",), "hi")
        )

    def test_tooFewArguments(self):
        """
        A command missing its argument is refused with its usage text.
        """
        for verb in [b"ADDU", b"USER", b"SEND"]:
            self.assertProtocolError(verb, "usage", verb.decode("ascii"))
            self.assertProtocolError(verb + b"   ", "usage", verb.decode("ascii"))

    def test_tooManyArguments(self):
        """
        A command given more arguments than it takes is refused with its
        usage text.
        """
        for line in [
            b"LSTU x",
            b"READM 1 2",
            b"LSTM x",
            b"SENDM bob x",
            b"DELM 1",
            b"DONEU bob",
            b"QUIT now",
            b"USER bob carol",
            b"CAPA x",
        ]:
            verb = line.split()[0].decode("ascii")
            self.assertProtocolError(line, "usage", verb)

    def test_unknownVerb(self):
        """
        A verb the protocol does not define is an unknown command.
        """
        self.assertProtocolError(b"HELO bob", "unknown command")
        self.assertProtocolError(b"READMX", "unknown command")
        self.assertProtocolError(b"Listusers", "unknown command")

    def test_nonAsciiVerbIsUnknown(self):
        """
        A verb spelt with non-ASCII letters that upper-case to an ASCII verb
        (C{\u017fend} with a long s, C{qu\u0131t} with a dotless i) is an
        unknown command, not SEND or QUIT.
        """
        self.assertProtocolError("\u017fend bob hi".encode("utf-8"), "unknown command")
        self.assertProtocolError("qu\u0131t".encode("utf-8"), "unknown command")

    def test_emptyLine(self):
        """
        An empty line, or one holding only spaces, is refused.
        """
        self.assertProtocolError(b"")
        self.assertProtocolError(b"    ")

    def test_invalidUtf8(self):
        """
        A command line that is not valid UTF-8 is refused with a readable
        reason, not a decoding traceback.
        """
        text = self.assertProtocolError(b"USER \xff\xfebob", "UTF-8")
        self.assertNotIn("Traceback", text)
        self.assertNotIn("UnicodeDecodeError", text)

    def test_tabIsNotASeparator(self):
        """
        Only spaces separate arguments: a tab makes the verb unknown.
        """
        self.assertProtocolError(b"USER\tbob", "unknown command")

    @_settings
    @given(st.binary(max_size=200))
    def test_anyBytesGiveCommandOrProtocolError(self, line):
        """
        Whatever bytes arrive, parsing gives a well-formed command or a
        protocol error, never any other exception.
        """
        try:
            command = parseCommand(line)
        except ProtocolError as e:
            self.assertNotIn("\n", str(e))
            return
        self.assertIsInstance(command, Command)
        self.assertIn(command.verb, wire.VERBS)
        for arg in command.args:
            self.assertTrue(arg)
            self.assertNotIn(" ", arg)

    @_settings
    @given(st.sampled_from(sorted(wire.VERBS)), st.text(alphabet=" abcXYZ.", max_size=20))
    def test_verbsWithNoise(self, verb, rest):
        """
        Every verb followed by any mix of words and spaces parses to that
        verb or is refused with a protocol error.
        """
        line = (verb.lower() + " " + rest).encode("utf-8")
        try:
            command = parseCommand(line)
        except ProtocolError:
            return
        self.assertEqual(command.verb, verb)


class FormatCommandRoundTripTests(SynchronousTestCase):
    """
    L{formatCommand} output is understood by L{parseCommand}.
    """

    @_settings
    @given(st.sampled_from(["LSTU", "READM", "DELM", "DONEU", "QUIT", "CAPA"]))
    def test_noArguments(self, verb):
        """
        A formatted command without arguments parses back to itself.
        """
        self.assertEqual(parseCommand(formatCommand(verb)), Command(verb, (), None))

    @_settings
    @given(st.sampled_from(["ADDU", "USER", "SEND"]), validUserIds)
    def test_oneUserId(self, verb, userid):
        """
        A formatted command with one user id parses back to itself.
        """
        self.assertEqual(
            parseCommand(formatCommand(verb, userid)), Command(verb, (userid,), None)
        )

    @_settings
    @given(
        validUserIds,
        st.text(
            alphabet=st.characters(
                blacklist_categories=("Cs",), blacklist_characters="\r\n"
            ),
            min_size=1,
            max_size=80,
        ).filter(lambda t: t.strip(" ")),
    )
    def test_sendText(self, userid, text):
        """
        A formatted one-line SEND parses back to the same receiver and the
        same text, character for character.
        """
        self.assertEqual(
            parseCommand(formatCommand("SEND", userid, text=text)),
            Command("SEND", (userid,), text),
        )

    def test_lineBreakRefused(self):
        """
        A command holding a line break cannot be formatted: it would be two
        commands on the wire.
        """
        self.assertRaises(ValueError, formatCommand, "SEND", "bob", text="a\r\nQUIT")
        self.assertRaises(ValueError, formatCommand, "SEND", "bob", text="a\nb")


class NormalizeUserIdTests(SynchronousTestCase):
    """
    Tests for L{normalizeUserId}, the rules of "User ids".
    """

    def assertInvalid(self, userid):
        """
        Assert C{userid} is refused with L{InvalidUserId} whose text is one
        printable line.
        """
        exc = self.assertRaises(InvalidUserId, normalizeUserId, userid)
        text = str(exc)
        self.assertNotIn("\n", text)
        self.assertNotIn("\x00", text)
        self.assertTrue(text.isprintable(), text)

    def test_validLowercased(self):
        """
        A valid id is returned in lower case: C{Bob} and C{bob} are one user.
        """
        self.assertEqual(normalizeUserId("Bob"), "bob")
        self.assertEqual(normalizeUserId("bob"), "bob")
        self.assertEqual(normalizeUserId("A.B_C-9"), "a.b_c-9")

    def test_sameAnswerAgain(self):
        """
        Asked again (answered from what was checked before), a valid id
        gives the same canonical form and an invalid one, or one that is
        not text, is refused again.
        """
        for _ in range(2):
            self.assertEqual(normalizeUserId("Carol.X"), "carol.x")
            self.assertInvalid("carol.lock")
            self.assertInvalid(b"carol")
            self.assertInvalid(["carol"])

    def test_shortest(self):
        """
        One letter or digit is a valid id.
        """
        self.assertEqual(normalizeUserId("a"), "a")
        self.assertEqual(normalizeUserId("7"), "7")

    def test_sixtyFourCharacters(self):
        """
        64 characters is the longest valid id.
        """
        self.assertEqual(normalizeUserId("a" * 64), "a" * 64)

    def test_sixtyFiveCharacters(self):
        """
        A 65-character id is refused.
        """
        self.assertInvalid("a" * 65)

    def test_empty(self):
        """
        The empty string is refused.
        """
        self.assertInvalid("")

    def test_dotDot(self):
        """
        C{..} and C{.} are refused (they would name directories).
        """
        self.assertInvalid("..")
        self.assertInvalid(".")

    def test_slash(self):
        """
        An id with a slash is refused.
        """
        self.assertInvalid("a/b")
        self.assertInvalid("/etc")

    def test_nul(self):
        """
        An id holding a NUL is refused.
        """
        self.assertInvalid("a\x00b")
        self.assertInvalid("\x00")

    def test_spacesAndControls(self):
        """
        Spaces, newlines and other punctuation are refused.
        """
        for userid in ["a b", "a\n", "bob\r", "a\tb", "a:b", "a@b", "a+b", "a\\b"]:
            self.assertInvalid(userid)

    def test_leadingPunctuation(self):
        """
        An id must start with a letter or digit, not C{.}, C{-} or C{_}.
        """
        for userid in [".bob", "-bob", "_bob"]:
            self.assertInvalid(userid)

    def test_punctuationInsideAndAtEnd(self):
        """
        C{.}, C{_} and C{-} are allowed after the first character.
        """
        self.assertEqual(normalizeUserId("a.-_"), "a.-_")
        self.assertEqual(normalizeUserId("a..b"), "a..b")

    def test_lockSuffix(self):
        """
        An id ending in C{.lock}, in any case, is refused (it would clash
        with a dot-lock file).
        """
        for userid in ["bob.lock", "bob.LOCK", "Bob.Lock", "a.lock"]:
            self.assertInvalid(userid)

    def test_lockNotAtEnd(self):
        """
        C{lock} elsewhere in an id is fine.
        """
        self.assertEqual(normalizeUserId("lock"), "lock")
        self.assertEqual(normalizeUserId("bob.locks"), "bob.locks")
        self.assertEqual(normalizeUserId("bob.lock1"), "bob.lock1")

    def test_nonAscii(self):
        """
        Non-ASCII ids are refused, including letters and digits that Python
        counts as alphanumeric or that case-fold to ASCII.
        """
        for userid in [
            "caf\u00e9",
            "\u00e9",
            "\u0661\u0662",  # Arabic-Indic digits
            "\uff41",  # fullwidth a
            "\u212a",  # Kelvin sign, lower-cases to k
            "\u017f",  # long s, case-folds to s
            "stra\u00dfe",
            "bob\u0131",  # dotless i
            "\u0130",  # dotted capital I
            "b\u200bob",  # zero-width space
        ]:
            self.assertInvalid(userid)

    def test_bytesRefused(self):
        """
        Only text is a user id: bytes are refused, not silently accepted.
        """
        self.assertInvalid(b"bob")

    @_settings
    @given(validUserIds)
    def test_validIdsAccepted(self, userid):
        """
        Every id following the rules is accepted and returned in lower case.
        """
        self.assertEqual(normalizeUserId(userid), userid.lower())

    @_settings
    @given(st.text(max_size=70))
    def test_anyTextFollowsTheRules(self, userid):
        """
        Any text is accepted exactly when it follows the rules of the
        protocol, and then comes back lower-cased.
        """
        follows = (
            1 <= len(userid) <= 64
            and all(c in _ID_REST for c in userid)
            and userid[0] in _ID_FIRST
            and not userid.lower().endswith(".lock")
        )
        if follows:
            self.assertEqual(normalizeUserId(userid), userid.lower())
        else:
            self.assertRaises(InvalidUserId, normalizeUserId, userid)


class ReplyTests(SynchronousTestCase):
    """
    Tests for formatting and parsing status lines.
    """

    def test_formatOK(self):
        """
        A success reply is C{+OK <text>} and CRLF.
        """
        self.assertEqual(formatOK("bob has 3 messages"), b"+OK bob has 3 messages\r\n")

    def test_formatOKWithoutText(self):
        """
        A success reply without text is C{+OK} alone.
        """
        self.assertEqual(formatOK(), b"+OK\r\n")

    def test_formatError(self):
        """
        A failure reply is C{-ERR <text>} and CRLF.
        """
        self.assertEqual(formatError("No More Mail"), b"-ERR No More Mail\r\n")

    def test_formatErrorFromException(self):
        """
        An exception's user-readable text becomes the reply text.
        """
        self.assertEqual(
            formatError(InvalidUserId("a/b")), b"-ERR invalid user id: a/b\r\n"
        )

    def test_replyIsOneLine(self):
        """
        Line breaks in reply text cannot split a reply into two lines.
        """
        for reply in [formatError("a\r\n+OK forged"), formatOK("x\ny\rz")]:
            self.assertTrue(reply.endswith(b"\r\n"))
            self.assertNotIn(b"\n", reply[:-2])
            self.assertNotIn(b"\r", reply[:-2])

    def test_utf8Text(self):
        """
        Reply text is sent as UTF-8.
        """
        self.assertEqual(formatOK("caf\u00e9"), b"+OK caf\xc3\xa9\r\n")

    def test_parseOK(self):
        """
        C{+OK <text>} parses to a success with its text.
        """
        self.assertEqual(
            parseReplyLine(b"+OK bob has 3 messages"), Reply(True, "bob has 3 messages")
        )
        self.assertEqual(parseReplyLine(b"+OK"), Reply(True, ""))

    def test_parseError(self):
        """
        C{-ERR <text>} parses to a failure with its text.
        """
        self.assertEqual(parseReplyLine(b"-ERR No More Mail"), Reply(False, "No More Mail"))
        self.assertEqual(parseReplyLine(b"-ERR"), Reply(False, ""))

    def test_parseGarbage(self):
        """
        A line that is neither C{+OK} nor C{-ERR} is a protocol error.
        """
        for line in [b"", b"+OKAY", b"-ERROR x", b"OK", b" +OK x", b"hello"]:
            self.assertRaises(ProtocolError, parseReplyLine, line)

    def test_parseInvalidUtf8(self):
        """
        A reply with bytes that are not UTF-8 still parses, without an
        exception.
        """
        reply = parseReplyLine(b"-ERR bad \xff")
        self.assertFalse(reply.ok)
        self.assertTrue(reply.text.startswith("bad "))

    @_settings
    @given(
        st.booleans(),
        st.text(
            alphabet=st.characters(
                blacklist_categories=("Cs",), blacklist_characters="\r\n"
            ),
            max_size=40,
        ),
    )
    def test_formatThenParse(self, ok, text):
        """
        A formatted reply line parses back to its status and text.
        """
        line = (formatOK if ok else formatError)(text)
        self.assertTrue(line.endswith(b"\r\n"))
        self.assertEqual(parseReplyLine(line[:-2]), Reply(ok, text))


class StuffingTests(SynchronousTestCase):
    """
    Tests for dot-stuffing data lines.
    """

    def test_stuffLeadingDot(self):
        """
        A data line starting with C{.} is sent with one more C{.} in front.
        """
        self.assertEqual(stuff(b"."), b"..")
        self.assertEqual(stuff(b".x"), b"..x")
        self.assertEqual(stuff(b"..x"), b"...x")

    def test_stuffOtherLines(self):
        """
        Other data lines are sent as they are.
        """
        for line in [b"", b"x.", b" .x", b"hello", b"\xff."]:
            self.assertEqual(stuff(line), line)

    def test_unstuff(self):
        """
        The reader removes one leading C{.}.
        """
        self.assertEqual(unstuff(b".."), b".")
        self.assertEqual(unstuff(b"...x"), b"..x")
        self.assertEqual(unstuff(b"x"), b"x")
        self.assertEqual(unstuff(b""), b"")

    @_settings
    @given(st.binary(max_size=50))
    def test_roundTrip(self, line):
        """
        Any data line survives stuffing and unstuffing unchanged.
        """
        self.assertEqual(unstuff(stuff(line)), line)

    @_settings
    @given(st.binary(max_size=50))
    def test_stuffedNeverTerminator(self, line):
        """
        No stuffed data line can be mistaken for the terminating C{.} line.
        """
        self.assertNotEqual(stuff(line), b".")


class MultilineTests(SynchronousTestCase):
    """
    Tests for L{formatMultiline} and L{splitLines}.
    """

    def test_format(self):
        """
        A multi-line reply is C{+OK <text>}, the stuffed data lines and a
        C{.} line, all ending in CRLF.
        """
        self.assertEqual(
            formatMultiline("2 users", [b"alice", b".hidden", b"", b"."]),
            b"+OK 2 users\r\nalice\r\n..hidden\r\n\r\n..\r\n.\r\n",
        )

    def test_formatNoLines(self):
        """
        A multi-line reply with no data lines is the status line and the
        C{.} line.
        """
        self.assertEqual(formatMultiline("0 users", []), b"+OK 0 users\r\n.\r\n")

    def test_splitLinesEndings(self):
        """
        Messages split on CRLF and LF alike; a final line ending does not
        make an extra empty line.
        """
        self.assertEqual(splitLines(b"a\r\nb\nc"), [b"a", b"b", b"c"])
        self.assertEqual(splitLines(b"a\nb\n"), [b"a", b"b"])
        self.assertEqual(splitLines(b"a\r\n"), [b"a"])
        self.assertEqual(splitLines(b"a\n\n"), [b"a", b""])
        self.assertEqual(splitLines(b""), [])

    def test_splitLinesKeepsLoneCR(self):
        """
        A carriage return not followed by a line feed is data.
        """
        self.assertEqual(splitLines(b"a\rb\n"), [b"a\rb"])

    @_settings
    @given(st.lists(st.binary(max_size=20).filter(lambda l: b"\n" not in l), max_size=8))
    def test_linesRoundTrip(self, lines):
        """
        Any data lines sent in a multi-line reply are what a client reads
        back after unstuffing.
        """
        status, got, rest = _decodeMultiline(formatMultiline("data", lines))
        self.assertEqual(status, b"+OK data")
        self.assertEqual(got, lines)
        self.assertEqual(rest, b"")

    @_settings
    @given(st.binary(max_size=120))
    def test_messageRoundTrip(self, data):
        """
        A message sent as a multi-line reply reads back, after unstuffing,
        as its lines with CRLF and LF endings taken as line endings.
        """
        status, got, rest = _decodeMultiline(formatMultiline("m", splitLines(data)))
        self.assertEqual(rest, b"")
        normalised = data.replace(b"\r\n", b"\n")
        if normalised:
            expected = normalised.split(b"\n")
            if normalised.endswith(b"\n"):
                expected.pop()
        else:
            expected = []
        self.assertEqual(got, expected)


class MessageChunksTests(SynchronousTestCase):
    """
    Sending a large message a piece at a time (messageChunks and
    formatMessageLines) gives the bytes of formatMessageReply.
    """

    @_settings
    @given(
        st.lists(st.sampled_from([b"\n", b"\r\n", b".", b"..", b"\r", b"x", b"From "]),
                 max_size=40).map(b"".join),
        st.integers(min_value=1, max_value=12),
    )
    def test_piecesMakeTheWhole(self, message, size):
        """
        However small the pieces, their formatted concatenation is the
        message formatted whole, and the pieces make the message.
        """
        pieces = list(wire.messageChunks(message, size))
        self.assertEqual(b"".join(pieces), message)
        self.assertEqual(
            wire.formatOK("m") + b"".join(wire.formatMessageLines(p) for p in pieces)
            + b".\r\n",
            wire.formatMessageReply("m", message),
        )

    def test_piecesEndAtLines(self):
        """
        Pieces end at line ends, near the size asked for; a line longer than
        that is one piece.
        """
        message = b"a" * 10 + b"\n" + b"b\n" * 10 + b"c" * 3
        self.assertEqual(
            list(wire.messageChunks(message, 6)),
            [b"a" * 10 + b"\n", b"b\nb\nb\n", b"b\nb\nb\n", b"b\nb\nb\n", b"b\n", b"ccc"],
        )
