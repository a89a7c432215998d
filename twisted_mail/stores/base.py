"""
What every store shares: reading the user id a call names, and the
listeners told of new mail.
"""

import functools

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_mail import errors
from twisted_mail.mail.model import (
    INBOX,
    MAX_KEYWORDS,
    SPECIAL_FOLDERS,
    SYSTEM_FLAGS,
    checkFlags,
    normalizeFolderName,
)
from twisted_mail.wire import normalizeUserId

log = Logger()


def _normalising(index, name):
    def decorate(method):
        @functools.wraps(method)
        def withUserId(self, *args, **kwargs):
            try:
                if len(args) > index:
                    args = args[:index] + (normalizeUserId(args[index]),) + args[index + 1:]
                else:
                    kwargs[name] = normalizeUserId(kwargs[name])
            except errors.InvalidUserId as e:
                return defer.fail(e)
            return method(self, *args, **kwargs)

        return withUserId

    return decorate


#: Decorate a store method whose first argument is a user id: the method
#: gets it normalised (L{normalizeUserId}); an invalid one fails the call's
#: L{Deferred} with L{errors.InvalidUserId} and touches nothing.
userIdArgument = _normalising(0, "userid")

#: The same for C{deliver}/C{deliverMessage}, whose second argument is the
#: receiver's user id.
receiverArgument = _normalising(1, "receiver")


def appendArguments(method):
    """
    Decorate a store's C{appendMessage(userid, folder, message, flags=(),
    arrived=None)}: the method gets the flags checked (L{checkFlags}; bad
    ones fail the call's L{Deferred} with L{errors.InvalidFlag}) and the
    arrival time given (the store's clock when it is L{None}).
    """

    @functools.wraps(method)
    def checked(self, userid, folder, message, flags=(), arrived=None):
        try:
            flags = checkFlags(flags)
        except errors.MailError as e:
            return defer.fail(e)
        return method(self, userid, folder, message, flags,
                      self._clock() if arrived is None else arrived)

    return checked


class CursorSession:
    """
    What an INBOX session with a cursor (L{IMailboxSession}) keeps of its
    place: the cursor, the current message and that message's id.
    """

    def _startCursor(self):
        self._cursor = 0
        self._current = None
        self._currentId = None

    @property
    def currentId(self):
        return None if self._current is None else self._currentId


def folderNameArgument(method):
    """
    Decorate a store method whose second argument is a folder name: the
    method gets it canonical (L{normalizeFolderName}); a bad one fails the
    call's L{Deferred} with L{errors.InvalidFolderName}.
    """
    @functools.wraps(method)
    def withName(self, userid, name, *args, **kwargs):
        try:
            name = normalizeFolderName(name)
        except errors.MailError as e:
            return defer.fail(e)
        return method(self, userid, name, *args, **kwargs)

    return withName


class Listeners:
    """
    The new-mail listeners of each user (L{IMailStore.subscribe}).

    @param first: called with a user id when it gains its first listener,
        or L{None}.
    @param last: called with a user id when it loses its last listener, or
        L{None}.
    """

    def __init__(self, first=None, last=None):
        self._byUser = {}
        self._first = first
        self._last = last

    def subscribe(self, userid, listener):
        """
        Tell C{listener} of each new message of C{userid} (an invalid id has
        no mail: nothing is ever told).

        @return: a callable that ends the subscription.
        """
        try:
            userid = normalizeUserId(userid)
        except errors.InvalidUserId:
            return lambda: None
        listeners = self._byUser.get(userid)
        if listeners is None:
            listeners = self._byUser[userid] = []
            if self._first is not None:
                self._first(userid)
        listeners.append(listener)

        def unsubscribe():
            if listener in listeners:
                listeners.remove(listener)
            if not listeners and self._byUser.get(userid) is listeners:
                del self._byUser[userid]
                if self._last is not None:
                    self._last(userid)

        return unsubscribe

    def announce(self, userid, summaries):
        """
        Tell C{userid}'s listeners of new messages (their summaries); a
        listener that fails is logged and the others are told.
        """
        for summary in summaries:
            for listener in list(self._byUser.get(userid, ())):
                try:
                    listener(summary)
                except Exception:
                    log.failure("a new-mail listener failed")

    def count(self, userid):
        """
        How many listeners C{userid} has.
        """
        return len(self._byUser.get(userid, ()))

    def users(self):
        """
        The user ids with listeners.
        """
        return frozenset(self._byUser)

    def __contains__(self, userid):
        return userid in self._byUser


class AtOnce:
    """
    A reactor and thread pool stand-in that runs a store's "threaded" work
    at once, on the caller's thread, so that its Deferreds have fired when
    its methods return: for command-line tools (C{simplemail-passwd}) and
    tests, never for a server.
    """

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def getThreadPool(self):
        return self

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


def scanSearch(candidates, query, start=0, limit=None):
    """
    Search by scanning: the page of C{candidates} matching C{query} (the
    reference evaluator, L{twisted_mail.mail.query.matches}).

    @param candidates: C{(summary, document)} pairs, newest first; the
        document a L{twisted_mail.mail.query.SearchDocument}, or a
        no-argument callable making it (only called when the query needs
        the text).
    @rtype: L{twisted_mail.mail.mime.Listing}
    """
    from twisted_mail.mail.mime import Listing
    from twisted_mail.mail.query import matches

    found = []
    for summary, doc in candidates:
        if callable(doc):
            doc = doc()
        if matches(query, summary, doc):
            found.append(summary)
    end = None if limit is None else start + limit
    return Listing(len(found), found[start:end])


# -- the mailbox model's rules every store shares (MAILBOX.md)


def folderOrder(names):
    """
    Folder names as L{IMailStore.listFolders} lists them: INBOX first, then
    by name.
    """
    return sorted(names, key=lambda name: (name != INBOX, name))


def renames(existing, name, newName):
    """
    What renaming folder C{name} to C{newName} renames: the folder and the
    folders below it, as pairs C{(old, new)}.

    @param existing: the user's canonical folder names.
    @raise NoSuchFolder: C{name} is not one of them.
    @raise FolderNotChangeable: C{name} is INBOX or a special-use folder.
    @raise FolderExists: a new name is taken (special-use names always are).
    """
    if name == INBOX or name in SPECIAL_FOLDERS:
        raise errors.FolderNotChangeable(name)
    if name not in existing:
        raise errors.NoSuchFolder(name)
    prefix = name + "/"
    moved = [(old, newName + old[len(name):]) for old in existing
             if old == name or old.startswith(prefix)]
    staying = set(existing) - {old for old, _ in moved}
    for _, new in moved:
        if new in staying or new == INBOX or new in SPECIAL_FOLDERS:
            raise errors.FolderExists(new)
    return moved


def checkDeletable(existing, name):
    """
    Check that folder C{name} may be deleted.

    @raise FolderNotChangeable: it is INBOX.
    @raise NoSuchFolder: it does not exist.
    """
    if name == INBOX:
        raise errors.FolderNotChangeable(name)
    if name not in existing:
        raise errors.NoSuchFolder(name)


def keywordsAfter(inUse, add):
    """
    Check that adding keywords C{add} keeps a folder within
    L{twisted_mail.mail.model.MAX_KEYWORDS} distinct keywords.

    @param inUse: the keywords its messages carry now, or a callable giving
        them (called only when C{add} holds keywords: finding them may cost
        a look at every message).
    @raise TooManyKeywords: it would not.
    """
    wanted = {flag for flag in add if flag not in SYSTEM_FLAGS}
    if not wanted:
        return
    if callable(inUse):
        inUse = inUse()
    new = wanted - set(inUse)
    if new and len(set(inUse)) + len(new) > MAX_KEYWORDS:
        raise errors.TooManyKeywords()


def pageOf(items, start, limit, newestFirst):
    """
    The page C{[start, start + limit)} of C{items}, reversed first for
    C{newestFirst}.
    """
    items = list(items)
    if newestFirst:
        items.reverse()
    end = None if limit is None else start + limit
    return items[start:end]


class SearchNotServed:
    """
    C{IMailStore.search} for a store that does not search yet: every search
    is a temporary failure.  (Search is built beside the stores; this is
    the boundary it replaces.)
    """

    def search(self, userid, query, folder=None, start=0, limit=None):
        return defer.fail(errors.TemporaryFailure("search is not available"))
