# -*- test-case-name: tests.test_console_mail -*-
"""
How the console shows mail: a message as a reader wants it, a listing, a
size.  Pure functions from values to text; reading the message itself is
L{twisted_mail.mail.mime}'s business.

Every piece of text that came from a message goes through
L{escapeControls}, so mail can never drive the terminal.
"""

import time

from twisted_mail.mail import mime
from twisted_mail.wire import escapeControls

#: The headers C{Read} shows, in this order, when the message has them.
SHOWN_HEADERS = (("From", "sender"), ("To", "to"), ("Cc", "cc"),
                 ("Subject", "subject"), ("Date", "date"))


def formatSize(size):
    """
    A size for people: C{512 B}, C{1.5 KB}, C{5.0 MB}.
    """
    if size < 1024:
        return "{} B".format(size)
    for unit in ("KB", "MB", "GB"):
        size /= 1024.0
        if size < 1024 or unit == "GB":
            return "{:.1f} {}".format(size, unit)


def _clean(text):
    return escapeControls(text.replace("\r\n", "\n"))


def renderMessage(text):
    """
    A message as C{Read} shows it: the From, To, Cc, Subject and Date
    headers decoded, an empty line, the text (the HTML part as text when
    there is no plain one), then its attachments numbered with name, type
    and size, and a line for anything that could not be read well.

    @param text: the message as stored (RFC 5322 L{bytes}).
    @return: a 2-tuple of the text to show (L{str}, ending with a line end)
        and the L{mime.ParsedMessage}.
    """
    parsed = mime.parseMessage(text)
    lines = []
    for name, attribute in SHOWN_HEADERS:
        value = getattr(parsed, attribute)
        if value:
            lines.append("{}: {}".format(name, escapeControls(value)))
    out = "\n".join(lines) + "\n\n" if lines else "\n"
    body = _clean(parsed.text)
    if body and not body.endswith("\n"):
        body += "\n"
    out += body
    if parsed.parts:
        out += "\n" + "\n".join(
            "[{}] {} ({}, {})".format(
                part.part,
                escapeControls(part.filename),
                escapeControls(part.contentType),
                formatSize(part.size),
            )
            for part in parsed.parts
        ) + "\n"
    for problem in getattr(parsed, "problems", ()):
        out += "(note: {})\n".format(escapeControls(problem))
    return out, parsed


def _truncate(text, width):
    if len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "\u2026"


def renderFolders(folders):
    """
    What C{Folders} shows: each folder with its messages and unread ones.

    @param folders: L{twisted_mail.console.client.FolderLine}s.
    @rtype: L{str}
    """
    if not folders:
        return "no folders\n"
    names = [escapeControls(f.name, keep="") for f in folders]
    width = max(len(name) for name in names)
    lines = []
    for name, folder in zip(names, folders):
        line = "{}  {}, {} unread".format(
            name.ljust(width), _count(folder.total, "message"), folder.unseen)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _count(n, noun):
    return "{} {}{}".format(n, noun, "" if n == 1 else "s")


def _status(flags):
    """
    Two columns of a listing line, as mutt shows them: C{N} unread, C{!}
    flagged.
    """
    return ("N" if "\\Seen" not in flags else " ") + ("!" if "\\Flagged" in flags else " ")


def renderListing(messages, localtime=time.localtime):
    """
    The numbered summary C{List} shows: number, date, sender, subject and
    size, one message a line; where the server gave flags, two columns
    after the number mark unread (C{N}) and flagged (C{!}) messages.

    @param messages: L{twisted_mail.console.client.MessageLine}s, in mailbox order.
    @param localtime: turns POSIX seconds into a local C{struct_time}.
    @rtype: L{str}
    """
    if not messages:
        return "no messages\n"
    digits = len(str(len(messages)))
    lines = []
    for number, message in enumerate(messages, 1):
        try:
            when = time.strftime("%Y-%m-%d %H:%M", localtime(message.arrived))
        except (ValueError, OverflowError, OSError):
            when = "????-??-?? ??:??"
        sender = escapeControls(message.sender.replace("\t", " "))
        subject = escapeControls(message.subject.replace("\t", " ")) or "(no subject)"
        if message.flags is not None:
            when = _status(message.flags) + " " + when
        lines.append(
            "{:>{digits}}  {}  {}  {}  ({})".format(
                number,
                when,
                _truncate(sender, 24),
                subject,
                formatSize(message.size),
                digits=digits,
            )
        )
    return "\n".join(lines) + "\n"
