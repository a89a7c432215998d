# -*- test-case-name: tests.test_server_folders -*-
"""
The folder extension of the line protocol (CAPA C{FOLDERS};
docs/protocol.rst, "Folders and flags"): C{LSTF}, C{FOLDER <folder>},
C{LSTMF}, C{FLAG}/C{UNFLAG <id> <flag>...} and C{MOVE <id> <folder>}.

A client that sends none of them works on INBOX exactly as before.  After
C{FOLDER <folder>}, C{LSTM}, C{LSTMF}, C{READM}, C{READM <id>}, C{DELM},
C{FLAG}, C{UNFLAG} and C{MOVE} work on that folder (a cursor of its own,
following UIDs); C{FOLDER INBOX} goes back to the INBOX session and its
cursor, as it was.
"""

import re

from twisted.internet import defer
from twisted.logger import Logger

from twisted_mail import errors, wire
from twisted_mail.doors.seen import SeenMarks
from twisted_mail.mail.model import INBOX, checkFlags, normalizeFolderName

log = Logger()

#: What a stable message id looks like (anything else is no message).
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


class FolderCursor:
    """
    A view of one folder (not INBOX) with a cursor and a current message,
    as the line protocol's C{READM} and C{DELM} want it: the cursor is the
    UID of the message read last, so other sessions' deliveries and
    deletes never make it skip or repeat a message.

    @ivar view: the store's L{twisted_mail.interfaces.IFolder}.
    @ivar current: the id of the current message, or L{None}.
    """

    def __init__(self, view):
        self.view = view
        self.userid = view.userid
        self.folder = view.folder
        self.current = None
        self._lastUid = 0

    def _read(self, pick):
        """
        Read the first message of the folder C{pick(summary)} accepts; it
        becomes the current message and the cursor moves past it.
        """

        def listed(listing):
            for summary in listing.messages:
                if pick(summary):
                    return self.view.fetchMessage(summary.id).addCallback(read, summary)
            raise errors.NoMoreMail()

        def read(text, summary):
            self._lastUid = summary.uid
            self.current = summary.id
            return text

        return self.view.listMessages().addCallback(listed)

    def readMessage(self):
        return self._read(lambda summary: summary.uid > self._lastUid)

    def selectMessage(self, msgid):
        d = self._read(lambda summary: summary.id == msgid)

        def missing(failure):
            failure.trap(errors.NoMoreMail)
            raise errors.NoSuchMessage()

        return d.addErrback(missing)

    def deleteMessage(self):
        if self.current is None:
            return defer.fail(errors.NoCurrentMessage())

        def deleted(ids):
            if self.current not in ids:
                self.current = None
                raise errors.NoCurrentMessage()
            self.current = None

        return self.view.deleteMessages([self.current]).addCallback(deleted)

    def __getattr__(self, name):
        # listMessages, fetchMessage, setFlags, markSeen, moveMessages,
        # close: the folder view's own.
        return getattr(self.view, name)


def currentId(view):
    """
    The id of the message C{READM} just read in C{view}: a
    L{FolderCursor}'s, or the INBOX session's (L{None} if its store does
    not say).
    """
    return getattr(view, "current", None) if isinstance(view, FolderCursor) \
        else getattr(view, "currentId", None)


def _afterReads(method):
    """
    Run a command that shows or changes flags or folders once this
    connection's reads are marked C{\\Seen}, so that it sees them.
    """

    def run(self, command):
        if not self._seen:
            return method(self, command)
        return self._flushSeen().addCallback(lambda _: method(self, command))

    run.__name__ = method.__name__
    run.__doc__ = method.__doc__
    return run


def _flagWords(text, usage):
    if text is None or not text.split():
        raise errors.ProtocolError("usage: " + usage)
    return checkFlags(text.split())


def _folderName(text, usage):
    if text is None:
        raise errors.ProtocolError("usage: " + usage)
    return normalizeFolderName(text)


def listingLine(summary, flags=False):
    """
    One line of C{LSTM} (or, with C{flags}, of C{LSTMF}: a third tab and
    the flags, separated by spaces).
    """
    line = "{} {} {}\t{}\t{}".format(
        summary.id, summary.size, int(summary.arrived), wire.oneLine(summary.sender),
        wire.oneLine(summary.subject))
    if flags:
        line += "\t" + " ".join(sorted(summary.flags))
    return line.encode("utf-8", "replace")


class FolderCommands:
    """
    The C{do_} methods of the folder extension, mixed into
    L{twisted_mail.doors.line.MailServerProtocol} (which provides
    C{factory}, C{session}, C{_requireSession} and C{_peer}).

    @ivar folder: the L{FolderCursor} of the folder chosen with C{FOLDER},
        or L{None} for INBOX.
    """

    folder = None

    def _view(self):
        """
        What the mail commands work on: the chosen folder, or the INBOX
        session.
        """
        session = self._requireSession()
        return self.folder if self.folder is not None else session

    _seen = None

    def _flushSeen(self):
        """
        Hand the reads of this connection to the store now (see
        L{SeenMarks}).
        """
        if not self._seen:
            return defer.succeed(None)
        return self._seen.flush()

    def _closeFolder(self):
        """
        Leave the chosen folder (its reads marked first).
        """
        folder, self.folder = self.folder, None
        if folder is None:
            return defer.succeed(None)
        return self._flushSeen().addCallback(lambda _: folder.close())

    def _markRead(self, view):
        """
        A message was read through C{READM}: it is to be marked
        C{\\Seen}, with this connection's other reads (L{SeenMarks}); the
        reply does not wait for it.
        """
        msgid = currentId(view)
        if msgid is None:
            return
        if self._seen is None:
            self._seen = SeenMarks(self.factory.reactor)
        self._seen.add(view, msgid)

    @_afterReads
    def do_LSTF(self, command):
        session = self._requireSession()

        def listed(folders):
            lines = [
                "{} {} {} {}".format(f.total, f.unseen, f.special or "-", f.name).encode("utf-8")
                for f in folders
            ]
            return wire.formatMultiline(
                "{} folder{}".format(len(lines), "" if len(lines) == 1 else "s"), lines)

        return self.factory.store.listFolders(session.userid).addCallback(listed)

    @_afterReads
    def do_FOLDER(self, command):
        session = self._requireSession()
        name = _folderName(command.text, "FOLDER <folder>")
        if name == INBOX:
            d = self._closeFolder()
        else:
            d = self.factory.store.openFolder(session.userid, name)

            def opened(view):
                if self._lost or self.session is not session:
                    view.close()
                    raise errors.NoUserSelected()
                d = self._closeFolder()
                self.folder = FolderCursor(view)
                return d

            d.addCallback(opened)
        d.addCallback(lambda _: self.factory.store.listFolders(session.userid))

        def counted(folders):
            for f in folders:
                if f.name == name:
                    return wire.formatOK("{}: {} message{}, {} unread".format(
                        name, f.total, "" if f.total == 1 else "s", f.unseen))
            return wire.formatOK("{} selected".format(name))

        return d.addCallback(counted)

    @_afterReads
    def do_LSTMF(self, command):
        view = self._view()

        def listed(listing):
            lines = [listingLine(m, flags=True) for m in listing.messages]
            return wire.formatMultiline(
                "{} message{}".format(len(lines), "" if len(lines) == 1 else "s"), lines)

        return view.listMessages().addCallback(listed)

    @_afterReads
    def do_FLAG(self, command):
        return self._changeFlags(command, "FLAG <id> <flag>...", add=True)

    @_afterReads
    def do_UNFLAG(self, command):
        return self._changeFlags(command, "UNFLAG <id> <flag>...", add=False)

    def _changeFlags(self, command, usage, add):
        view = self._view()
        msgid = _messageId(command.args[0], view)
        flags = _flagWords(command.text, usage)
        if add:
            d = view.setFlags([msgid], add=flags)
        else:
            d = view.setFlags([msgid], remove=flags)

        def changed(summaries):
            for summary in summaries:
                if summary.id == msgid:
                    return summary
            # Nothing changed: say what it has, if it is there at all.
            return view.summary(msgid)

        def answer(summary):
            return wire.formatOK("flags: " + (" ".join(sorted(summary.flags)) or "none"))

        return d.addCallback(changed).addCallback(answer)

    @_afterReads
    def do_MOVE(self, command):
        view = self._view()
        msgid = _messageId(command.args[0], view)
        target = _folderName(command.text, "MOVE <id> <folder>")
        if target == view.folder:
            raise errors.ProtocolError("the message is in {} already".format(target))

        def moved(pairs):
            if not pairs:
                raise errors.NoSuchMessage()
            log.info("{peer} moved a message of {user} to {folder}", peer=self._peer,
                     user=view.userid, folder=target)
            return wire.formatOK("moved to {}".format(target))

        return view.moveMessages([msgid], target).addCallback(moved)


def _messageId(argument, view):
    """
    The message an argument names: an id, or C{.} for the current message
    (the one C{READM} read last, as C{DELM} takes it).
    """
    if argument == ".":
        msgid = currentId(view)
        if msgid is None:
            raise errors.NoCurrentMessage()
        return msgid
    if not MESSAGE_ID.match(argument):
        raise errors.NoSuchMessage()
    return argument
