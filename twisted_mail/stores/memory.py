"""
An in-memory mail store with the same contract as the spool store.

For this project's tests and for anyone testing code against
L{IMailStore}: it keeps everything in memory, answers at once (with already
fired Deferreds) and can be told to fail.  It serves the whole mailbox
model (MAILBOX.md): folders, UIDs, flags, events.
"""

import itertools
import time

from twisted.internet import defer
from zope.interface import implementer

from twisted_mail import errors
from twisted_mail.interfaces import IFolder, IMailboxSession, IMailStore
from twisted_mail.mail.message import buildMessage, normaliseBody
from twisted_mail.mail.mime import Listing, MessageSummary, parseMessage, popSize, summarize
from twisted_mail.mail.model import (
    INBOX,
    SEEN,
    SPECIAL_FOLDERS,
    FolderInfo,
    MailEvent,
    checkFlags,
    normalizeFolderName,
)
from twisted_mail.mail.query import document
from twisted_mail.wire import normalizeUserId
from twisted_mail.stores.base import (
    Listeners,
    checkDeletable,
    folderOrder,
    keywordsAfter,
    pageOf,
    receiverArgument,
    renames,
    scanSearch,
    userIdArgument,
)


def _failing(method):
    """
    Turn a L{errors.MailError} raised by C{method} into a failed Deferred.
    """
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except errors.MailError as e:
            return defer.fail(e)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class _StoredMessage:
    __slots__ = ("serial", "id", "uid", "flags", "text", "deleted", "arrived",
                 "folder", "_summary", "_document")

    def __init__(self, serial, msgid, uid, text, arrived=0, flags=frozenset(),
                 folder=INBOX):
        self.serial = serial
        self.id = msgid
        self.uid = uid
        self.text = text
        self.flags = frozenset(flags)
        self.deleted = False
        self.arrived = int(arrived)
        self.folder = folder
        self._summary = None
        self._document = None

    def summary(self):
        if self._summary is None:
            self._summary = summarize(self.text, self.id, self.arrived)
        return self._summary.replace(uid=self.uid, flags=self.flags,
                                     folder=self.folder.name)

    def document(self):
        """
        Its L{twisted_mail.mail.query.SearchDocument}, made once.
        """
        if self._document is None:
            self._document = document(parseMessage(self.text))
        return self._document


class _Folder:
    """
    One folder of one user: its messages in UID order and its UID state.
    """

    def __init__(self, name, uidValidity):
        self.name = name
        self.uidValidity = uidValidity
        self.uidNext = 1
        self.messages = []

    def info(self):
        live = [m for m in self.messages if not m.deleted]
        return FolderInfo(self.name, len(live),
                          sum(1 for m in live if SEEN not in m.flags),
                          self.uidValidity, self.uidNext)

    def keywords(self):
        found = set()
        for message in self.messages:
            if not message.deleted:
                found.update(f for f in message.flags if not f.startswith("\\"))
        return found


@implementer(IMailStore)
class MemoryStore:
    """
    An L{IMailStore} in memory.

    @ivar failNext: set to an exception to make the next C{deliver},
        C{readMessage} or C{deleteMessage} fail with it (once).
    @ivar expunged: the number of messages removed by sessions that ended.
    """

    def __init__(
        self, domain="localhost", maxMessageSize=10 * 1024 * 1024, clock=time.time
    ):
        self.domain = domain
        self.maxMessageSize = maxMessageSize
        self._clock = clock
        # userid -> {canonical folder name -> _Folder}
        self._mailboxes = {}
        self._serials = itertools.count(1)
        self._lastValidity = 0
        self.failNext = None
        self.expunged = 0
        self._listeners = Listeners()
        self._watchers = Listeners()

    def _failure(self):
        exc, self.failNext = self.failNext, None
        return exc

    def _folders(self, userid):
        userid = normalizeUserId(userid)
        try:
            return userid, self._mailboxes[userid]
        except KeyError:
            raise errors.NoSuchUser(userid)

    def _mailbox(self, userid):
        userid, folders = self._folders(userid)
        return userid, folders[INBOX].messages

    def _newFolder(self, name):
        self._lastValidity = max(self._lastValidity + 1, int(self._clock()))
        return _Folder(name, self._lastValidity)

    def _folder(self, folders, name, make=True):
        """
        The folder C{name} (canonical), making a special-use one on first
        need.
        """
        folder = folders.get(name)
        if folder is None:
            if not (make and name in SPECIAL_FOLDERS):
                raise errors.NoSuchFolder(name)
            folder = folders[name] = self._newFolder(name)
        return folder

    def listUsers(self):
        return defer.succeed(sorted(self._mailboxes))

    @userIdArgument
    def addUser(self, userid):
        if userid in self._mailboxes:
            return defer.fail(errors.UserExists(userid))
        self._mailboxes[userid] = {INBOX: self._newFolder(INBOX)}
        return defer.succeed(userid)

    @_failing
    def hasUser(self, userid):
        userid, _ = self._folders(userid)
        return defer.succeed(userid)

    @_failing
    def openMailbox(self, userid):
        userid, folders = self._folders(userid)
        return defer.succeed(_MemorySession(self, userid, folders[INBOX]))

    @receiverArgument
    def deliver(self, sender, receiver, body):
        if not isinstance(body, (bytes, bytearray)):
            body = b"".join(body)
        text = buildMessage(sender, receiver, body, self.domain, self._clock())
        return self.deliverMessage(sender, receiver, text)

    @_failing
    def deliverMessage(self, envelopeSender, receiver, message):
        receiver, folders = self._folders(receiver)
        if not isinstance(message, (bytes, bytearray)):
            message = b"".join(message)
        text = normaliseBody(message)
        if len(text) > self.maxMessageSize:
            raise errors.MessageTooLarge(self.maxMessageSize)
        failure = self._failure()
        if failure is not None:
            return defer.fail(failure)
        stored = self._add(receiver, folders[INBOX], text, self._clock())
        return defer.succeed(stored.id)

    def _add(self, userid, folder, text, arrived, flags=(), msgid=None):
        """
        Store a message at the end of C{folder} and announce it.
        """
        serial = next(self._serials)
        stored = _StoredMessage(serial, msgid or "m{}".format(serial), folder.uidNext,
                                text, arrived, flags, folder)
        folder.uidNext += 1
        folder.messages.append(stored)
        summary = stored.summary()
        if folder.name == INBOX:
            self._listeners.announce(userid, [summary])
        self._watchers.announce(userid, [MailEvent("message", folder.name, summary=summary)])
        return stored

    def subscribe(self, userid, listener):
        return self._listeners.subscribe(userid, listener)

    @_failing
    def search(self, userid, query, folder=None, start=0, limit=None):
        """
        Search by scanning the user's messages with the reference evaluator
        (L{twisted_mail.mail.query.matches}), newest first.
        """
        userid, folders = self._folders(userid)
        failure = self._failure()
        if failure is not None:
            return defer.fail(failure)
        if folder is None:
            searched = list(folders.values())
        else:
            searched = [self._folder(folders, normalizeFolderName(folder))]
        messages = [m for f in searched for m in f.messages if not m.deleted]
        messages.sort(key=lambda m: (m.arrived, m.serial), reverse=True)
        candidates = [(m.summary(), m.document) for m in messages]
        return defer.succeed(scanSearch(candidates, query, start, limit))

    def watch(self, userid, listener):
        return self._watchers.subscribe(userid, listener)

    def _folderEvent(self, userid):
        self._watchers.announce(userid, [MailEvent("folders")])

    def messages(self, userid):
        """
        The texts of the messages of C{userid} not deleted, for assertions.

        @rtype: L{list} of L{bytes}
        """
        _, messages = self._mailbox(userid)
        return [m.text for m in messages if not m.deleted]

    # -- folders

    @_failing
    def listFolders(self, userid):
        userid, folders = self._folders(userid)
        for name in SPECIAL_FOLDERS:
            self._folder(folders, name)
        return defer.succeed([folders[name].info() for name in folderOrder(folders)])

    @_failing
    def createFolder(self, userid, name):
        userid, folders = self._folders(userid)
        name = normalizeFolderName(name)
        if name in folders or name in SPECIAL_FOLDERS or name == INBOX:
            raise errors.FolderExists(name)
        folders[name] = self._newFolder(name)
        self._folderEvent(userid)
        return defer.succeed(name)

    @_failing
    def renameFolder(self, userid, name, newName):
        userid, folders = self._folders(userid)
        name, newName = normalizeFolderName(name), normalizeFolderName(newName)
        moved = renames(folders, name, newName)
        taken = {old: folders.pop(old) for old, _ in moved}
        for old, new in moved:
            folder = folders[new] = taken[old]
            folder.name = new
        self._folderEvent(userid)
        return defer.succeed(newName)

    @_failing
    def deleteFolder(self, userid, name):
        userid, folders = self._folders(userid)
        name = normalizeFolderName(name)
        checkDeletable(folders, name)
        folder = folders.pop(name)
        for message in folder.messages:
            message.deleted = True
        folder.messages = []
        self._folderEvent(userid)
        return defer.succeed(None)

    @_failing
    def openFolder(self, userid, name):
        userid, folders = self._folders(userid)
        folder = self._folder(folders, normalizeFolderName(name))
        if folder.name == INBOX:
            return defer.succeed(_MemorySession(self, userid, folder))
        return defer.succeed(_MemoryFolder(self, userid, folder))

    @_failing
    def appendMessage(self, userid, folder, message, flags=(), arrived=None):
        userid, folders = self._folders(userid)
        target = self._folder(folders, normalizeFolderName(folder))
        flags = checkFlags(flags)
        keywordsAfter(target.keywords, flags)
        text = normaliseBody(bytes(message))
        if len(text) > self.maxMessageSize:
            raise errors.MessageTooLarge(self.maxMessageSize)
        failure = self._failure()
        if failure is not None:
            return defer.fail(failure)
        when = self._clock() if arrived is None else arrived
        return defer.succeed(self._add(userid, target, text, when, flags).summary())


@implementer(IFolder)
class _MemoryFolder:
    """
    A view of one folder.
    """

    def __init__(self, store, userid, folder):
        self._store = store
        self.userid = userid
        self._folder = folder
        self._deletedHere = False

    @property
    def folder(self):
        return self._folder.name

    @property
    def uidValidity(self):
        return self._folder.uidValidity

    @property
    def _messages(self):
        return self._folder.messages

    def _live(self):
        return [m for m in self._messages if not m.deleted]

    def _byId(self, msgid):
        for message in self._messages:
            if not message.deleted and message.id == msgid:
                return message
        raise errors.NoSuchMessage()

    def _found(self, msgids):
        wanted = list(dict.fromkeys(msgids))
        live = {m.id: m for m in self._live()}
        return [live[msgid] for msgid in wanted if msgid in live]

    def _announce(self, event):
        self._store._watchers.announce(self.userid, [event])

    def listMessages(self, start=0, limit=None, newestFirst=False):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        live = self._live()
        page = pageOf(live, start, limit, newestFirst)
        return defer.succeed(Listing(len(live), [m.summary() for m in page]))

    def listEntries(self):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        folder = self.folder
        return defer.succeed([
            MessageSummary(m.id, popSize(m.text), m.arrived, uid=m.uid, flags=m.flags,
                           folder=folder) for m in self._live()])

    @_failing
    def fetchMessage(self, msgid):
        return defer.succeed(self._byId(msgid).text)

    def fetchMessages(self, msgids):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        live = {m.id: m.text for m in self._live()}
        return defer.succeed([live.get(msgid) for msgid in msgids])

    @_failing
    def setFlags(self, msgids, add=(), remove=()):
        add, remove = checkFlags(add), checkFlags(remove)
        keywordsAfter(self._folder.keywords, add)
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        changed = []
        for message in self._found(msgids):
            flags = (message.flags | add) - remove
            if flags != message.flags:
                message.flags = flags
                changed.append(message.summary())
                self._announce(MailEvent("flags", self.folder, summary=changed[-1]))
        return defer.succeed(changed)

    def markSeen(self, msgids):
        for message in self._found(msgids):
            if SEEN not in message.flags:
                message.flags = message.flags | {SEEN}
                self._announce(MailEvent("flags", self.folder, summary=message.summary()))
        return defer.succeed(None)

    def _target(self, folder):
        _, folders = self._store._folders(self.userid)
        return self._store._folder(folders, normalizeFolderName(folder))

    @_failing
    def moveMessages(self, msgids, folder):
        target = self._target(folder)
        moved = []
        for message in self._found(msgids):
            if target is self._folder:
                moved.append((message.id, message.uid))
                continue
            copy = self._store._add(self.userid, target, message.text, message.arrived,
                                    message.flags, msgid=message.id)
            message.deleted = True
            self._messages.remove(message)
            self._announce(MailEvent("expunge", self.folder, msgid=message.id,
                                     uid=message.uid))
            moved.append((copy.id, copy.uid))
        return defer.succeed(moved)

    @_failing
    def copyMessages(self, msgids, folder):
        target = self._target(folder)
        copies = []
        for message in self._found(msgids):
            copy = self._store._add(self.userid, target, message.text, message.arrived,
                                    message.flags)
            copies.append((copy.id, copy.uid))
        return defer.succeed(copies)

    def deleteMessages(self, msgids):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        deleted = []
        for message in self._found(msgids):
            message.deleted = True
            deleted.append(message.id)
            self._announce(MailEvent("expunge", self.folder, msgid=message.id,
                                     uid=message.uid))
        if deleted:
            self._deletedHere = True
        return defer.succeed(deleted)

    def close(self):
        if self._deletedHere:
            kept = [m for m in self._messages if not m.deleted]
            self._store.expunged += len(self._messages) - len(kept)
            self._messages[:] = kept
            self._deletedHere = False
        return defer.succeed(None)

    @_failing
    def summary(self, msgid):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        return defer.succeed(self._byId(msgid).summary())

    @_failing
    def flagsOf(self, msgid):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        return defer.succeed(frozenset(self._byId(msgid).flags))


@implementer(IMailboxSession)
class _MemorySession(_MemoryFolder):
    """
    A view of INBOX with a cursor.
    """

    def __init__(self, store, userid, folder):
        _MemoryFolder.__init__(self, store, userid, folder)
        self.count = len(self._live())
        self._cursor = 0
        self._current = None

    @property
    def currentId(self):
        current = self._current
        return None if current is None or current.deleted else current.id

    def readMessage(self):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        for message in self._messages:
            if message.serial > self._cursor and not message.deleted:
                self._cursor = message.serial
                self._current = message
                return defer.succeed(message.text)
        return defer.fail(errors.NoMoreMail())

    def deleteMessage(self):
        if self._current is None or self._current.deleted:
            return defer.fail(errors.NoCurrentMessage())
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        self._current.deleted = True
        self._deletedHere = True
        self._announce(MailEvent("expunge", self.folder, msgid=self._current.id,
                                 uid=self._current.uid))
        return defer.succeed(None)

    @_failing
    def selectMessage(self, msgid):
        message = self._byId(msgid)
        self._cursor = message.serial
        self._current = message
        return defer.succeed(message.text)
