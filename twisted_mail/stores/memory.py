"""
An in-memory mail store with the same contract as the spool store.

For this project's tests and for anyone testing code against
L{IMailStore}: it keeps everything in memory, answers at once (with already
fired Deferreds) and can be told to fail.
"""

import itertools
import time

from twisted.internet import defer
from zope.interface import implementer

from twisted_mail import errors
from twisted_mail.interfaces import IMailboxSession, IMailStore
from twisted_mail.mail.message import buildMessage, normaliseBody
from twisted_mail.mail.mime import Listing, parseMessage, summarize
from twisted_mail.mail.model import INBOX, normalizeFolderName
from twisted_mail.mail.query import document
from twisted_mail.wire import normalizeUserId
from twisted_mail.stores.base import (
    Listeners,
    receiverArgument,
    scanSearch,
    userIdArgument,
)


class _StoredMessage:
    __slots__ = ("serial", "text", "deleted", "arrived", "_summary", "_document")

    def __init__(self, serial, text, arrived=0):
        self.serial = serial
        self.text = text
        self.deleted = False
        self.arrived = int(arrived)
        self._summary = None
        self._document = None

    @property
    def id(self):
        return "m{}".format(self.serial)

    def summary(self):
        if self._summary is None:
            self._summary = summarize(self.text, self.id, self.arrived)
        return self._summary

    def document(self):
        """
        Its L{twisted_mail.mail.query.SearchDocument}, made once.
        """
        if self._document is None:
            self._document = document(parseMessage(self.text))
        return self._document


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
        self._mailboxes = {}
        self._serials = itertools.count(1)
        self.failNext = None
        self.expunged = 0
        self._listeners = Listeners()

    def _failure(self):
        exc, self.failNext = self.failNext, None
        return exc

    def _mailbox(self, userid):
        userid = normalizeUserId(userid)
        try:
            return userid, self._mailboxes[userid]
        except KeyError:
            raise errors.NoSuchUser(userid)

    def listUsers(self):
        return defer.succeed(sorted(self._mailboxes))

    @userIdArgument
    def addUser(self, userid):
        if userid in self._mailboxes:
            return defer.fail(errors.UserExists(userid))
        self._mailboxes[userid] = []
        return defer.succeed(userid)

    def hasUser(self, userid):
        try:
            userid, _ = self._mailbox(userid)
        except errors.MailError as e:
            return defer.fail(e)
        return defer.succeed(userid)

    def openMailbox(self, userid):
        try:
            userid, messages = self._mailbox(userid)
        except errors.MailError as e:
            return defer.fail(e)
        return defer.succeed(_MemorySession(self, userid, messages))

    @receiverArgument
    def deliver(self, sender, receiver, body):
        if not isinstance(body, (bytes, bytearray)):
            body = b"".join(body)
        text = buildMessage(sender, receiver, body, self.domain, self._clock())
        return self.deliverMessage(sender, receiver, text)

    def deliverMessage(self, envelopeSender, receiver, message):
        try:
            receiver, messages = self._mailbox(receiver)
        except errors.MailError as e:
            return defer.fail(e)
        if not isinstance(message, (bytes, bytearray)):
            message = b"".join(message)
        text = normaliseBody(message)
        if len(text) > self.maxMessageSize:
            return defer.fail(errors.MessageTooLarge(self.maxMessageSize))
        failure = self._failure()
        if failure is not None:
            return defer.fail(failure)
        stored = _StoredMessage(next(self._serials), text, self._clock())
        messages.append(stored)
        self._listeners.announce(receiver, [stored.summary()])
        return defer.succeed(None)

    def subscribe(self, userid, listener):
        return self._listeners.subscribe(userid, listener)

    @userIdArgument
    def search(self, userid, query, folder=None, start=0, limit=None):
        """
        Search by scanning the user's messages with the reference evaluator
        (L{twisted_mail.mail.query.matches}), newest first.
        """
        try:
            userid, messages = self._mailbox(userid)
        except errors.MailError as e:
            return defer.fail(e)
        failure = self._failure()
        if failure is not None:
            return defer.fail(failure)
        if folder is not None:
            try:
                folder = normalizeFolderName(folder)
            except errors.MailError as e:
                return defer.fail(e)
            if folder != INBOX:
                return defer.fail(errors.NoSuchFolder(folder))
        candidates = []
        for message in reversed(messages):
            if message.deleted:
                continue
            summary = message.summary()
            if folder is not None and summary.folder != folder:
                continue
            candidates.append((summary, message.document))
        return defer.succeed(scanSearch(candidates, query, start, limit))

    def messages(self, userid):
        """
        The texts of the messages of C{userid} not deleted, for assertions.

        @rtype: L{list} of L{bytes}
        """
        _, messages = self._mailbox(userid)
        return [m.text for m in messages if not m.deleted]


@implementer(IMailboxSession)
class _MemorySession:
    def __init__(self, store, userid, messages):
        self._store = store
        self.userid = userid
        self._messages = messages
        self.count = sum(1 for m in messages if not m.deleted)
        self._cursor = 0
        self._current = None
        self._deletedHere = False

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
        return defer.succeed(None)

    # -- the mailbox view

    def _live(self):
        return [m for m in self._messages if not m.deleted]

    def _byId(self, msgid):
        for message in self._messages:
            if not message.deleted and message.id == msgid:
                return message
        raise errors.NoSuchMessage()

    def listMessages(self, start=0, limit=None, newestFirst=False):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        live = self._live()
        if newestFirst:
            live.reverse()
        end = None if limit is None else start + limit
        return defer.succeed(
            Listing(len(live), [m.summary() for m in live[start:end]]))

    def fetchMessage(self, msgid):
        try:
            return defer.succeed(self._byId(msgid).text)
        except errors.MailError as e:
            return defer.fail(e)

    def selectMessage(self, msgid):
        try:
            message = self._byId(msgid)
        except errors.MailError as e:
            return defer.fail(e)
        self._cursor = message.serial
        self._current = message
        return defer.succeed(message.text)

    def deleteMessages(self, msgids):
        failure = self._store._failure()
        if failure is not None:
            return defer.fail(failure)
        wanted = set(msgids)
        deleted = []
        for message in self._messages:
            if not message.deleted and message.id in wanted:
                message.deleted = True
                deleted.append(message.id)
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
