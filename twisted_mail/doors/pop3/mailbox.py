"""
What one POP3 session sees of a mailbox, as pure values and functions: the
snapshot taken at login (numbers, sizes, unique ids, marks), message
numbers as the client gives them, and the text of C{RETR} and C{TOP}
replies.  No transport, no Twisted; L{twisted_mail.doors.pop3.server} drives it.
"""

from twisted_mail import errors, wire


def shownArgument(argument, limit=20):
    """
    A client's argument (L{bytes}) as a short one-line echo for C{-ERR}.
    """
    return wire.escapeControls(argument.decode("utf-8", "replace"), keep="", limit=limit)


def parseMessageNumber(argument):
    """
    A message number as the client gave it: 1 or more, at most 9 digits.

    @type argument: L{bytes}
    @rtype: L{int}
    @raise errors.ProtocolError: for anything else.
    """
    if not (argument.isdigit() and len(argument) <= 9 and int(argument) >= 1):
        raise errors.ProtocolError(
            "bad message number: {}".format(shownArgument(argument))
        )
    return int(argument)


def topOfMessage(text, lines):
    """
    What C{TOP} sends of a message: its header section, the empty line
    after it, and the first C{lines} lines of the body (all of it if it has
    fewer).

    @param text: the message, LF line ends.
    @rtype: L{bytes}
    """
    if text.startswith(b"\n"):
        end = 1
    else:
        separator = text.find(b"\n\n")
        if separator == -1:
            return text
        end = separator + 2
    for _ in range(lines):
        newline = text.find(b"\n", end)
        if newline == -1:
            return text
        end = newline + 1
    return text[:end]


def messageReply(head, text):
    """
    The pieces of a multi-line reply carrying a message: C{head}, the
    message's lines with CRLF ends and dot-stuffed, a piece of whole lines
    at a time (see L{wire.messageChunks}), then the C{.} line.

    @rtype: iterator of L{bytes}
    """
    yield head
    for chunk in wire.messageChunks(text):
        yield wire.formatMessageLines(chunk)
    yield b".\r\n"


class MailboxSnapshot:
    """
    The messages of a mailbox as one POP3 session sees them: numbered from
    1 as listed at login, each marked deleted or not.

    The methods named as in L{twisted.mail.pop3.IMailbox} take 0-based
    indexes as those do; L{twisted.mail.pop3.formatUIDListLines} calls
    L{getUidl} synchronously, which is why the ids are kept here.

    @ivar session: the L{IMailboxSession}.
    """

    def __init__(self, session, summaries):
        self.session = session
        self._summaries = list(summaries)
        self._marked = set()

    def __len__(self):
        return len(self._summaries)

    def summary(self, number):
        """
        The summary of message C{number} (1-based), if it is not marked.

        @raise errors.NoSuchMessage: no such number in the snapshot.
        @raise errors.ProtocolError: it is marked deleted.
        """
        if not 1 <= number <= len(self._summaries):
            raise errors.NoSuchMessage()
        if number - 1 in self._marked:
            raise errors.ProtocolError("message {} already deleted".format(number))
        return self._summaries[number - 1]

    def stat(self):
        """
        @return: the number and total size of the messages not marked.
        """
        sizes = self.listMessages()
        return len(sizes) - len(self._marked), sum(sizes)

    def listMessages(self, index=None):
        """
        The size of each message, 0 for a marked one; or of one message.
        """
        if index is None:
            return [
                0 if i in self._marked else s.size for i, s in enumerate(self._summaries)
            ]
        return self.summary(index + 1).size

    def listed(self):
        """
        C{(number, summary)} of each message not marked.
        """
        return [
            (i + 1, s) for i, s in enumerate(self._summaries) if i not in self._marked
        ]

    def isMarked(self, index):
        return index in self._marked

    def getUidl(self, index):
        return self._summaries[index].id.encode("ascii")

    def deleteMessage(self, index):
        self.summary(index + 1)
        self._marked.add(index)

    def undeleteMessages(self):
        self._marked.clear()

    def markedIds(self):
        return [self._summaries[i].id for i in sorted(self._marked)]
