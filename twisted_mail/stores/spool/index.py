"""
The spool's search index: one SQLite database per user beside the mail
(C{.<user>.index}), holding each message's summary, its searchable text in
an FTS5 table, and a snapshot of where the messages lie in the mbox file.
Synchronous code for the index thread; the reactor's side is
L{twisted_mail.stores.spool.indexing}, a query's FTS5 and SQL
L{twisted_mail.stores.spool.indexquery}.

The mbox files stay the truth.  The index is a cache of them, checked
against them before it answers (their size, inode, modification time and
the delete journal's, see L{mailboxStamp}); a missing, stale, truncated or
unreadable index is thrown away and rebuilt from them.  See docs/search.rst.

Tables::

    meta(name PRIMARY KEY, value)      schema version, the entries snapshot
    msg(rowid, id, folder, key, uid, arrived, arrivedday, sentday, size,
        attachments, flags, summary, headers)  (flags and uid outside the
                                       summary: they change without the text)
    text(body, from_, to_, cc, subject, attachment, marks)
                                       FTS5, rowid = msg.rowid; the token
                                       text of L{twisted_mail.mail.query}
                                       of the fields a bare word looks in
                                       (so that it needs no column filter:
                                       FTS5 then counts without reading
                                       positions), and the words of the
                                       short fields again, each marked
                                       with its field
                                       (C{indexquery.fieldMark}: C{from:}
                                       needs no column filter either)
    extra(bcc, headers)                the same, of the other fields
    grams(g)                           FTS5 without text or positions: each
                                       word of C{indexquery.COMMON_WORDS}
                                       and the word after it in a field of
                                       C{text}, as one token
                                       (C{the\u00b7project}), so that a
                                       phrase starting with one is one
                                       list, not positions in every
                                       message holding both words
    words(word)                        every word ever indexed in the fields
                                       a query's words look in (a word of a
                                       message gone may stay: harmless),
                                       and those of each short field marked
                                       with it (C{indexquery.fieldWord})

A message's rowid is its place in the newest-first order (C{indexrows.orderKey}: its
arrival time, then the order of indexing, both descending), so that FTS5
gives a page of matches newest first by walking its own lists forwards and
stopping at the page's end, whatever the number of matches.  A word typed as a prefix
is looked up in C{words} and searched as the few whole words it stands
for (FTS5 merges every list of a prefix before it can answer; whole words
it steps through, skipping with the rarest).
"""

import json
import os
import sqlite3
import stat
import struct

from twisted.logger import Logger

from twisted_mail.mail import query as Q
from twisted_mail.stores.spool.indexquery import (  # noqa: F401 (renameFolders: the store's)
    _SHORT_FIELDS,
    fieldWord,
    gramText,
    renameFolders,
    splitQuery,
)
from twisted_mail.stores.spool.indexrows import (
    _OrderKeys,
    _first,
    _flagsText,
    prepareRow,
    summaryFromRow,
)

log = Logger()

#: The schema this code writes; an index of another version is rebuilt.
SCHEMA_VERSION = 9

#: A prefix standing for more whole words than this is searched as a
#: prefix.
MAX_EXPANSION = 32

#: FTS5's own settings for its incremental merges, and what a build
#: holds merges at (L{SearchDatabase.holdMerges}): a segment a commit, at
#: most this many on a level.
_AUTOMERGE = 4
_CRISIS_MERGE = 16
_HELD_CRISIS_MERGE = 64

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
CREATE TABLE IF NOT EXISTS words(word TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS text USING fts5(
    body, from_, to_, cc, subject, attachment, marks,
    tokenize = 'ascii', detail = full, columnsize = 0
);
CREATE VIRTUAL TABLE IF NOT EXISTS extra USING fts5(
    bcc, headers,
    tokenize = 'ascii', detail = full, columnsize = 0
);
CREATE VIRTUAL TABLE IF NOT EXISTS grams USING fts5(
    g, tokenize = 'ascii', detail = none, content = '', columnsize = 0
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
#: A message's light-listing facts (L{twisted_mail.stores.spool.entries}):
#: its POP3 size (-1: not known) and arrival time.
_FACTS = struct.Struct("<qq")


def packEntries(entries, facts=None):
    """
    C{(start, end, key, msgid, uid, flags)} tuples as bytes: their count,
    the fixed parts, then each one's facts (C{facts}: a C{(size, arrived)}
    pair or L{None} per entry), then the ids, then the flags
    (space-separated), each list separated by newlines.
    """
    fixed = b"".join(_ENTRY.pack(start, end, key, uid) for start, end, key, _, uid, _
                     in entries)
    known = b"".join(_FACTS.pack(*(each or (-1, 0)))
                     for each in (facts or [None] * len(entries)))
    ids = "\n".join(msgid or "" for _, _, _, msgid, _, _ in entries)
    flags = "\n".join(" ".join(sorted(f)) for *_, f in entries)
    tail = (ids + "\x00" + flags).encode("utf-8")
    return struct.pack("<Q", len(entries)) + fixed + known + tail


def unpackEntries(data):
    """
    The inverse of L{packEntries}: C{(entries, facts)}.
    """
    (count,) = struct.unpack_from("<Q", data)
    end = 8 + count * _ENTRY.size
    if not count:
        return [], []
    factsEnd = end + count * _FACTS.size
    ids, flags = data[factsEnd:].decode("utf-8").split("\x00")
    flags = flags.split("\n")
    # One set per distinct flags text (a mailbox has a handful).
    sets = {f: frozenset(f.split()) for f in set(flags)}
    entries = [(start, stop, key, msgid or None, uid, sets[f])
               for (start, stop, key, uid), msgid, f in zip(
                   _ENTRY.iter_unpack(data[8:end]), ids.split("\n"), flags)]
    facts = [None if size < 0 else (size, arrived)
             for size, arrived in _FACTS.iter_unpack(data[end:factsEnd])]
    return entries, facts


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
        self._words = None

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
            if st is None:
                # Made here, readable by the server's user alone.  Never
                # opened (and closed) here when it exists: closing any
                # descriptor of a file drops every POSIX lock this process
                # holds on it, the shared lock of this process's other
                # connections to it (the reader's, the writer's) among them;
                # another process closing its own could then take the
                # database for its last user, checkpoint and delete the WAL
                # these still write to, and the file ends up malformed
                # (seen in the crash harness with --workers 2).
                try:
                    os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL
                                     | os.O_NOFOLLOW, 0o600))
                except FileExistsError:
                    pass
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
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                # Another process (the indexing process, another worker)
                # holds it longer than the timeout: not damage; try again.
                raise
            raise IndexDamaged(str(e))
        self._db = db
        self._ino = os.stat(self.path).st_ino
        self._pairs = None
        self._words = None

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
        self._words = None

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

    def update(self, folder, remove, add, stamp=None, snapshot=None, changed=(),
               stale=False):
        """
        In one transaction: forget the messages C{remove} (C{(id, key)}
        pairs), index C{add} (C{(key, summary, document)} triples, the
        document a L{SearchDocument} or what L{prepareRow} made of it), give
        new UIDs and flags to C{changed} (C{(id, key, uid, flags)}), and
        record the mailbox's stamp and entries snapshot; or, C{stale}, forget
        the stamp (the next search syncs in full).
        """
        self.open()
        db = self._db
        newWords = ()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                # What is indexed as of this transaction: another process
                # (the indexing process, a worker) may have just indexed
                # the same messages.
                pairs = self.pairs(folder)
                for msgid, key in remove:
                    for (rowid,) in db.execute(
                            "SELECT rowid FROM msg WHERE folder=? AND id=? AND key=?",
                            (folder, msgid, key)).fetchall():
                        _deleteText(db, rowid)
                        db.execute("DELETE FROM msg WHERE rowid=?", (rowid,))
                    pairs.pop((msgid, key), None)
                for msgid, key, uid, flags in changed:
                    db.execute("UPDATE msg SET uid=?, flags=? WHERE folder=? AND id=? AND key=?",
                               (uid, _flagsText(flags), folder, msgid, key))
                    if (msgid, key) in pairs:
                        pairs[(msgid, key)] = (uid, _flagsText(flags))
                rows, texts, extras, grams = [], [], [], []
                keys = _OrderKeys(db)
                known = self._knownWords()
                batchWords = set()
                # A few additions (a catch-up) look their ids up; a build
                # takes them all at once.
                indexedIds = {msgid for msgid, _ in pairs} if len(add) > 64 else None
                for key, summary, doc in add:
                    if (summary.id, key) in pairs:
                        continue
                    arrivedDay, sentDay, attachments, summaryText, headersText, words, \
                        fields, extra, gram = doc if type(doc) is tuple else prepareRow(
                            summary, doc)
                    # A message whose text changed (its flags, another
                    # tool's rewrite) keeps its place in the order.
                    old = None
                    if indexedIds is None or summary.id in indexedIds:
                        old = db.execute("SELECT rowid, key FROM msg WHERE folder=? AND id=?",
                                         (folder, summary.id)).fetchone()
                    rowid = None
                    if old is not None:
                        _deleteText(db, old[0])
                        db.execute("DELETE FROM msg WHERE rowid=?", (old[0],))
                        pairs.pop((summary.id, bytes(old[1])), None)
                        if keys.sameSecond(old[0], summary.arrived):
                            rowid = old[0]
                    if rowid is None:
                        rowid = keys.next(summary.arrived)
                    flags = _flagsText(summary.flags)
                    rows.append((
                        rowid, summary.id, folder, key, summary.uid, int(summary.arrived),
                        arrivedDay, sentDay, summary.size, attachments,
                        flags, summaryText, headersText))
                    texts.append((rowid,) + fields)
                    extras.append((rowid,) + extra)
                    if gram:
                        grams.append((rowid, gram))
                    batchWords.update(words.split())
                    if indexedIds is not None:
                        indexedIds.add(summary.id)
                    pairs[(summary.id, key)] = (summary.uid, flags)
                # In rowid order: FTS5 writes out what it holds whenever a
                # rowid goes down (a segment per message, otherwise).
                rows.sort(key=_first)
                texts.sort(key=_first)
                extras.sort(key=_first)
                grams.sort(key=_first)
                newWords = batchWords - known
                db.executemany("INSERT OR IGNORE INTO words VALUES(?)",
                               [(w,) for w in newWords])
                db.executemany(
                    "INSERT INTO msg(rowid, id, folder, key, uid, arrived, arrivedday,"
                    " sentday, size, attachments, flags, summary, headers)"
                    " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.executemany(
                    "INSERT INTO text(rowid, body, from_, to_, cc, subject, attachment,"
                    " marks) VALUES(?,?,?,?,?,?,?,?)", texts)
                db.executemany("INSERT INTO extra(rowid, bcc, headers) VALUES(?,?,?)",
                               extras)
                db.executemany("INSERT INTO grams(rowid, g) VALUES(?,?)", grams)
                if stale:
                    db.execute("DELETE FROM meta WHERE name=?", ("stamp:" + folder,))
                if stamp is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)",
                               ("stamp:" + folder, json.dumps(stamp)))
                    if db.execute("SELECT v FROM text_config WHERE k='automerge'"
                                  ).fetchone() == (0,):
                        # The end of a sync that held merges (holdMerges),
                        # or of one that stopped half way: merge as usual.
                        _setMerging(db, _AUTOMERGE, _CRISIS_MERGE)
                if snapshot is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)",
                               ("entries:" + folder, self._packSnapshot(folder, *snapshot)))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._pairs = None
                self._words = None
                raise
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise IndexDamaged(str(e))
        known.update(newWords)
        self._version = self._execute("PRAGMA data_version").fetchone()[0]

    def _knownWords(self):
        """
        The words of C{words} (read once per connection: only this
        connection's writes and other processes' add to it, and a word
        missed is only inserted again).
        """
        if self._words is None:
            self._words = {w for (w,) in self._db.execute("SELECT word FROM words")}
        return self._words

    def holdMerges(self):
        """
        Before a large catch-up (a build), which L{optimize} ends: FTS5
        merges no segments meanwhile (it would merge the same text again
        and again: about 15 % of a build's writing), until the L{update}
        that records the mailbox's stamp (the sync's last, or the next
        sync's, should this one stop half way).
        """
        self.open()
        try:
            _setMerging(self._db, 0, _HELD_CRISIS_MERGE)
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise IndexDamaged(str(e))

    def optimize(self):
        """
        Merge the text index into one b-tree (after a large catch-up: FTS5
        then skips through its lists instead of merging many segments at
        every search; about 35 microseconds a message).
        """
        self.open()
        self._execute("INSERT INTO text(text) VALUES('optimize')")
        self._execute("INSERT INTO extra(extra) VALUES('optimize')")
        self._execute("INSERT INTO grams(grams) VALUES('optimize')")
        # The merge rewrote the whole index into the WAL: give the space back.
        self._execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
                _deleteText(self._db, rowid)
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
        The entries snapshot of C{folder}: C{(ino, size, entries, facts)}
        or L{None}.
        """
        value = self.meta("entries:" + folder)
        if value is None:
            return None
        ino, size = struct.unpack_from("<QQ", value)
        return (ino, size) + unpackEntries(value[16:])

    def saveSnapshot(self, folder, snapshot):
        """
        Record an entries snapshot alone (C{snapshot} as L{update} takes
        it), for a mailbox read in full but not indexed.
        """
        self.update(folder, (), (), snapshot=snapshot)

    def _packSnapshot(self, folder, ino, size, entries, pairs, facts):
        """
        An entries snapshot as bytes: C{entries} as
        L{twisted_mail.stores.spool.snapshot.EntriesSnapshot.entriesState}
        gives them, C{pairs} their C{(id, key)}, C{facts} their C{(size,
        arrived)} where the mailbox knew them (L{None} elsewhere: taken
        from the messages indexed, so that a restart's light listing reads
        no record).
        """
        if None in facts:
            indexed = {(msgid, bytes(key)): (size, arrived) for msgid, key, size, arrived
                       in self._db.execute(
                           "SELECT id, key, size, arrived FROM msg WHERE folder=?", (folder,))}
            facts = [each if each is not None else indexed.get(pair)
                     for pair, each in zip(pairs, facts)]
        return struct.pack("<QQ", ino, size) + packEntries(entries, facts)

    # -- searching

    def search(self, query, folders, start=0, limit=None, names=None):
        """
        The page of messages of C{folders} (a list of names, or L{None} for
        all) matching C{query}, newest first.  C{names} maps the folders'
        names in the index to those the summaries show.

        @return: C{(total, [MessageSummary, ...])}
        """
        self.open()
        table, match, where, params = splitQuery(query, self._expand)
        if folders is not None:
            where = "({}) AND folder IN ({})".format(where, ",".join("?" * len(folders)))
            params = params + list(folders)
        if match is not None:
            # Driven by the text index, newest first (rowids are the order):
            # a page costs its own length, not the number of matches.
            source = "{0} JOIN msg ON msg.rowid = {0}.rowid WHERE {0} MATCH ? AND ".format(
                table)
            order = table + ".rowid"
            params = [match] + params
        else:
            source = "msg WHERE "
            order = "msg.rowid"
        sql = ("SELECT summary, uid, flags, folder FROM {}({}) ORDER BY {}"
               .format(source, where, order))
        page = params
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            page = params + [limit, start]
        elif start:
            sql += " LIMIT -1 OFFSET ?"
            page = params + [start]
        names = names or {}
        sets = {}  # one set per distinct flags text
        found = [summaryFromRow(text, uid, sets.get(flags) or sets.setdefault(
                     flags, frozenset(flags.split())), names.get(folder, folder))
                 for text, uid, flags, folder in self._execute(sql, page)]
        if limit != 0 and (found or not start) and (limit is None or len(found) < limit):
            # The page ends before the matches do: it counted them.
            return start + len(found), found
        if match is not None and where == "1":
            # Words alone: counted by the text index, no row read.
            counting = "SELECT count(*) FROM {0} WHERE {0} MATCH ?".format(table)
        else:
            counting = "SELECT count(*) FROM {}({})".format(source, where)
        return self._execute(counting, params).fetchone()[0], found

    def _expand(self, prefix, field="text"):
        """
        The whole words indexed in C{field} (C{"text"}: any word field)
        that start with C{prefix}, or L{None} when there are more than
        L{MAX_EXPANSION}.
        """
        mark = fieldWord(field, "") if field in _SHORT_FIELDS else ""
        start = mark + prefix
        found = [w[len(mark):] for (w,) in self._execute(
            "SELECT word FROM words WHERE word >= ? ORDER BY word LIMIT ?",
            (start, MAX_EXPANSION + 1)) if w.startswith(start)]
        # (The words after the prefix's own come in order: those that do not
        # start with it end the list.)
        return found if len(found) <= MAX_EXPANSION else None


def _setMerging(db, automerge, crisismerge):
    """
    Set FTS5's incremental merge settings of its three tables.
    """
    for table in ("text", "extra", "grams"):
        for name, value in (("automerge", automerge), ("crisismerge", crisismerge)):
            db.execute("INSERT INTO {0}({0}, rank) VALUES(?, ?)".format(table), (name, value))


def _deleteText(db, rowid):
    # C{grams} keeps no text: its tokens are made again from C{text}'s, as
    # they were when inserted, for FTS5 to delete.
    row = db.execute("SELECT body, from_, to_, cc, subject, attachment FROM text"
                     " WHERE rowid=?", (rowid,)).fetchone()
    gram = gramText(row) if row is not None else ""
    if gram:
        db.execute("INSERT INTO grams(grams, rowid, g) VALUES('delete', ?, ?)", (rowid, gram))
    db.execute("DELETE FROM text WHERE rowid=?", (rowid,))
    db.execute("DELETE FROM extra WHERE rowid=?", (rowid,))


def _headerContains(headers, name, text):
    return 1 if Q.headerContains(json.loads(headers), name, text) else 0
