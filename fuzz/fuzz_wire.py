"""
The line protocol's wire format (L{twisted_mail.wire}): C{parseCommand},
C{parseReplyLine}, the reply formatters and the escaper.

Properties:
  - C{parseCommand} gives a L{Command} whose verb is known, whose arguments
    are non-empty words, and which C{formatCommand} writes back to a line
    that parses to the same command; or a L{ProtocolError} whose C{-ERR}
    line is one well-formed line;
  - C{parseReplyLine} reads back what C{formatOK}/C{formatError} write, and
    its errors are one printable line;
  - C{escapeControls(text, keep="")} is always printable, C{oneLine} leaves
    no control character.
"""

import sys

from fuzz import harness

with harness.instrumented():
    from twisted_mail import errors, wire


def checkCommand(line):
    try:
        command = wire.parseCommand(line)
    except errors.ProtocolError as e:
        reply = wire.formatError(e)
        assert reply.endswith(b"\r\n")
        harness.checkStatusLine(reply[:-2])
        return
    assert command.verb in wire.VERBS, command
    for arg in command.args:
        assert arg and " " not in arg, command
    assert command.text is None or isinstance(command.text, str), command
    if b"\r" in line or b"\n" in line:
        return
    again = wire.formatCommand(command.verb, *command.args, text=command.text)
    assert wire.parseCommand(again) == command, (line, again, command)


def checkReply(line):
    text = line.decode("utf-8", "replace")
    for formatter, ok in ((wire.formatOK, True), (wire.formatError, False)):
        formatted = formatter(text)
        assert formatted.endswith(b"\r\n") and formatted.count(b"\n") == 1, formatted
        assert b"\r" not in formatted[:-2], formatted
        expected = text.replace("\r", " ").replace("\n", " ")
        assert wire.parseReplyLine(formatted[:-2]) == wire.Reply(ok, expected), (
            line, formatted)
    try:
        reply = wire.parseReplyLine(line)
    except errors.ProtocolError as e:
        assert harness.isOneLineText(str(e)), e
        assert str(e).isprintable(), e
    else:
        assert line.startswith(b"+OK" if reply.ok else b"-ERR"), (line, reply)


def checkEscapes(line):
    text = line.decode("utf-8", "surrogateescape")
    escaped = wire.escapeControls(text, keep="")
    assert escaped.isprintable(), (text, escaped)
    assert escaped == text or not text.isprintable(), (text, escaped)
    limited = wire.escapeControls(text, keep="", limit=40)
    assert limited.isprintable() and (len(text) <= 40 or limited.endswith("...")), limited
    assert harness.isOneLineText(wire.oneLine(text)), text
    multi = wire.escapeControls(text)
    for piece in multi.split("\n"):
        assert piece.replace("\t", " ").isprintable(), (text, multi)


def check(data):
    checkCommand(data)
    checkReply(data)
    checkEscapes(data)


if __name__ == "__main__":
    harness.main(check)
