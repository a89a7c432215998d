"""
The folder side of the JSON API (MAILBOX.md, "The web, the API and the
console, with folders"): the folder routes, a message's flags and folder
(C{PATCH .../messages/{id}}), and finding the folder that holds a message.

A mixin of L{twisted_mail.doors.web.api.WebAPI}: it relies on its
C{store}, C{_own}, C{_json} and friends.  Folder names come percent-encoded
in the path (C{/} as C{%2F}); the store checks and normalises them.
"""

from twisted.internet import defer
from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.mail.model import INBOX, checkFlags, normalizeFolderName

log = Logger()


class HTTPError(Exception):
    """
    Answer C{code} with C{{"error": text}}.
    """

    def __init__(self, code, text, headers=()):
        Exception.__init__(self, code, text)
        self.code = code
        self.text = text
        self.headers = headers


def summaryDict(summary):
    """
    The JSON of a summary in a listing or an event: the fields of
    L{MessageSummary.asDict}, its folder and its flags (sorted).
    """
    body = summary.asDict()
    body["folder"] = summary.folder
    body["flags"] = sorted(summary.flags)
    return body


def folderName(name, what="folder"):
    """
    A folder name from a request, canonical; a 400 for a bad one.
    """
    try:
        return normalizeFolderName(name)
    except errors.InvalidFolderName as e:
        raise HTTPError(400, "{}: {}".format(what, e) if what != "folder" else str(e))


def _flagList(value, name):
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise HTTPError(400, "{} must be a list of strings".format(name))
    return value


class FolderHandlers:
    """
    The handlers of the folder routes and of a message's flags and folder.
    """

    # -- opening folders

    def _openFolder(self, userid, name):
        """
        A view of one folder: INBOX through C{openMailbox}, as every
        folder-less door opens it; any other through C{openFolder}.
        """
        if name == INBOX:
            return self.store.openMailbox(userid)
        return self.store.openFolder(userid, name)

    def _withFolder(self, userid, name, work):
        """
        Open a folder of C{userid}, run C{work(view)} and close it again.
        """
        d = self._openFolder(userid, name)

        def opened(view):
            d = defer.maybeDeferred(work, view)

            def closed(result):
                view.close()
                return result

            return d.addBoth(closed)

        return d.addCallback(opened)

    def _locate(self, userid, msgid, hint, work):
        """
        Run C{work(view, text)} on the folder that holds message C{msgid}
        (its text fetched): the C{hint} folder only, if given; otherwise
        INBOX, then every other folder.  The view is closed after.
        """
        if hint is not None:
            return self._withFolder(
                userid, hint, lambda view: view.fetchMessage(msgid).addCallback(
                    lambda text: work(view, text)))

        @defer.inlineCallbacks
        def search():
            tried = set()
            names = [INBOX]
            while names:
                name = names.pop(0)
                tried.add(name)
                view = yield self._openFolder(userid, name)
                try:
                    try:
                        text = yield view.fetchMessage(msgid)
                    except errors.NoSuchMessage:
                        pass
                    else:
                        return (yield work(view, text))
                finally:
                    view.close()
                if name == INBOX:
                    folders = yield self.store.listFolders(userid)
                    names = [f.name for f in folders if f.name not in tried]
            raise errors.NoSuchMessage()

        return search()

    # -- the folder routes

    def getFolders(self, request, who, user):
        userid = self._own(who, user)
        d = self.store.listFolders(userid)
        return d.addCallback(lambda folders: (200, {
            "folders": [folder.asDict() for folder in folders]}))

    def postFolder(self, request, who, user):
        userid = self._own(who, user)
        body = self._json(request, {"name": (str, True)})
        name = folderName(body["name"])
        d = self.store.hasUser(userid)
        d.addCallback(lambda _: self.store.createFolder(userid, name))

        def created(name):
            log.info("web: {user} created folder {folder}", user=userid, folder=name)
            return 201, {"name": name}

        return d.addCallback(created)

    def patchFolder(self, request, who, user, name):
        userid = self._own(who, user)
        name = folderName(name)
        body = self._json(request, {"name": (str, True)})
        newName = folderName(body["name"])
        if name == INBOX:
            raise HTTPError(400, "INBOX can't be renamed")
        d = self.store.renameFolder(userid, name, newName)

        def renamed(newName):
            log.info("web: {user} renamed folder {old} to {new}", user=userid,
                     old=name, new=newName)
            return 200, {"name": newName}

        return d.addCallback(renamed)

    def deleteFolder(self, request, who, user, name):
        userid = self._own(who, user)
        name = folderName(name)
        if name == INBOX:
            raise HTTPError(400, "INBOX can't be deleted")
        d = self.store.deleteFolder(userid, name)

        def deleted(_):
            log.info("web: {user} deleted folder {folder}", user=userid, folder=name)
            return 204, None

        return d.addCallback(deleted)

    # -- a message's flags and folder

    def patchMessage(self, request, who, user, msgid):
        """
        C{{"flags": {"add": [...], "remove": [...]}, "folder": NAME}}:
        change the flags (durably), then move (keeping the id); answer the
        summary as it is now.
        """
        userid = self._own(who, user)
        body = self._json(request, {"flags": (dict, False), "folder": (str, False)})
        flags = body.get("flags") or {}
        unknown = set(flags) - {"add", "remove"}
        if unknown:
            raise HTTPError(400, "flags may only hold add and remove")
        add = _flagList(flags.get("add"), "flags.add")
        remove = _flagList(flags.get("remove"), "flags.remove")
        try:
            checkFlags(add)
            checkFlags(remove)
        except errors.InvalidFlag as e:
            raise HTTPError(400, str(e))
        target = body.get("folder")
        if target is not None:
            target = folderName(target)
        hint = self._folderArg(request, None)

        def change(view, text):
            d = defer.succeed(None)
            if target is not None:
                # A move into nowhere changes nothing: not the flags either.
                d.addCallback(lambda _: self.store.listFolders(userid))
                d.addCallback(_checkExists, target)
            if add or remove:
                d.addCallback(lambda _: view.setFlags([msgid], add=add, remove=remove))
            if target is not None and target != view.folder:
                d.addCallback(lambda _: view.moveMessages([msgid], target))
                d.addCallback(lambda moved: self._moved(moved, userid, msgid, target))
                return d
            return d.addCallback(lambda _: view.summary(msgid))

        return self._locate(userid, msgid, hint, change).addCallback(
            lambda summary: (200, summaryDict(summary)))

    def _moved(self, moved, userid, msgid, target):
        if not moved:
            raise errors.NoSuchMessage()
        log.info("web: moved message {id} of {user} to {folder}", id=msgid,
                 user=userid, folder=target)
        return self._withFolder(userid, target, lambda view: view.summary(msgid))


def _checkExists(folders, name):
    if name not in [folder.name for folder in folders]:
        raise errors.NoSuchFolder(name)
