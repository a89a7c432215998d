"""
Tests for L{twisted_mail.console.terminal}: the line editor as keystrokes drive it,
the session between standard I/O and the console, and raw mode.
"""

import os
import termios

from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.console import terminal
from twisted_mail.console.terminal import SECRET, TEXT, RawMode, TerminalSession

LEFT, RIGHT, UP, DOWN = b"\x1b[D", b"\x1b[C", b"\x1b[A", b"\x1b[B"
HOME, END, DELETE = b"\x1b[H", b"\x1b[F", b"\x1b[3~"


class FakeConsole:
    """
    Stands in for L{MailConsole}: records the lines and events the session
    hands it; can pause its input after each line, as the console does
    while the server is asked.
    """

    def __init__(self, words=()):
        self.lines = []
        self.events = []
        self.pauseAfterLine = False
        self.words = list(words)

    def makeConnection(self, transport):
        self.transport = transport

    def dataReceived(self, data):
        self.lines.append(data)
        if self.pauseAfterLine:
            self.transport.pauseProducing()

    def readConnectionLost(self):
        self.events.append("eof")

    def writeConnectionLost(self):
        self.events.append("stdout gone")

    def connectionLost(self, reason):
        self.events.append("lost")

    def complete(self, before):
        last = before.split(" ")[-1]
        return [w for w in self.words if w.lower().startswith(last.lower())]


class FakeRawMode:
    def __init__(self):
        self.restored = 0

    def restore(self):
        self.restored += 1


class SessionTestsMixin:
    width = 80

    def setUp(self):
        self.console = FakeConsole(["Listusers", "List", "SetUser", "alice", "albert"])
        self.raw = FakeRawMode()
        self.session = TerminalSession(self.console, self.raw, width=lambda: self.width)
        self.stdio = StringTransport()
        self.session.makeConnection(self.stdio)
        self.editor = self.session.editor

    def type(self, data):
        self.session.dataReceived(data)

    def screen(self):
        data = self.stdio.value()
        self.stdio.clear()
        return data

    def line(self):
        return b"".join(self.editor.lineBuffer)


class EditingTests(SessionTestsMixin, SynchronousTestCase):
    def test_startLeavesScreenAlone(self):
        """
        Starting writes nothing: the screen is not cleared, the terminal
        not reset, its insert mode not changed.
        """
        self.assertEqual(self.stdio.value(), b"")

    def test_promptAndLine(self):
        """
        The prompt is drawn, typed characters are echoed, and Enter (CR or
        LF) hands the line to the console and moves to the next row.
        """
        self.session.prompt("Main-Prompt> ")
        self.assertTrue(self.screen().endswith(b"Main-Prompt> "))
        self.type(b"Listusers\r")
        self.assertEqual(self.console.lines, [b"Listusers\n"])
        self.assertEqual(self.screen(), b"Listusers\r\n")
        self.type(b"x\n")
        self.assertEqual(self.console.lines[-1], b"x\n")

    def test_leftRightInsert(self):
        """
        Left and Right (and Ctrl-B/F) move the cursor; typing inserts there.
        """
        self.type(b"Lstusers" + LEFT * 7 + b"i" + RIGHT + b"\x02\x06\x06")
        self.assertEqual(self.line(), b"Listusers")
        self.assertEqual(self.editor.lineBufferIndex, 4)

    def test_homeEnd(self):
        """
        Home/End, their other escape sequences and Ctrl-A/E jump to the
        ends of the line.
        """
        self.type(b"abc" + HOME + b"1" + END + b"2\x012\x053" + b"\x1bOH" + b"<" + b"\x1b[4~>")
        self.assertEqual(self.line(), b"<21abc23>")

    def test_backspaceDelete(self):
        """
        Backspace (DEL or Ctrl-H) removes the character before the cursor,
        Delete the one under it.
        """
        self.type(b"abcd\x7f\x08" + LEFT + DELETE + b"X")
        self.assertEqual(self.line(), b"aX")

    def test_killKeys(self):
        """
        Ctrl-K cuts to the end, Ctrl-U to the start, Ctrl-W the word before
        the cursor.
        """
        self.type(b"SetUser alice now" + LEFT * 4 + b"\x0b")
        self.assertEqual(self.line(), b"SetUser alice")
        self.type(b"\x17")
        self.assertEqual(self.line(), b"SetUser ")
        self.type(b"bob" + LEFT + b"\x15")
        self.assertEqual((self.line(), self.editor.lineBufferIndex), (b"b", 0))

    def test_ctrlC(self):
        """
        Ctrl-C shows ^C, forgets the line and gives a fresh prompt; nothing
        goes to the console.
        """
        self.session.prompt("P> ")
        self.screen()
        self.type(b"garbage\x03")
        self.assertEqual(self.line(), b"")
        self.assertEqual(self.console.lines, [])
        self.assertIn(b"^C\r\n", self.screen())

    def test_ctrlDEmpty(self):
        """
        Ctrl-D on an empty line ends the input; later keys are ignored.
        """
        self.type(b"\x04Listusers\r")
        self.assertEqual(self.console.events, ["eof"])
        self.assertEqual(self.console.lines, [])

    def test_ctrlDDeletes(self):
        """
        Ctrl-D on a line with text deletes the character under the cursor.
        """
        self.type(b"ab" + LEFT + b"\x04")
        self.assertEqual(self.line(), b"a")
        self.assertEqual(self.console.events, [])

    def test_utf8(self):
        """
        Non-ASCII characters typed (UTF-8) are one character each for
        editing and reach the console as UTF-8.
        """
        self.type("Grü".encode("utf-8") + LEFT + b"\x7f" + "ß\r".encode("utf-8"))
        self.assertEqual(self.console.lines, ["Gßü\n".encode("utf-8")])

    def test_invalidUtf8Dropped(self):
        """
        Bytes that are not UTF-8 are dropped, never passed on.
        """
        self.type(b"a\xff\xc3(b\r")
        self.assertEqual(self.console.lines, [b"a(b\n"])

    def test_controlCharactersIgnored(self):
        """
        Other control characters are not put in the line.
        """
        self.type(b"a\x07\x1a\x00b\r")
        self.assertEqual(self.console.lines, [b"ab\n"])


class HistoryTests(SessionTestsMixin, SynchronousTestCase):
    def test_upDown(self):
        """
        Up and Down (and Ctrl-P/N) walk through the commands typed; Down
        past the newest gives an empty line.
        """
        self.type(b"Listusers\rSetUser bob\r")
        self.type(UP)
        self.assertEqual(self.line(), b"SetUser bob")
        self.type(UP + UP)
        self.assertEqual(self.line(), b"Listusers")
        self.type(b"\x0e")
        self.assertEqual(self.line(), b"SetUser bob")
        self.type(DOWN)
        self.assertEqual(self.line(), b"")
        self.type(b"\x10\r")
        self.assertEqual(self.console.lines[-1], b"SetUser bob\n")

    def test_draftKeptAside(self):
        """
        What was being typed when Up was pressed comes back with Down, and
        is not put in the history.
        """
        self.type(b"Listusers\rSetU" + UP)
        self.assertEqual(self.line(), b"Listusers")
        self.type(DOWN)
        self.assertEqual(self.line(), b"SetU")
        self.assertEqual(self.editor.historyLines, [b"Listusers"])

    def test_noDuplicatesOrBlanks(self):
        """
        A command typed twice in a row is kept once; blank lines not at all.
        """
        self.type(b"Read\rRead\r   \r")
        self.assertEqual(self.editor.historyLines, [b"Read"])

    def test_secretNotKept(self):
        """
        A password is neither echoed nor kept in the history.
        """
        self.session.prompt("Password: ", SECRET)
        self.screen()
        self.type(b"hidden-pw\r")
        self.assertNotIn(b"hidden", self.screen())
        self.assertEqual(self.console.lines, [b"hidden-pw\n"])
        self.assertEqual(self.editor.historyLines, [])
        self.type(UP)
        self.assertEqual(self.line(), b"")

    def test_textNotKept(self):
        """
        Lines of a message (and other answers) are not kept, and Up does
        not recall commands into them.
        """
        self.type(b"Send bob\r")
        self.session.prompt("Type Message: ", TEXT)
        self.type(b"Dear Bob\rsecond line\r" + UP)
        self.assertEqual(self.line(), b"")
        self.assertEqual(self.editor.historyLines, [b"Send bob"])


class CompletionTests(SessionTestsMixin, SynchronousTestCase):
    def test_single(self):
        """
        Tab with one candidate completes the word and adds a space.
        """
        self.type(b"Se\t")
        self.assertEqual(self.line(), b"SetUser ")

    def test_commonPrefix(self):
        """
        Tab with several candidates completes their common part, and lists
        them when there is nothing more to add.
        """
        self.type(b"SetUser a\t")
        self.assertEqual(self.line(), b"SetUser al")
        self.screen()
        self.type(b"\t")
        self.assertIn(b"albert  alice\r\n", self.screen())
        self.assertEqual(self.line(), b"SetUser al")

    def test_tabKeptInText(self):
        """
        Tab on a message line is part of the text, not a completion: the
        console gets C{col1<Tab>col2}, and the screen shows the Tab as a
        space.
        """
        self.session.prompt("Type Message: ", TEXT)
        self.screen()
        self.type(b"col1\tcol2\r")
        self.assertEqual(self.console.lines[-1], b"col1\tcol2\n")
        self.assertIn(b"col1 col2", self.screen())

    def test_tabKeptInTextMidLine(self):
        """
        A Tab typed in the middle of a message line is inserted there, and
        the redrawn line shows it as one space.
        """
        self.session.prompt("Type Message: ", TEXT)
        self.type(b"ab\x1b[D")
        self.screen()
        self.type(b"\t\r")
        self.assertEqual(self.console.lines[-1], b"a\tb\n")


class FlowTests(SessionTestsMixin, SynchronousTestCase):
    def test_heldWhilePaused(self):
        """
        While the console waits for the server, keystrokes are held (not
        echoed); they are edited after the console resumes.
        """
        self.console.pauseAfterLine = True
        self.type(b"Listusers\rAdd")
        self.assertEqual(self.console.lines, [b"Listusers\n"])
        self.screen()
        self.type(b"user bob\r")
        self.assertEqual(self.screen(), b"")
        self.console.pauseAfterLine = False
        self.session.prompt("Main-Prompt> ")
        self.console.transport.resumeProducing()
        self.assertEqual(self.console.lines[-1], b"Adduser bob\n")
        self.assertIn(b"Main-Prompt> Adduser bob\r\n", self.screen())

    def test_outputAboveLine(self):
        """
        Output that arrives while a line is being typed is written on rows
        of its own and the prompt and line are drawn again after it.
        """
        self.session.prompt("P> ")
        self.type(b"abc")
        self.screen()
        self.console.transport.write(b"news\n")
        screen = self.screen()
        self.assertTrue(screen.startswith(b"\r\n") or b"abc\r\n" in screen or screen.startswith(b"\x1b"))
        self.assertIn(b"news\r\n", screen)
        self.assertTrue(screen.endswith(b"P> abc"), screen)

    def test_endOfStdin(self):
        """
        Standard input ending is reported to the console after the
        keystrokes held are handled.
        """
        self.console.pauseAfterLine = True
        self.type(b"one\rtwo\r")
        self.session.readConnectionLost()
        self.assertEqual(self.console.events, [])
        self.console.pauseAfterLine = False
        self.console.transport.resumeProducing()
        self.assertEqual(self.console.lines, [b"one\n", b"two\n"])
        self.assertEqual(self.console.events, ["eof"])

    def test_closeDoesNotReset(self):
        """
        Closing never resets or clears the terminal.
        """
        self.session.prompt("P> ")
        self.console.transport.loseConnection()
        self.assertTrue(self.stdio.disconnecting)
        self.assertNotIn(b"\x1bc", self.stdio.value())
        self.assertNotIn(b"\x1b[2J", self.stdio.value())

    def test_closeAfterOutput(self):
        """
        Closing after output drawn above a line being typed (the server
        went away) takes the line drawn again away: no dangling prompt.
        """
        self.session.prompt("P> ")
        self.type(b"Lis")
        self.console.transport.write(b"error: gone\n")
        self.screen()
        self.console.transport.loseConnection()
        self.assertEqual(self.screen(), b"\r\x1b[J")

    def test_connectionLostRestores(self):
        """
        When standard I/O closes, raw mode is restored, then the console is
        told.
        """
        self.session.connectionLost(Failure(Exception("closed")))
        self.assertEqual(self.raw.restored, 1)
        self.assertEqual(self.console.events, ["lost"])


class WideLineTests(SessionTestsMixin, SynchronousTestCase):
    width = 10

    def test_wrappedLine(self):
        """
        A line longer than the terminal is wide is edited correctly: moving
        back across the row boundary redraws from the prompt's row.
        """
        self.session.prompt("P> ")
        self.type(b"0123456789abc")
        self.screen()
        self.type(HOME + b"X")
        self.assertEqual(self.line(), b"X0123456789abc")
        screen = self.screen()
        # Up to the prompt's row, then the whole line again.
        self.assertIn(b"\x1b[1A", screen)
        self.assertIn(b"P> X0123456789abc", screen)


class RawModeTests(SynchronousTestCase):
    def setUp(self):
        self.master, self.slave = os.openpty()
        self.addCleanup(os.close, self.master)
        self.addCleanup(os.close, self.slave)

    def test_enterRestore(self):
        """
        Raw mode turns off echo and line editing; restore puts every
        setting back, and may be called again.
        """
        before = termios.tcgetattr(self.slave)
        raw = RawMode(self.slave)
        raw.enter()
        flags = termios.tcgetattr(self.slave)[3]
        self.assertFalse(flags & termios.ECHO)
        self.assertFalse(flags & termios.ICANON)
        raw.restore()
        raw.restore()
        self.assertEqual(termios.tcgetattr(self.slave), before)

    def test_restoreWithoutEnter(self):
        """
        Restoring what was never entered changes nothing.
        """
        before = termios.tcgetattr(self.slave)
        RawMode(self.slave).restore()
        self.assertEqual(termios.tcgetattr(self.slave), before)

    def test_restoredAfterException(self):
        """
        L{twisted_mail.console.program.run} restores the terminal even when the
        program ends with an exception.
        """
        from twisted.internet import task

        from twisted_mail.console import program

        raw = RawMode(self.slave)
        before = termios.tcgetattr(self.slave)
        self.patch(program, "_rawMode", raw)

        def react(main, argv):
            raw.enter()
            raise RuntimeError("boom")

        self.patch(task, "react", react)
        self.assertRaises(RuntimeError, program.run)
        self.assertEqual(termios.tcgetattr(self.slave), before)

    def test_wantsEditing(self):
        """
        Line editing is for a terminal that can move its cursor: not a
        pipe, not TERM=dumb.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.assertFalse(terminal.wantsEditing(r, {"TERM": "xterm"}))
        self.assertFalse(terminal.wantsEditing(self.slave, {"TERM": "dumb"}))
