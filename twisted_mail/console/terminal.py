# -*- test-case-name: tests.test_terminal -*-
"""
Line editing for the console on a terminal: Conch's
L{HistoricRecvLine} over an L{insults.ServerProtocol} on standard I/O, with
the terminal in raw mode (restored on every way out).

Only the console's terminal session uses this module; piped input never
goes near it, so scripts see no escape sequence.

The pieces, from the outside in:
  - L{RawMode} puts the terminal in raw mode and restores it (idempotent);
  - L{TerminalSession} is the protocol L{StandardIO} talks to: it holds
    keystrokes while the console waits for the server, feeds them to the
    insults parser one at a time otherwise, and gives the console a
    transport (L{_ConsoleTransport}) whose output is drawn around the line
    being edited;
  - L{LineEditor} edits one line at a time and keeps the history.
"""

import os
import re

from zope.interface import implementer

from twisted.conch.insults import insults
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol


#: What the console can ask for a line: C{COMMAND} lines go to the history
#: and complete with Tab; C{TEXT} lines (a message, a subject, an answer)
#: do neither; C{SECRET} lines (a password) are not even shown.
COMMAND, TEXT, SECRET = "command", "text", "secret"

#: A Tab in a text line is kept, and shown as one space: each character of
#: the line takes one column.
_TAB_SHOWN = {b"\t": b" "}

_WORD_END = re.compile(r"\S+\s*$")


def _utf8Length(lead):
    """
    The length of the UTF-8 sequence that starts with byte C{lead}, or 0
    if it cannot start one.
    """
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def terminalWidth(fd=1):
    """
    The width of the terminal on C{fd} in columns (80 if it cannot be told).
    """
    try:
        columns = os.get_terminal_size(fd).columns
    except OSError:
        columns = 0
    return columns if columns > 1 else 80


class LineEditor(HistoricRecvLine):
    """
    Edits a line on the terminal: Left/Right (Ctrl-B/F), Home/End
    (Ctrl-A/E), Backspace/Delete, Ctrl-K/U/W, Up/Down (Ctrl-P/N) through
    the history of commands, Tab completion, Ctrl-C clearing the line and
    Ctrl-D (on an empty line) ending the input.

    Every change is drawn again from the start of the line, so a line
    longer than the terminal is wide is edited correctly too; typing at
    the end of the line only writes the character.

    @ivar lineBuffer: the line, a L{list} of characters as UTF-8 L{bytes}.
    @ivar historyLines: the commands typed, oldest first (never a password
        or a line of a message).
    """

    #: Commands kept in the history.
    HISTORY_SIZE = 500

    def __init__(self, lineReceived, inputEnded, complete=None, width=terminalWidth):
        """
        @param lineReceived: called with each line typed (L{bytes}, UTF-8,
            without its line end).
        @param inputEnded: called when Ctrl-D is typed on an empty line.
        @param complete: called with the text before the cursor (L{str})
            of a command line when Tab is typed; returns the L{list} of the
            words that could complete the last one (each whole).
        @param width: returns the terminal's width in columns.
        """
        self._lineReceived = lineReceived
        self._inputEnded = inputEnded
        self._complete = complete
        self._width = width
        self.prompt = b""
        self.kind = COMMAND
        self._shown = False
        self._cursorRow = 0
        self._pending = b""
        self._ended = False
        self._draft = []

    # -- set up

    def connectionMade(self):
        HistoricRecvLine.connectionMade(self)
        t = self.terminal
        self.keyHandlers.update(
            {
                b"\x01": self.handle_HOME,
                b"\x02": self.handle_LEFT,
                b"\x03": self.handle_INTERRUPT,
                b"\x04": self.handle_EOF,
                b"\x05": self.handle_END,
                b"\x06": self.handle_RIGHT,
                b"\x08": self.handle_BACKSPACE,
                b"\x0b": self.handle_KILL_END,
                b"\x0c": self.handle_REDRAW,
                b"\x0e": self.handle_DOWN,
                b"\x10": self.handle_UP,
                b"\x15": self.handle_KILL_START,
                b"\x17": self.handle_KILL_WORD,
                t.TAB: self.handle_TAB,
                t.INSERT: lambda: None,
            }
        )

    def initializeScreen(self):
        """
        Start in insert mode without touching the screen: RecvLine's own
        version resets the terminal, which clears the user's screen, and
        sets the terminal's insert mode, which would outlive us.
        """
        self.mode = "insert"

    # -- what the console asks

    def setPrompt(self, prompt, kind=COMMAND):
        """
        Show C{prompt} (L{str}) and edit a line of C{kind} after it, keeping
        what was typed ahead.
        """
        self.prompt = prompt.encode("utf-8")
        self.kind = kind
        self.historyPosition = len(self.historyLines)
        self._draw()

    def showOutput(self, data):
        """
        Write output (L{bytes}, LF line ends) above the line being edited:
        the line is left as it is and drawn again after the output.
        """
        if not data:
            return
        wasShown = self._shown
        if wasShown:
            self._endLine()
        self.terminal.write(data)
        if wasShown and not data.endswith(b"\n"):
            self.terminal.write(b"\n")
        if wasShown:
            self._draw()

    def finish(self):
        """
        Input is over: take away the line being edited (if one is shown),
        leaving the cursor at the start of an empty row.
        """
        if self._shown and not self._ended:
            # Nothing more will be typed on it: take the line away (what
            # was typed is already on the screen above any last output).
            if self._cursorRow:
                self.terminal.cursorUp(self._cursorRow)
            self.terminal.write(b"\r")
            self.terminal.eraseToDisplayEnd()
        self._ended = True
        self._shown = False
        self._cursorRow = 0

    # -- keys

    def keystrokeReceived(self, keyID, modifier):
        if self._ended:
            return
        if not self._shown:
            self._draw()
        if modifier is not None:
            return  # Alt-<key>: nothing is bound to it.
        if isinstance(keyID, bytes) and len(keyID) == 1 and keyID >= b"\x80":
            self._utf8Byte(keyID)
            return
        self._pending = b""
        handler = self.keyHandlers.get(keyID)
        if handler is not None:
            handler()
        elif isinstance(keyID, bytes) and b" " <= keyID < b"\x7f":
            self.characterReceived(keyID, False)

    def _utf8Byte(self, byte):
        self._pending += byte
        expected = _utf8Length(self._pending[0])
        if expected < 2:
            self._pending = b""
            return
        if len(self._pending) < expected:
            return
        character, self._pending = self._pending, b""
        try:
            character.decode("utf-8")
        except UnicodeDecodeError:
            return
        self.characterReceived(character, False)

    def unhandledControlSequence(self, seq):
        # Keypads in application mode send ESC O <letter>.
        t = self.terminal
        keys = {
            b"\x1b[OA": t.UP_ARROW,
            b"\x1b[OB": t.DOWN_ARROW,
            b"\x1b[OC": t.RIGHT_ARROW,
            b"\x1b[OD": t.LEFT_ARROW,
            b"\x1b[OH": t.HOME,
            b"\x1b[OF": t.END,
            b"\x1b[7~": t.HOME,
            b"\x1b[8~": t.END,
        }
        key = keys.get(seq)
        if key is not None:
            self.keystrokeReceived(key, None)

    def characterReceived(self, ch, moreCharactersComing):
        atEnd = self.lineBufferIndex == len(self.lineBuffer)
        if self.mode == "insert" or atEnd:
            self.lineBuffer.insert(self.lineBufferIndex, ch)
        else:
            self.lineBuffer[self.lineBufferIndex] = ch
        self.lineBufferIndex += 1
        if atEnd:
            # The usual case, typing or pasting: write just the character.
            if self.kind != SECRET:
                self.terminal.write(_TAB_SHOWN.get(ch, ch))
                end = self._columns()
                if end % self._width() == 0:
                    # The cursor waits at the margin: take it to the next row.
                    self.terminal.write(b"\n")
                self._cursorRow = end // self._width()
        else:
            self._draw()

    def handle_LEFT(self):
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self._draw()

    def handle_RIGHT(self):
        if self.lineBufferIndex < len(self.lineBuffer):
            self.lineBufferIndex += 1
            self._draw()

    def handle_HOME(self):
        self.lineBufferIndex = 0
        self._draw()

    def handle_END(self):
        self.lineBufferIndex = len(self.lineBuffer)
        self._draw()

    def handle_BACKSPACE(self):
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self._draw()

    def handle_DELETE(self):
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self._draw()

    def handle_KILL_END(self):
        del self.lineBuffer[self.lineBufferIndex :]
        self._draw()

    def handle_KILL_START(self):
        del self.lineBuffer[: self.lineBufferIndex]
        self.lineBufferIndex = 0
        self._draw()

    def handle_KILL_WORD(self):
        before = b"".join(self.lineBuffer[: self.lineBufferIndex]).decode("utf-8")
        match = _WORD_END.search(before)
        if match is None:
            return
        count = len(before) - match.start()
        del self.lineBuffer[self.lineBufferIndex - count : self.lineBufferIndex]
        self.lineBufferIndex -= count
        self._draw()

    def handle_REDRAW(self):
        self._draw()

    def handle_INTERRUPT(self):
        """
        Ctrl-C: show C{^C}, forget the line, start again on the next line.
        """
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.historyPosition = len(self.historyLines)
        self._moveToEnd()
        self.terminal.write(b"^C\n")
        self._cursorRow = 0
        self._draw()

    def handle_EOF(self):
        """
        Ctrl-D: the end of input on an empty line, else delete the
        character under the cursor (as readline does).
        """
        if self.lineBuffer:
            self.handle_DELETE()
            return
        self._ended = True
        self._endLine()
        self._shown = False
        self._inputEnded()

    def handle_TAB(self):
        if self.kind != COMMAND:
            # Message text, a subject, a password: a Tab is part of it.
            self.characterReceived(b"\t", False)
            return
        if self._complete is None:
            return
        before = b"".join(self.lineBuffer[: self.lineBufferIndex]).decode("utf-8")
        word = before.rsplit(" ", 1)[-1]
        candidates = sorted(set(self._complete(before)))
        if not candidates:
            return
        common = os.path.commonprefix([c.lower() for c in candidates])
        if len(candidates) == 1:
            addition = candidates[0][len(word) :] + " "
        else:
            addition = candidates[0][len(word) : len(common)]
        if addition.strip():
            self._insert(addition)
        elif len(candidates) > 1:
            self.showOutput("  ".join(candidates).encode("utf-8") + b"\n")
        elif addition:
            self._insert(addition)

    def _insert(self, text):
        for character in text:
            self.lineBuffer.insert(self.lineBufferIndex, character.encode("utf-8"))
            self.lineBufferIndex += 1
        self._draw()

    def handle_UP(self):
        """
        The command before the one shown; the line being typed is kept
        aside (not put in the history) until Down comes back to it.
        """
        if self.kind != COMMAND or self.historyPosition == 0:
            return
        if self.historyPosition == len(self.historyLines):
            self._draft = list(self.lineBuffer)
        self.historyPosition -= 1
        self._deliverBuffer(self.historyLines[self.historyPosition])
        self.lineBufferIndex = len(self.lineBuffer)
        self._draw()

    def handle_DOWN(self):
        if self.kind != COMMAND or self.historyPosition >= len(self.historyLines):
            return
        self.historyPosition += 1
        if self.historyPosition == len(self.historyLines):
            self.lineBuffer = self._draft
        else:
            self._deliverBuffer(self.historyLines[self.historyPosition])
        self.lineBufferIndex = len(self.lineBuffer)
        self._draw()

    def _deliverBuffer(self, buf):
        # History lines are UTF-8: one list item per character.
        self.lineBuffer = [c.encode("utf-8") for c in buf.decode("utf-8")]

    def handle_RETURN(self):
        line = b"".join(self.lineBuffer)
        if (
            self.kind == COMMAND
            and line.strip()
            and (not self.historyLines or self.historyLines[-1] != line)
        ):
            self.historyLines.append(line)
            del self.historyLines[: -self.HISTORY_SIZE]
        self.historyPosition = len(self.historyLines)
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self._endLine()
        # The console shows the next prompt when it wants a line; until
        # then, text typed is for a line without a prompt.
        self._shown = False
        self.prompt = b""
        if self.kind == SECRET:
            self.kind = TEXT
        self._lineReceived(line)

    # -- drawing

    def _columns(self):
        """
        How many columns the prompt and the whole line take.
        """
        return len(self.prompt.decode("utf-8", "replace")) + self._shownLength(
            len(self.lineBuffer)
        )

    def _shownLength(self, characters):
        return 0 if self.kind == SECRET else characters

    def _draw(self):
        """
        Draw the prompt and the line from the start of the prompt's row,
        and put the cursor where it belongs.
        """
        if self._ended:
            return
        t = self.terminal
        width = self._width()
        if self._shown and self._cursorRow:
            t.cursorUp(self._cursorRow)
        t.write(b"\r")
        t.eraseToDisplayEnd()
        shown = b"" if self.kind == SECRET else b"".join(
            _TAB_SHOWN.get(ch, ch) for ch in self.lineBuffer)
        t.write(self.prompt + shown)
        end = self._columns()
        if end and end % width == 0:
            t.write(b"\n")
        target = len(self.prompt.decode("utf-8", "replace")) + self._shownLength(
            self.lineBufferIndex
        )
        up = end // width - target // width
        if up:
            t.cursorUp(up)
        if target % width != end % width:
            t.write(b"\r")
            if target % width:
                t.cursorForward(target % width)
        self._cursorRow = target // width
        self._shown = True

    def _moveToEnd(self):
        """
        Put the cursor after the end of the line shown.
        """
        if not self._shown:
            return
        if self._shownLength(self.lineBufferIndex) == self._shownLength(
            len(self.lineBuffer)
        ):
            return  # It is there already.
        width = self._width()
        end = self._columns()
        down = end // width - self._cursorRow
        if down > 0:
            self.terminal.cursorDown(down)
        self.terminal.write(b"\r")
        if end % width:
            self.terminal.cursorForward(end % width)

    def _endLine(self):
        """
        Leave the line shown as it is and go to the start of the next row.
        """
        if self._shown:
            self._moveToEnd()
            self.terminal.write(b"\n")
        self._cursorRow = 0


class _Terminal(insults.ServerProtocol):
    """
    The insults terminal on standard I/O, which never resets the terminal
    (the screen is the user's).
    """

    def loseConnection(self):
        self.transport.loseConnection()


class _ConsoleTransport:
    """
    The transport the console writes to on a terminal: output is drawn
    above the line being edited; pausing holds the keystrokes.
    """

    disconnecting = False

    def __init__(self, session):
        self._session = session

    def write(self, data):
        self._session.editor.showOutput(data)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        self.disconnecting = True
        self._session.close()

    def pauseProducing(self):
        self._session.pauseInput()

    def resumeProducing(self):
        self._session.resumeInput()

    def stopProducing(self):
        self.loseConnection()

    def getPeer(self):
        return "terminal"

    def getHost(self):
        return "terminal"


@implementer(IHalfCloseableProtocol)
class TerminalSession(Protocol):
    """
    The protocol on standard I/O when it is a terminal: keystrokes go
    through the insults parser to a L{LineEditor}, whose lines go to the
    console; the console's output is drawn around the line being edited.

    While the console is paused (a command waits for the server) the
    keystrokes are held, not echoed: they are edited after the next
    prompt, as in a shell.

    @ivar editor: the L{LineEditor}.
    @ivar console: the console protocol (a L{MailConsole}).
    """

    def __init__(self, console, rawMode=None, width=terminalWidth):
        """
        @param console: the console protocol; it gets a transport of ours.
        @param rawMode: a L{RawMode} to restore when standard I/O closes.
        """
        self.console = console
        self.rawMode = rawMode
        self.editor = LineEditor(
            self._lineTyped, self._endOfInput, self._complete, width
        )
        self._held = bytearray()
        self._paused = False
        self._feeding = False
        self._inputEnded = False
        self._endReported = False
        self._closed = False

    # -- what the console calls

    def prompt(self, text, kind=COMMAND):
        self.editor.setPrompt(text, kind)

    def echo(self, on):
        """
        Echo is the editor's business: a password is asked for with
        L{prompt}C{(text, SECRET)}.
        """

    editing = True

    def pauseInput(self):
        self._paused = True
        if self.transport is not None and len(self._held) > 65536:
            self.transport.pauseProducing()

    def resumeInput(self):
        self._paused = False
        self._feed()
        if not self._paused and self.transport is not None:
            self.transport.resumeProducing()

    def close(self):
        self.editor.finish()
        if self.transport is not None:
            self.transport.loseConnection()

    # -- standard I/O

    def connectionMade(self):
        self.terminal = _Terminal(lambda: self.editor)
        self.terminal.makeConnection(self.transport)
        self.console.makeConnection(_ConsoleTransport(self))

    def dataReceived(self, data):
        self._held += data
        self._feed()

    def readConnectionLost(self):
        self._inputEnded = True
        self._feed()

    def writeConnectionLost(self):
        self.console.writeConnectionLost()

    def connectionLost(self, reason):
        self._closed = True
        if self.rawMode is not None:
            self.rawMode.restore()
        self.console.connectionLost(reason)

    def _feed(self):
        """
        Hand the held keystrokes to the parser one byte at a time, as long
        as the console is not paused (a line typed may pause it).
        """
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._held and not self._paused and not self._endReported:
                byte = bytes(self._held[:1])
                del self._held[:1]
                self.terminal.dataReceived(byte)
            if self._inputEnded and not self._held and not self._endReported:
                self._endOfInput()
        finally:
            self._feeding = False

    # -- from the editor

    def _lineTyped(self, line):
        self.console.dataReceived(line + b"\n")

    def _endOfInput(self):
        if self._endReported:
            return
        self._endReported = True
        self.editor.finish()
        self.console.readConnectionLost()

    def _complete(self, before):
        complete = getattr(self.console, "complete", None)
        if complete is None:
            return []
        return complete(before)


class TerminalEcho:
    """
    Turns a terminal's echo off while a password is typed, and back on.
    """

    def __init__(self, fd=0):
        self.fd = fd
        self._saved = None

    def echo(self, on):
        import termios

        try:
            if not on and self._saved is None:
                self._saved = termios.tcgetattr(self.fd)
                quiet = termios.tcgetattr(self.fd)
                quiet[3] &= ~termios.ECHO
                termios.tcsetattr(self.fd, termios.TCSANOW, quiet)
            elif on and self._saved is not None:
                saved, self._saved = self._saved, None
                termios.tcsetattr(self.fd, termios.TCSANOW, saved)
        except termios.error:
            pass


class RawMode:
    """
    Puts a terminal in raw mode (no echo, no line discipline, no signals
    from keys, no output processing) and restores it.  L{restore} may be
    called any number of times, from any exit path.
    """

    def __init__(self, fd=0):
        self.fd = fd
        self._saved = None

    def enter(self):
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        # TCSANOW, not tty's default TCSAFLUSH: keep what was typed ahead.
        tty.setraw(self.fd, termios.TCSANOW)

    def restore(self):
        import termios

        saved, self._saved = self._saved, None
        if saved is None:
            return
        try:
            termios.tcsetattr(self.fd, termios.TCSANOW, saved)
        except termios.error:
            pass


def wantsEditing(fd=0, environ=None):
    """
    Whether line editing suits standard input: it is a terminal that can
    move its cursor (not C{TERM=dumb}, as in an Emacs shell buffer).
    """
    if environ is None:
        environ = os.environ
    try:
        if not os.isatty(fd) or not os.isatty(1):
            return False
    except OSError:
        return False
    return environ.get("TERM", "") not in ("", "dumb")
