"""
The spool's search index: one SQLite database per user beside the mail
(C{.<user>.index}), holding each message's summary, its searchable text in
an FTS5 table, and a snapshot of where the messages lie in the mbox file.
Synchronous code for the index thread; the reactor's side is
L{twisted_mail.stores.spool.indexing}.

The mbox files stay the truth.  The index is a cache of them, checked
against them before it answers (their size, inode, modification time and
the delete journal's, see L{mailboxStamp}); a missing, stale, truncated or
unreadable index is thrown away and rebuilt from them.  See docs/search.rst.

Tables::

    meta(name PRIMARY KEY, value)      schema version, the entries snapshot
    msg(rowid, id, folder, key, uid, arrived, arrivedday, sentday, size,
        attachments, flags, summary, headers)  (flags and uid outside the
                                       summary: they change without the text)
    text(from_, to_, cc, bcc, subject, body, attachment, headers)
                                       FTS5, rowid = msg.rowid; the token
                                       text of L{twisted_mail.mail.query}
"""

import datetime
import json
import os
import sqlite3
import stat
import struct

from twisted.logger import Logger

from twisted_mail.mail import query as Q
from twisted_mail.mail.mime import MessageSummary

log = Logger()

#: The schema this code writes; an index of another version is rebuilt.
SCHEMA_VERSION = 4

#: Above this many matches a page is found by walking the arrival order
#: rather than by sorting the matches.
ORDER_WALK = 400

_COLUMNS = {
    "from": "from_", "to": "to_", "cc": "cc", "bcc": "bcc", "subject": "subject",
    "body": "body", "attachment": "attachment", "headers": "headers",
}
_FIELDS = ("from", "to", "cc", "bcc", "subject", "body", "attachment", "headers")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS msg(
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    folder TEXT NOT NULL,
    key BLOB NOT NULL,
    uid INTEGER NOT NULL,
    arrived INTEGER NOT NULL,
    arrivedday INTEGER NOT NULL,
    sentday INTEGER NOT NULL,
    size INTEGER NOT NULL,
    attachments INTEGER NOT NULL,
    flags TEXT NOT NULL,
    summary TEXT NOT NULL,
    headers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS msg_folder ON msg(folder, id, key, uid, flags);
CREATE INDEX IF NOT EXISTS msg_arrived ON msg(arrived);
CREATE VIRTUAL TABLE IF NOT EXISTS text USING fts5(
    from_, to_, cc, bcc, subject, body, attachment, headers,
    tokenize = 'unicode61 remove_diacritics 0', detail = full
);
"""


class IndexDamaged(Exception):
    """
    The index file can't be used as it is (not a database, a damaged page,
    another schema, gone from under us): throw it away and rebuild.
    """


def indexName(userid):
    """
    The name of a user's index file in the spool directory.
    """
    return "." + userid + ".index"


def mailboxStamp(dirfd, name, journal):
    """
    What tells whether a mailbox changed since the index last looked: the
    inode, size and modification time of its file and of its delete
    journal (L{None} where a file is missing).
    """
    found = []
    for n in (name, journal):
        try:
            st = os.stat(n, dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


# -- the entries snapshot: where each message lies in the mbox file

_ENTRY = struct.Struct("<QQ16sI")


def packEntries(entries):
    """
    C{(start, end, key, msgid, uid, flags)} tuples as bytes: their count,
    the fixed parts, then the ids, then the flags (space-separated), each
    list separated by newlines.
    """
    fixed = b"".join(_ENTRY.pack(start, end, key, uid) for start, end, key, _, uid, _
                     in entries)
    ids = "\n".join(msgid or "" for _, _, _, msgid, _, _ in entries)
    flags = "\n".join(" ".join(sorted(f)) for *_, f in entries)
    tail = (ids + "\x00" + flags).encode("utf-8")
    return struct.pack("<Q", len(entries)) + fixed + tail


def unpackEntries(data):
    """
    The inverse of L{packEntries}.
    """
    (count,) = struct.unpack_from("<Q", data)
    end = 8 + count * _ENTRY.size
    if not count:
        return []
    ids, flags = data[end:].decode("utf-8").split("\x00")
    return [(start, stop, key, msgid or None, uid, frozenset(f.split()))
            for (start, stop, key, uid), msgid, f in zip(
                _ENTRY.iter_unpack(data[8:end]), ids.split("\n"), flags.split("\n"))]


def _summaryJSON(summary):
    fields = {k: getattr(summary, k) for k in MessageSummary.__slots__
              if k not in ("uid", "flags", "folder")}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def summaryFromRow(text, uid, flags, folder):
    fields = json.loads(text)
    fields.update(uid=uid, flags=flags.split(), folder=folder)
    return MessageSummary(**fields)


def _flagsText(flags):
    return " " + " ".join(sorted(flags)) + " "


def _ordinal(day):
    return day.toordinal() if day is not None else 0


class SearchDatabase:
    """
    One user's index database.  Every method runs in the index thread, one
    at a time.

    @param path: the index file's path.
    """

    def __init__(self, path):
        self.path = path
        self._db = None
        self._ino = None
        # The (id, key) pairs indexed, by folder, as of data_version.
        self._pairs = None
        self._version = None

    # -- opening, checking, throwing away

    def open(self):
        """
        Open (making if missing) the database.

        @raise IndexDamaged: it can't be used; L{discard} it.
        """
        if self._db is not None:
            if self._stillThere():
                return
            self.close()
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1):
            raise IndexDamaged("not a regular file")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, isolation_level=None,
                                 check_same_thread=False, timeout=10.0)
        except (OSError, sqlite3.Error) as e:
            raise IndexDamaged(str(e))
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.create_function("hdr", 3, _headerContains, deterministic=True)
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name='version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES('version', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise IndexDamaged("schema version {}".format(row[0]))
            db.execute("SELECT count(*) FROM msg").fetchone()
        except (sqlite3.Error, IndexDamaged) as e:
            db.close()
            raise IndexDamaged(str(e))
        self._db = db
        self._ino = os.stat(self.path).st_ino
        self._pairs = None

    def _stillThere(self):
        try:
            return os.stat(self.path).st_ino == self._ino
        except OSError:
            return False

    def close(self):
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
        self._db = None
        self._pairs = None

    def discard(self):
        """
        Remove the index file (and SQLite's files beside it), to rebuild.
        """
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass
            except OSError as e:
                if not os.path.isdir(self.path + suffix):
                    raise
                os.rmdir(self.path + suffix)

    def _execute(self, sql, params=()):
        try:
            return self._db.execute(sql, params)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise IndexDamaged(str(e))

    # -- what is indexed

    def pairs(self, folder):
        """
        The messages indexed in C{folder}: a L{dict} from C{(id, key)} to
        C{(uid, flags text)} (kept, and read again only when another
        connection wrote).
        """
        self.open()
        version = self._execute("PRAGMA data_version").fetchone()[0]
        if self._pairs is None or version != self._version:
            self._pairs = {}
            self._version = version
        if folder not in self._pairs:
            self._pairs[folder] = {
                (msgid, bytes(key)): (uid, flags) for msgid, key, uid, flags in self._execute(
                    "SELECT id, key, uid, flags FROM msg WHERE folder=?", (folder,))}
        return self._pairs[folder]

    def meta(self, name):
        self.open()
        row = self._execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else row[0]

    def summaries(self, folder, msgids):
        """
        The summaries of messages of C{folder} by id (those indexed), with
        their content keys: a L{dict} from C{(id, key)} to
        L{MessageSummary}.
        """
        self.open()
        found = {}
        ids = list(dict.fromkeys(msgids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for msgid, key, summary, uid, flags in self._execute(
                    "SELECT id, key, summary, uid, flags FROM msg"
                    " WHERE folder=? AND id IN ({})"
                    .format(",".join("?" * len(chunk))), [folder] + chunk):
                found[(msgid, bytes(key))] = summaryFromRow(summary, uid, flags, folder)
        return found

    # -- changes

    def update(self, folder, remove, add, stamp=None, snapshot=None, changed=()):
        """
        In one transaction: forget the messages C{remove} (C{(id, key)}
        pairs), index C{add} (C{(key, summary, document)} triples), give
        new UIDs and flags to C{changed} (C{(id, key, uid, flags)}), and
        record the mailbox's stamp and entries snapshot.
        """
        self.open()
        db = self._db
        pairs = self.pairs(folder)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for msgid, key in remove:
                    for (rowid,) in db.execute(
                            "SELECT rowid FROM msg WHERE folder=? AND id=? AND key=?",
                            (folder, msgid, key)).fetchall():
                        db.execute("DELETE FROM text WHERE rowid=?", (rowid,))
                        db.execute("DELETE FROM msg WHERE rowid=?", (rowid,))
                    pairs.pop((msgid, key), None)
                for msgid, key, uid, flags in changed:
                    db.execute("UPDATE msg SET uid=?, flags=? WHERE folder=? AND id=? AND key=?",
                               (uid, _flagsText(flags), folder, msgid, key))
                    if (msgid, key) in pairs:
                        pairs[(msgid, key)] = (uid, _flagsText(flags))
                rows, texts = [], []
                (top,) = db.execute("SELECT coalesce(max(rowid), 0) FROM msg").fetchone()
                for key, summary, doc in add:
                    if (summary.id, key) in pairs:
                        continue
                    # A message whose text changed (its flags, another
                    # tool's rewrite) keeps its place in the order.
                    old = db.execute("SELECT rowid, key FROM msg WHERE folder=? AND id=?",
                                     (folder, summary.id)).fetchone()
                    if old is not None:
                        rowid = old[0]
                        db.execute("DELETE FROM text WHERE rowid=?", (rowid,))
                        db.execute("DELETE FROM msg WHERE rowid=?", (rowid,))
                        pairs.pop((summary.id, bytes(old[1])), None)
                    else:
                        top += 1
                        rowid = top
                    rows.append((
                        rowid, summary.id, folder, key, summary.uid, int(summary.arrived),
                        _ordinal(Q.arrivedDay(summary.arrived)),
                        _ordinal(doc.sentDay or datetime.date.fromisoformat(
                            summary.date[:10])),
                        summary.size, doc.attachments, _flagsText(summary.flags),
                        _summaryJSON(summary),
                        json.dumps(doc.headers, ensure_ascii=False)))
                    texts.append((rowid,) + tuple(doc.fields[f] for f in _FIELDS))
                    pairs[(summary.id, key)] = (summary.uid, _flagsText(summary.flags))
                db.executemany(
                    "INSERT INTO msg(rowid, id, folder, key, uid, arrived, arrivedday,"
                    " sentday, size, attachments, flags, summary, headers)"
                    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.executemany(
                    "INSERT INTO text(rowid, from_, to_, cc, bcc, subject, body,"
                    " attachment, headers) VALUES(?,?,?,?,?,?,?,?,?)", texts)
                if stamp is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)",
                               ("stamp:" + folder, json.dumps(stamp)))
                if snapshot is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)",
                               ("entries:" + folder, snapshot))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._pairs = None
                raise
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise IndexDamaged(str(e))
        self._version = self._execute("PRAGMA data_version").fetchone()[0]

    def keepOnly(self, folders):
        """
        Forget the messages of folders not among C{folders} (folders
        deleted, by any process), so that a search of every folder needs no
        folder test.
        """
        self.open()
        marks = ",".join("?" * len(folders))
        stale = self._execute(
            "SELECT rowid FROM msg WHERE folder NOT IN ({})".format(marks),
            list(folders)).fetchall()
        if not stale:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for (rowid,) in stale:
                self._db.execute("DELETE FROM text WHERE rowid=?", (rowid,))
                self._db.execute("DELETE FROM msg WHERE rowid=?", (rowid,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._pairs = None

    def stamp(self, folder):
        """
        The mailbox stamp the index of C{folder} last caught up with, or
        L{None}.
        """
        value = self.meta("stamp:" + folder)
        if value is None:
            return None
        return tuple(tuple(s) if s is not None else None for s in json.loads(value))

    def snapshot(self, folder):
        """
        The entries snapshot of C{folder}: C{(ino, size, entries)} or
        L{None}.
        """
        value = self.meta("entries:" + folder)
        if value is None:
            return None
        ino, size = struct.unpack_from("<QQ", value)
        return ino, size, unpackEntries(value[16:])

    # -- searching

    def search(self, query, folders, start=0, limit=None):
        """
        The page of messages of C{folders} (a list of names, or L{None} for
        all) matching C{query}, newest first.

        @return: C{(total, [MessageSummary, ...])}
        """
        self.open()
        where, params = compileQuery(query)
        if folders is not None:
            where = "({}) AND folder IN ({})".format(where, ",".join("?" * len(folders)))
            params = params + list(folders)
        if where == _FTS_ONLY:
            # A query of words alone: counted by the text index, no row read.
            counting = "SELECT count(*) FROM text WHERE text MATCH ?"
        else:
            counting = "SELECT count(*) FROM msg WHERE " + where
        total = self._execute(counting, params).fetchone()[0]
        # Newest first: by arrival, then by order of indexing.  Many matches:
        # walk the arrival index from the newest and stop at the page's end;
        # few: take them and sort them.
        plan = "INDEXED BY msg_arrived " if total > ORDER_WALK else ""
        sql = ("SELECT summary, uid, flags, folder FROM msg {}WHERE {}"
               " ORDER BY arrived DESC, rowid DESC").format(plan, where)
        page = params
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            page = params + [limit, start]
        elif start:
            sql += " LIMIT -1 OFFSET ?"
            page = params + [start]
        return total, [summaryFromRow(*row) for row in self._execute(sql, page)]


def _headerContains(headers, name, text):
    return 1 if Q.headerContains(json.loads(headers), name, text) else 0


_FTS_ONLY = "rowid IN (SELECT rowid FROM text WHERE text MATCH ?)"


def _phrase(words):
    return '"' + " ".join(words) + '"'


def _matchText(node):
    fields = Q.BARE_FIELDS if node.field == "text" else (node.field,)
    return "{{{}}} : {}*".format(" ".join(_COLUMNS[f] for f in fields),
                                 _phrase(node.words))


def _matchOf(terms):
    """
    The FTS5 expression of the word terms of an AND (those with words, and
    their negations when at least one is positive), and the other terms.
    """
    positive, negative, rest = [], [], []
    for term in terms:
        if type(term) is Q.Text and not term.substring and term.words:
            positive.append(_matchText(term))
        elif (type(term) is Q.Not and type(term.term) is Q.Text
              and not term.term.substring and term.term.words):
            negative.append(term)
        else:
            rest.append(term)
    if len(positive) + len(negative) < 2 or not positive:
        return None, terms
    expression = " AND ".join("(" + p + ")" for p in positive)
    for term in negative:
        expression += " NOT (" + _matchText(term.term) + ")"
    return expression, rest


def renameFolders(node, keys):
    """
    C{node} with each L{Q.Folder} naming the index's key of that folder
    (C{keys}: folder name to key), or a key no message has.
    """
    kind = type(node)
    if kind in (Q.And, Q.Or):
        return kind([renameFolders(t, keys) for t in node.terms])
    if kind is Q.Not:
        return Q.Not(renameFolders(node.term, keys))
    if kind is Q.Folder:
        return Q.Folder(keys.get(node.name, "none:" + node.name))
    return node


def compileQuery(node):
    """
    A query tree as an SQL condition on C{msg} and its parameters: the
    same answer as L{twisted_mail.mail.query.matches}.

    @rtype: C{(str, list)}
    """
    kind = type(node)
    if kind is Q.All:
        return "1", []
    if kind in (Q.And, Q.Or):
        if not node.terms:
            return ("1" if kind is Q.And else "0"), []
        parts, params = [], []
        terms = node.terms
        if kind is Q.And:
            match, terms = _matchOf(terms)
            if match is not None:
                parts.append("(" + _FTS_ONLY + ")")
                params.append(match)
        for term in terms:
            sql, p = compileQuery(term)
            parts.append("(" + sql + ")")
            params.extend(p)
        return (" AND " if kind is Q.And else " OR ").join(parts), params
    if kind is Q.Not:
        sql, params = compileQuery(node.term)
        return "NOT (" + sql + ")", params
    if kind is Q.Text and not node.substring and node.words:
        return _FTS_ONLY, [_matchText(node)]
    if kind is Q.Text:
        fields = Q.BARE_FIELDS if node.field == "text" else (node.field,)
        columns = [_COLUMNS[f] for f in fields]
        words = node.words
        if not words:
            return "1", []
        if node.substring:
            needle = " ".join(words)
            return ("rowid IN (SELECT rowid FROM text WHERE {})".format(
                " OR ".join("instr({}, ?) > 0".format(c) for c in columns)),
                [needle] * len(columns))
        return _FTS_ONLY, [_matchText(node)]
    if kind is Q.Header:
        return "hdr(headers, ?, ?)", [node.name, node.text]
    if kind is Q.Folder:
        return "folder = ?", [node.name]
    if kind is Q.Flag:
        return "instr(flags, ?) > 0", [" " + node.flag + " "]
    if kind is Q.HasAttachment:
        return "attachments > 0", []
    if kind is Q.Date:
        column = "arrivedday" if node.field == "arrived" else "sentday"
        op = {"before": "<", "on": "=", "since": ">="}[node.op]
        return "{} {} ?".format(column, op), [node.day.toordinal()]
    if kind is Q.Size:
        return "size {} ?".format(">" if node.op == "larger" else "<"), [
            min(node.octets, 2 ** 62)]
    if kind is Q.Ids:
        return "id IN (SELECT value FROM json_each(?))", [json.dumps(sorted(node.ids))]
    raise TypeError("not a query node: {!r}".format(node))
