"""
The mailbox model of the PostgreSQL store (MAILBOX.md): the store's folder
calls (L{PostgresFolders}, a mixin of L{PostgresStore}) and the view of one
folder (L{PostgresFolderView}; INBOX's session with its cursor extends it).

INBOX is the messages whose C{folder} is NULL (its UID state in C{users});
other folders are rows of C{folders}.  The C{simplemail_uid} trigger gives
a message added to a folder (inserted or moved) the folder's next UID; a
message keeps its row (and so its id) when it moves.  Changes are announced
to other processes with C{NOTIFY} on L{CHANGES_CHANNEL} at commit.
"""

from twisted.internet import defer
from zope.interface import implementer

from twisted_mail import errors
from twisted_mail.interfaces import IFolder
from twisted_mail.mail.mime import Listing, MessageSummary
from twisted_mail.mail.model import (
    INBOX,
    SEEN,
    SPECIAL_FOLDERS,
    SYSTEM_FLAGS,
    FolderInfo,
    MailEvent,
    checkFlags,
    normalizeFolderName,
)
from twisted_mail.stores.base import (
    appendArguments,
    checkDeletable,
    folderNameArgument,
    folderOrder,
    keywordsAfter,
    renames,
    userIdArgument,
)
from twisted_mail.stores.postgres.sql import (
    _PUBLIC_ID,
    _SUMMARY_COLUMNS,
    CHANNEL,
    _Delivery,
    _deleteRows,
    _summary,
    inFolder,
    isNativeId,
    notifyChanges,
    prepareRow,
    publicId,
)


def _checkUser(conn, userid):
    if conn.execute("SELECT 1 FROM users WHERE userid = %s", [userid]).fetchone() is None:
        raise errors.NoSuchUser(userid)


def folderId(conn, userid, name, make=True):
    """
    The row id of folder C{name} (canonical; L{None} for INBOX), making a
    special-use one on first need.

    @raise NoSuchFolder: it does not exist.
    """
    if name == INBOX:
        _checkUser(conn, userid)
        return None
    row = conn.execute("SELECT id FROM folders WHERE userid = %s AND name = %s",
                       [userid, name]).fetchone()
    if row is None and make and name in SPECIAL_FOLDERS:
        _checkUser(conn, userid)
        conn.execute("INSERT INTO folders (userid, name) VALUES (%s, %s)"
                     " ON CONFLICT DO NOTHING", [userid, name])
        row = conn.execute("SELECT id FROM folders WHERE userid = %s AND name = %s",
                           [userid, name]).fetchone()
    if row is None:
        _checkUser(conn, userid)
        raise errors.NoSuchFolder(name)
    return row[0]


def folderState(conn, userid, name):
    """
    The row id (L{None} for INBOX) and UIDVALIDITY of folder C{name}.
    """
    row = folderId(conn, userid, name)
    if row is None:
        validity = conn.execute("SELECT uidvalidity FROM users WHERE userid = %s",
                                [userid]).fetchone()[0]
    else:
        validity = conn.execute("SELECT uidvalidity FROM folders WHERE id = %s",
                                [row]).fetchone()[0]
    return row, validity


def _idCondition(msgids):
    """
    The condition naming messages by public id, and its parameters.
    """
    native = [int(m) for m in msgids if isNativeId(m)]
    other = [m for m in msgids if not isNativeId(m) and _PUBLIC_ID.match(m)]
    return ("((id = ANY(%s) AND pubid IS NULL) OR pubid = ANY(%s))", [native, other])


def _keywordsInUse(conn, userid, folder):
    where, params = inFolder(folder)
    return [k for (k,) in conn.execute(
        "SELECT DISTINCT k FROM messages, unnest(flags) AS k WHERE userid = %s AND "
        + where, [userid] + params)]


class PostgresFolders:
    """
    The folder calls of L{PostgresStore} (a mixin: it uses C{_run},
    C{origin}, C{_watchers}, C{_announce}, C{maxMessageSize}, C{_clock}).
    """

    @userIdArgument
    def listFolders(self, userid):
        def infos(conn):
            with conn.transaction():
                _checkUser(conn, userid)
                for name in SPECIAL_FOLDERS:
                    conn.execute("INSERT INTO folders (userid, name) VALUES (%s, %s)"
                                 " ON CONFLICT DO NOTHING", [userid, name])
                found = {}
                count, validity, uidnext = conn.execute(
                    "SELECT count, uidvalidity, uidnext FROM users WHERE userid = %s",
                    [userid]).fetchone()
                unseen = conn.execute(
                    "SELECT count(*) FROM messages WHERE userid = %s AND folder IS NULL"
                    " AND NOT (flags @> %s)", [userid, [SEEN]]).fetchone()[0]
                found[INBOX] = FolderInfo(INBOX, count, unseen, validity, uidnext)
                for name, total, unseen, validity, uidnext in conn.execute(
                        "SELECT f.name, count(m.id), count(m.id) FILTER (WHERE NOT"
                        " (m.flags @> %s)), f.uidvalidity, f.uidnext FROM folders f"
                        " LEFT JOIN messages m ON m.folder = f.id WHERE f.userid = %s"
                        " GROUP BY f.id", [[SEEN], userid]):
                    found[name] = FolderInfo(name, total, unseen, validity, uidnext)
            return [found[name] for name in folderOrder(found)]

        return self._run(infos)

    @userIdArgument
    @folderNameArgument
    def createFolder(self, userid, name):
        def create(conn):
            with conn.transaction():
                _checkUser(conn, userid)
                if name == INBOX or name in SPECIAL_FOLDERS:
                    raise errors.FolderExists(name)
                row = conn.execute(
                    "INSERT INTO folders (userid, name) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING RETURNING id", [userid, name]).fetchone()
                if row is None:
                    raise errors.FolderExists(name)
                notifyChanges(conn, self.origin, [{"u": userid, "k": "folders"}])
            return name

        return self._run(create).addCallback(self._foldersChanged, userid)

    @userIdArgument
    def renameFolder(self, userid, name, newName):
        try:
            name, newName = normalizeFolderName(name), normalizeFolderName(newName)
        except errors.MailError as e:
            return defer.fail(e)

        def rename(conn):
            with conn.transaction():
                _checkUser(conn, userid)
                existing = {n: i for n, i in conn.execute(
                    "SELECT name, id FROM folders WHERE userid = %s FOR UPDATE",
                    [userid])}
                moved = renames(list(existing) + [INBOX], name, newName)
                # Through names no folder can have (a control character), so
                # that a rename below itself never meets a name in use.
                for old, _ in moved:
                    conn.execute("UPDATE folders SET name = %s WHERE id = %s",
                                 ["\x01" + old, existing[old]])
                for old, new in moved:
                    conn.execute("UPDATE folders SET name = %s WHERE id = %s",
                                 [new, existing[old]])
                notifyChanges(conn, self.origin, [{"u": userid, "k": "folders"}])
            return newName

        return self._run(rename).addCallback(self._foldersChanged, userid)

    @userIdArgument
    @folderNameArgument
    def deleteFolder(self, userid, name):
        def delete(conn):
            with conn.transaction():
                _checkUser(conn, userid)
                existing = [n for (n,) in conn.execute(
                    "SELECT name FROM folders WHERE userid = %s", [userid])]
                checkDeletable(existing + [INBOX], name)
                conn.execute("DELETE FROM folders WHERE userid = %s AND name = %s",
                             [userid, name])
                notifyChanges(conn, self.origin, [{"u": userid, "k": "folders"}])

        return self._run(delete).addCallback(self._foldersChanged, userid)

    def _foldersChanged(self, result, userid):
        self._watchers.announce(userid, [MailEvent("folders")])
        return result

    @userIdArgument
    @folderNameArgument
    def openFolder(self, userid, name):
        if name == INBOX:
            return self.openMailbox(userid)
        def opened(found):
            view = PostgresFolderView(self, userid, name, found[0])
            view.uidValidity = found[1]
            return view

        return self._run(folderState, userid, name).addCallback(opened)

    @userIdArgument
    @folderNameArgument
    @appendArguments
    def appendMessage(self, userid, folder, message, flags, when):
        row = None

        def append(conn):
            nonlocal row
            row = prepareRow(_Delivery(userid, "", when, [bytes(message)]),
                             self.maxMessageSize)
            if isinstance(row, Exception):
                raise row
            with conn.transaction():
                target = folderId(conn, userid, folder)
                if flags - SYSTEM_FLAGS:
                    keywordsAfter(_keywordsInUse(conn, userid, target), flags)
                serial, uid = conn.execute(
                    "INSERT INTO messages (userid, pubid, arrived, envelope, spoolhead,"
                    " body, size, sender, recipient, subject, date, snippet, attachments,"
                    " folder, flags) VALUES (%s, %s, %s, %s, %b, %b, %s, %s, %s, %s, %s,"
                    " %s, %s, %s, %s) RETURNING id, uid",
                    list(row) + [target, sorted(flags)]).fetchone()
                if target is None:
                    conn.execute("UPDATE users SET count = count + 1 WHERE userid = %s",
                                 [userid])
                    conn.execute("SELECT pg_notify(%s, %s)",
                                 [CHANNEL, "{}\n{} {}".format(self.origin, userid, serial)])
                else:
                    notifyChanges(conn, self.origin, [
                        {"u": userid, "k": "message", "f": target, "m": str(serial),
                         "uid": uid}])
                return conn.execute("SELECT " + _SUMMARY_COLUMNS + " FROM messages"
                                    " WHERE id = %s", [serial]).fetchone()

        def done(found):
            summary = _summary(found, folder)
            if folder == INBOX:
                self._rememberOwn(int(found[0]))
                self._announce(userid, [summary])
            self._watchers.announce(userid, [MailEvent("message", folder, summary=summary)])
            return summary

        return self._run(append).addCallback(done)

    def watch(self, userid, listener):
        return self._watchers.subscribe(userid, listener)


@implementer(IFolder)
class PostgresFolderView:
    """
    A view of one folder in the database.
    """

    def __init__(self, store, userid, folder, folderRow):
        self._store = store
        self.userid = userid
        self.folder = folder
        self._folderRow = folderRow
        self.uidValidity = None

    def _where(self):
        return inFolder(self._folderRow)

    def _events(self, events):
        self._store._watchers.announce(self.userid, events)

    def listMessages(self, start=0, limit=None, newestFirst=False):
        userid = self.userid
        order = "DESC" if newestFirst else "ASC"
        where, params = self._where()
        if self._folderRow is None:
            total = "SELECT count AS n FROM users WHERE userid = %s"
            totalParams = [userid]
        else:
            total = "SELECT count(*) AS n FROM messages WHERE userid = %s AND " + where
            totalParams = [userid] + params

        def page(conn):
            # One statement, one snapshot: the total and the page agree.
            rows = conn.execute(
                "SELECT c.n, m.* FROM (" + total + ") c LEFT JOIN LATERAL (SELECT "
                + _SUMMARY_COLUMNS + " FROM messages WHERE userid = %s AND " + where +
                " ORDER BY uid " + order + " OFFSET %s LIMIT %s) m ON true",
                totalParams + [userid] + params + [max(0, start), limit]).fetchall()
            if not rows:
                return Listing(0, [])
            return Listing(rows[0][0], [_summary(r[1:], self.folder)
                                        for r in rows if r[1] is not None])

        return self._store._run(page)

    def listEntries(self):
        where, params = self._where()
        folder = self.folder

        def rows(conn):
            # Only the columns a SELECT needs: no header text is read.
            return [MessageSummary(publicId(serial, pubid), size, arrived, uid=uid,
                                   flags=flags, folder=folder)
                    for serial, pubid, size, arrived, uid, flags in conn.execute(
                        "SELECT id, pubid, size, arrived, uid, flags FROM messages"
                        " WHERE userid = %s AND " + where + " ORDER BY uid",
                        [self.userid] + params).fetchall()]

        return self._store._run(rows)

    def _byId(self, conn, msgid):
        cur = conn.cursor(binary=True)
        where, params = self._where()
        if isNativeId(msgid):
            return cur.execute(
                "SELECT id, body, uid FROM messages WHERE userid = %s AND id = %s"
                " AND pubid IS NULL AND " + where, [self.userid, int(msgid)] + params
            ).fetchone()
        if _PUBLIC_ID.match(msgid):
            return cur.execute(
                "SELECT id, body, uid FROM messages WHERE userid = %s AND pubid = %s AND "
                + where, [self.userid, msgid] + params).fetchone()
        return None

    def fetchMessage(self, msgid):
        def got(row):
            if row is None:
                raise errors.NoSuchMessage()
            return row[1]

        return self._store._run(self._byId, str(msgid)).addCallback(got)

    def fetchMessages(self, msgids):
        msgids = [str(m) for m in msgids]

        def read(conn):
            where, params = self._where()
            condition, idParams = _idCondition(msgids)
            found = {publicId(serial, pubid): body for serial, pubid, body in conn.cursor(
                binary=True).execute(
                "SELECT id, pubid, body FROM messages WHERE userid = %s AND " + condition
                + " AND " + where, [self.userid] + idParams + params)}
            return [found.get(msgid) for msgid in msgids]

        return self._store._run(read)

    def setFlags(self, msgids, add=(), remove=()):
        try:
            add, remove = checkFlags(add), checkFlags(remove)
        except errors.MailError as e:
            return defer.fail(e)
        return self._store._run(self._setFlags, list(msgids), add, remove).addCallback(
            self._flagged)

    def _setFlags(self, conn, msgids, add, remove):
        where, params = self._where()
        condition, idParams = _idCondition(msgids)
        with conn.transaction():
            rows = conn.execute(
                "SELECT id, flags FROM messages WHERE userid = %s AND " + where + " AND "
                + condition + " ORDER BY uid FOR UPDATE",
                [self.userid] + params + idParams).fetchall()
            if add - SYSTEM_FLAGS:
                keywordsAfter(_keywordsInUse(conn, self.userid, self._folderRow), add)
            changed = []
            for serial, flags in rows:
                new = (frozenset(flags) | add) - remove
                if new != frozenset(flags):
                    changed.append((serial, sorted(new)))
            if not changed:
                return []
            conn.cursor().executemany("UPDATE messages SET flags = %s WHERE id = %s",
                                      [(f, s) for s, f in changed])
            found = conn.execute("SELECT " + _SUMMARY_COLUMNS + " FROM messages WHERE"
                                 " id = ANY(%s) ORDER BY uid",
                                 [[s for s, _ in changed]]).fetchall()
            notifyChanges(conn, self._store.origin, [
                {"u": self.userid, "k": "flags", "f": self._folderRow,
                 "m": _summary(r).id, "uid": r[10]} for r in found])
        return found

    def _flagged(self, rows):
        summaries = [_summary(r, self.folder) for r in rows]
        self._events([MailEvent("flags", self.folder, summary=s) for s in summaries])
        return summaries

    def markSeen(self, msgids):
        return self.setFlags(msgids, add=[SEEN]).addCallbacks(
            lambda _: None, lambda f: None)

    def moveMessages(self, msgids, folder):
        return self._transfer(msgids, folder, move=True)

    def copyMessages(self, msgids, folder):
        return self._transfer(msgids, folder, move=False)

    def _transfer(self, msgids, folder, move):
        try:
            folder = normalizeFolderName(folder)
        except errors.MailError as e:
            return defer.fail(e)
        msgids = [str(m) for m in msgids]
        source = self._folderRow
        userid = self.userid
        store = self._store

        def transfer(conn):
            where, params = self._where()
            condition, idParams = _idCondition(msgids)
            with conn.transaction():
                target = folderId(conn, userid, folder)
                rows = conn.execute(
                    "SELECT id, pubid, uid FROM messages WHERE userid = %s AND " + where
                    + " AND " + condition + " FOR UPDATE",
                    [userid] + params + idParams).fetchall()
                byId = {_pub(s, p): (s, u) for s, p, u in rows}
                ordered = [m for m in dict.fromkeys(msgids) if m in byId]
                if target == source:
                    return [(m, byId[m][1]) for m in ordered], [], []
                done, gone, new = [], [], []
                for msgid in ordered:
                    serial, uid = byId[msgid]
                    if move:
                        (newUid,) = conn.execute(
                            "UPDATE messages SET folder = %s WHERE id = %s RETURNING uid",
                            [target, serial]).fetchone()
                        newId = msgid
                        gone.append((msgid, uid))
                    else:
                        newSerial, newUid = conn.execute(
                            "INSERT INTO messages (userid, arrived, envelope, spoolhead,"
                            " body, size, sender, recipient, subject, date, snippet,"
                            " attachments, flags, folder) SELECT userid, arrived, envelope,"
                            " spoolhead, body, size, sender, recipient, subject, date,"
                            " snippet, attachments, flags, %s FROM messages WHERE id = %s"
                            " RETURNING id, uid", [target, serial]).fetchone()
                        newId = str(newSerial)
                    done.append((newId, newUid))
                    new.append(newId)
                delta = (len(done) if target is None else 0) - (
                    len(gone) if source is None else 0)
                if delta:
                    conn.execute("UPDATE users SET count = count + %s WHERE userid = %s",
                                 [delta, userid])
                changes = [{"u": userid, "k": "expunge", "f": source, "m": m, "uid": u}
                           for m, u in gone]
                changes += [{"u": userid, "k": "message", "f": target, "m": m, "uid": u}
                            for m, u in done]
                notifyChanges(conn, store.origin, changes)
                summaries = []
                if done:
                    condition, idParams = _idCondition(new)
                    summaries = conn.execute(
                        "SELECT " + _SUMMARY_COLUMNS + " FROM messages WHERE userid = %s"
                        " AND " + condition + " ORDER BY uid", [userid] + idParams
                    ).fetchall()
            return done, gone, summaries

        def announce(result):
            done, gone, rows = result
            events = [MailEvent("expunge", self.folder, msgid=m, uid=u) for m, u in gone]
            events += [MailEvent("message", folder, summary=_summary(r, folder))
                       for r in rows]
            self._events(events)
            return done

        return store._run(transfer).addCallback(announce)

    def deleteMessages(self, msgids):
        native = [int(m) for m in msgids if isNativeId(m)]
        migrated = [m for m in msgids if not isNativeId(m) and _PUBLIC_ID.match(m)]

        def deleted(ids):
            self._events([MailEvent("expunge", self.folder, msgid=m) for m in ids])
            return ids

        return self._store._run(_deleteRows, self.userid, native, migrated, False,
                                self._folderRow, self._store.origin).addCallback(deleted)

    def close(self):
        return defer.succeed(None)

    def summary(self, msgid):
        where, params = self._where()
        condition, idParams = _idCondition([str(msgid)])

        def one(conn):
            # By primary key or the public id's index: not a folder scan.
            return conn.execute(
                "SELECT " + _SUMMARY_COLUMNS + " FROM messages WHERE userid = %s AND "
                + where + " AND " + condition, [self.userid] + params + idParams).fetchone()

        def found(row):
            if row is None:
                raise errors.NoSuchMessage()
            return _summary(row, self.folder)

        return self._store._run(one).addCallback(found)

    def flagsOf(self, msgid):
        where, params = self._where()
        condition, idParams = _idCondition([str(msgid)])

        def flags(conn):
            row = conn.execute(
                "SELECT flags FROM messages WHERE userid = %s AND " + where + " AND "
                + condition, [self.userid] + params + idParams).fetchone()
            if row is None:
                raise errors.NoSuchMessage()
            return frozenset(row[0])

        return self._store._run(flags)


def _pub(serial, pubid):
    return pubid if pubid is not None else str(serial)


def announceChanges(store, conn, payloads):
    """
    In the notification thread: turn other processes' change notifications
    (L{notifyChanges}) for watched users into L{MailEvent}s on the reactor
    thread.
    """
    import json

    watched = store._subscribed
    byUser = {}
    for payload in payloads:
        lines = payload.split("\n")
        if lines[0] == store.origin:
            continue
        for line in lines[1:]:
            try:
                change = json.loads(line)
            except ValueError:
                continue
            if isinstance(change, dict) and change.get("u") in watched:
                byUser.setdefault(change["u"], []).append(change)
    for userid, changes in byUser.items():
        rows = [c["f"] for c in changes if c.get("f") is not None]
        names = dict(conn.execute("SELECT id, name FROM folders WHERE id = ANY(%s)",
                                  [rows]).fetchall()) if rows else {}
        wanted = [str(c.get("m")) for c in changes if c.get("k") in ("message", "flags")]
        summaries = {}
        if wanted:
            condition, params = _idCondition(wanted)
            for row in conn.execute("SELECT " + _SUMMARY_COLUMNS + ", folder FROM messages"
                                    " WHERE userid = %s AND " + condition,
                                    [userid] + params):
                folder = INBOX if row[-1] is None else names.get(row[-1], "")
                summary = _summary(row[:-1], folder)
                summaries[summary.id] = summary
        events = []
        for change in changes:
            kind = change.get("k")
            folder = INBOX if change.get("f") is None else names.get(change.get("f"))
            if kind == "folders":
                events.append(MailEvent("folders"))
            elif kind == "expunge":
                events.append(MailEvent("expunge", folder, msgid=change.get("m"),
                                        uid=change.get("uid")))
            elif kind in ("message", "flags") and str(change.get("m")) in summaries:
                summary = summaries[str(change.get("m"))]
                events.append(MailEvent(kind, summary.folder, summary=summary))
        if events:
            store._reactor.callFromThread(store._announceEvents, userid, events)
