"""
The reactor's side of a spool mailbox's search index
(L{twisted_mail.stores.spool.index}): keeping it in step with the mbox file,
answering searches from it, and giving the listing its summaries after a
restart.

In step: a sync compares the messages the mbox file holds (ids and content
keys, through the mailbox's own reader, under its locks) with those the
index holds, parses the new ones in a worker thread and forgets the gone.
A sync is started shortly after each delivery batch is acknowledged (never
before: indexing does not delay an acknowledgement), and before a search
whenever the mailbox's stamp (inode, size, modification time of the file
and of its delete journal) differs from the one the index last saw, which
is how changes by other processes and other tools (mutt, procmail) are
noticed.  So a search always answers as a scan of the mailbox would.

In a server the syncs after deliveries to INBOX run in its indexing process
(L{twisted_mail.stores.spool.indexerprocess.IndexerProcess}), and a sync of
L{PARALLEL_FROM} new messages or more may parse them in several processes
(L{MailboxIndex.parsers}) while this one writes the index.
"""

import bisect
import os
import sqlite3
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_mail import errors
from twisted_mail.mail.model import INBOX
from twisted_mail.stores.spool.index import (
    IndexDamaged,
    SearchDatabase,
    indexName,
    mailboxStamp,
)
from twisted_mail.stores.spool.indexrows import _flagsText, prepareRow

log = Logger()

#: Messages read from the mbox file and indexed per step of a sync.
BATCH = 500

#: From this many new messages on, a sync with L{MailboxIndex.parsers} > 1
#: parses in that many processes.
PARALLEL_FROM = 2000

#: How often at most the entries snapshot (for a quick start) is written,
#: in seconds, while mail keeps arriving.
SNAPSHOT_INTERVAL = 10.0

#: How long after a delivery the index starts catching up, in seconds: the
#: deliveries of that time are indexed together (a search catches up by
#: itself at once, so this only keeps the next search quick).
KICK_DELAY = 0.5

#: The most deliveries handed over (L{MailboxIndex.delivered}) that wait for
#: a kick; beyond, the indexing process is told to read the mailbox itself.
HANDOVER_LIMIT = 50000

#: Handed-over records read in one piece up to this many bytes.
HANDOVER_READ = 1 << 22



class _Everything:
    """
    A container holding everything: a listing through it reads no record.
    """

    def __contains__(self, item):
        return True


def _entriesSnapshot(mailbox):
    """
    In a mailbox job, under its locks: the entries snapshot as
    L{SearchDatabase.update} takes it, with each message's size and
    arrival time where the mailbox knows them (the light listing's facts,
    or a summary; the writer adds those of the messages indexed).
    """
    mbox = mailbox.mbox
    ino, size, entries = mbox.entriesState()
    pairs = [(e.msgid, e.key) for e in mbox.entries]
    return ino, size, entries, pairs, [_knownFacts(mailbox, pair) for pair in pairs]


def _knownFacts(mailbox, pair):
    """
    The C{(size, arrived)} the mailbox knows of a message, or L{None}.
    """
    found = mailbox.facts.get(pair)
    if found is None:
        summary = mailbox.summaries.get(pair)
        if summary is not None:
            found = (summary.size, summary.arrived)
    return found


class MailboxIndex:
    """
    The search index of one spool mailbox (INBOX; see docs/search.rst for
    how folders extend it).

    @param mailbox: the store's C{_Mailbox} (its C{mbox} and C{run}).
    @param userid: whose index it is (by default the mailbox file's name).
    @param folderKey: what names the folder in the index.
    @param readRecord: C{readRecord(msgid, record)} gives the
        C{(summary, document)} of an mbox record, in a worker thread.
    @param inThread: runs a function in a worker thread, giving a
        L{Deferred}.
    @param progress: called with C{(done, total)} as a large sync goes, or
        L{None}.
    """

    def __init__(self, mailbox, spoolPath, dirfd, readRecord, inThread,
                 reactor, clock=time.monotonic, progress=None, userid=None,
                 folderKey=INBOX):
        self._mailbox = mailbox
        self._userid = userid or mailbox.mbox.userid
        self._dirfd = dirfd
        self._readRecord = readRecord
        self._inThread = inThread
        self._reactor = reactor
        self._clock = clock
        self.progress = progress
        # What names the folder in the index: INBOX, or its file's name (a
        # rename leaves it; the store maps it to the folder's name).
        self.folderKey = folderKey
        path = os.path.join(spoolPath, indexName(self._userid))
        self.writer = SearchDatabase(path)
        self.reader = SearchDatabase(path)
        self._writeLock = defer.DeferredLock()
        self._readLock = defer.DeferredLock()
        self._waiting = None
        self._kick = None
        self._snapshotAt = None
        # The newest serial of the mailbox's entries this process has
        # indexed up to (L{catchUp}), or None before the first full sync.
        self._caughtUp = None
        # Deliveries handed over for the indexing process (L{delivered}),
        # from the mailbox thread to the reactor's kick.
        self._handedLock = threading.Lock()
        self._handed = []
        # Whether the next kick has the process read the mailbox under its
        # locks instead (a plain kick, or too much handed over).
        self._plain = False

    # -- the entries snapshot, for the mbox reader's quick start

    def saveSnapshot(self):
        """
        After a light listing read many records (a big mailbox another
        program wrote, never indexed): record the entries snapshot with
        their facts now, so that a restart reads none of them again.  At
        most every L{SNAPSHOT_INTERVAL} seconds; a failure is only logged.
        """
        now = self._clock()
        if self._snapshotAt is not None and now - self._snapshotAt < SNAPSHOT_INTERVAL:
            return defer.succeed(None)
        self._snapshotAt = now
        mailbox = self._mailbox

        def look():
            with mailbox.mbox.locked():
                return _entriesSnapshot(mailbox)

        def write(snapshot):
            return self._writeLock.run(
                self._inThread, self.writer.saveSnapshot, self.folderKey, snapshot)

        def failed(f):
            log.warn("search index of {user}: entries snapshot not saved ({why})",
                     user=self._userid, why=f.getErrorMessage())

        return mailbox.run(look).addCallback(write).addErrback(failed)

    def loadSnapshot(self):
        """
        In the mailbox thread, at the mbox reader's first look: the entries
        snapshot, or L{None}.
        """
        db = SearchDatabase(self.writer.path)
        try:
            found = db.snapshot(self.folderKey)
        except IndexDamaged:
            return None
        finally:
            db.close()
        if found is None:
            return None
        ino, size, entries, facts = found
        # The light listing's facts (keyed by id and content: right whether
        # or not the reader takes the snapshot).
        known = self._mailbox.facts
        for (_, _, key, msgid, _, _), each in zip(entries, facts):
            if each is not None and msgid is not None:
                known[(msgid, key)] = each
        return ino, size, entries

    # -- keeping in step

    def kick(self, plain=True):
        """
        Catch up with the mailbox soon (after a delivery was acknowledged).

        @param plain: whether the indexing process reads the mailbox under
            its locks (L{False}: it was handed the deliveries,
            L{delivered}).
        """
        if plain:
            with self._handedLock:
                self._plain = True
        if self._kick is None or not self._kick.active():
            self._kick = self._reactor.callLater(KICK_DELAY, self._kicked)

    #: How many processes parse the messages of a large sync
    #: (L{PARALLEL_FROM}); 1: this one.
    parsers = 1

    #: The server's indexing process
    #: (L{twisted_mail.stores.spool.indexerprocess.IndexerProcess}) that catches
    #: this INBOX up after deliveries, or L{None}: this process does.
    remote = None

    def kickIndexer(self):
        """
        After deliveries through the journal: have the indexing process
        catch up soon, when there is one (a server's or a worker's; a store
        without one, such as a command-line tool's, leaves it to the next
        search).
        """
        if self.remote is not None:
            self.kick(plain=False)

    def delivered(self, ino, entries):
        """
        In the mailbox thread, once deliveries through the journal are
        written to the mbox file (inode C{ino}; C{entries} are the file's
        new entries): the indexing process will be told where they are
        with their ids, content keys and UIDs, so that it reads them
        without the mailbox's locks, which would hold up the deliveries
        that follow (L{indexHanded}).
        """
        if self.remote is None:
            return
        with self._handedLock:
            if len(self._handed) + len(entries) > HANDOVER_LIMIT:
                self._plain = True
                return
            self._handed.extend((ino, e.start, e.end, e.msgid, e.key.hex(), e.uid)
                                for e in entries)

    def _kicked(self):
        self._kick = None
        with self._handedLock:
            handed, self._handed = self._handed, []
            if self._plain:
                handed, self._plain = None, False
        if self.remote is not None:
            if handed == []:
                # Handed over by the kick before (its batch's deliveries
                # came in before their own kick was asked for).
                return
            if self.remote.kick(self._userid, handed):
                return
        self.sync().addErrback(lambda f: None)

    def stop(self):
        if self._kick is not None and self._kick.active():
            self._kick.cancel()
        self._kick = None

    def sync(self):
        """
        Bring the index in step with the mailbox; syncs asked for while one
        waits to start share it.

        @return: a L{Deferred} firing with L{None} once done, or failing
            with L{TemporaryFailure} (the index could not be written) or
            the mailbox's own error.
        """
        d = defer.Deferred()
        if self._waiting is not None:
            self._waiting.append(d)
            return d
        waiting = self._waiting = [d]

        def start():
            self._waiting = None
            return self._syncRepairing()

        def finish(result):
            for each in waiting:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(None)

        self._writeLock.run(start).addBoth(finish)
        return d

    @defer.inlineCallbacks
    def _syncRepairing(self):
        try:
            try:
                yield self._syncOnce()
            except IndexDamaged as e:
                log.warn("search index of {user} unusable ({why}): rebuilding it "
                         "from the mailbox", user=self._userid, why=str(e))
                yield self._inThread(self.writer.discard)
                yield self._syncOnce()
        except errors.MailError:
            raise
        except Exception:
            log.failure("search index of {user}: sync failed", user=self._userid)
            raise errors.TemporaryFailure("the search index can't be written")

    @defer.inlineCallbacks
    def _syncOnce(self):
        mailbox = self._mailbox
        mbox = mailbox.mbox
        known = yield self._inThread(lambda: dict(self.writer.pairs(self.folderKey)))
        now = self._clock()
        wantSnapshot = self._snapshotAt is None or now - self._snapshotAt >= SNAPSHOT_INTERVAL

        def look():
            stamp = mailboxStamp(mbox._dirfd, mbox.userid, mbox.journalName)
            with mbox.locked():
                live = [(e.msgid, e.key, e.uid, e.flags) for e in mbox.entries
                        if not e.deleted]
                snapshot = _entriesSnapshot(mailbox) if wantSnapshot else None
                top = _newestSerial(mbox)
            return stamp, live, snapshot, top

        stamp, live, snapshot, top = yield mailbox.run(look)
        liveSet = {(msgid, key) for msgid, key, _, _ in live}
        new = [(msgid, key) for msgid, key, _, _ in live if (msgid, key) not in known]
        changed = [(msgid, key, uid, flags) for msgid, key, uid, flags in live
                   if (msgid, key) in known and known[(msgid, key)] != (uid, _flagsText(flags))]
        if len(new) > BATCH and self.progress is None:
            log.info("indexing {count} messages of {user}", count=len(new),
                     user=self._userid)
        # A build (or a catch-up that at least doubles the index) holds
        # FTS5's merges and ends by merging all into one b-tree; a smaller
        # one lets FTS5 merge as it writes, as every delivery's indexing
        # does.  (An optimize rewrites the whole index, about 35 µs a
        # message: after a burst, 1,000 messages caught up into 20,000 took
        # a search 2.2 s, 0.8 s of it the optimize.)
        build = len(new) > BATCH and len(new) >= len(known)
        if build:
            # Ended by an optimize, below.
            yield self._inThread(self.writer.holdMerges)
        pool = None
        if self.parsers > 1 and len(new) >= PARALLEL_FROM:
            pool = yield self._inThread(_parserPool, self.parsers)
        try:
            yield self._readAndIndex(new, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        gone = set(known) - liveSet
        yield self._inThread(self.writer.update, self.folderKey, gone, [], stamp, snapshot, changed)
        if build:
            yield self._inThread(self.writer.optimize)
        if snapshot is not None:
            self._snapshotAt = now
        self._caughtUp = top

    def catchUp(self):
        """
        Index the mail that arrived since the last L{sync} or catch-up in
        this process, and nothing else: the indexing process's answer to a
        kick after deliveries, whose cost follows the new mail, not the
        mailbox (a full L{sync} compares every message with the index).
        Deletes, flag changes and another program's rewrites wait for the
        next full sync, which a search runs first: the stamp is left as it
        was, so the index still looks stale to L{freshen}.  The first call
        in a process is a full sync.

        @return: a L{Deferred}, as L{sync}'s.
        """
        if self._caughtUp is None:
            return self.sync()
        return self._writeLock.run(self._catchUpOnce).addErrback(self._catchUpFailed)

    def _catchUpFailed(self, f):
        if f.check(errors.MailError):
            return f
        log.failure("search index of {user}: catch-up failed", f, user=self._userid)
        # The next kick syncs in full, and repairs.
        self._caughtUp = None
        raise errors.TemporaryFailure("the search index can't be written")

    @defer.inlineCallbacks
    def _catchUpOnce(self):
        mailbox = self._mailbox
        mbox = mailbox.mbox
        after = self._caughtUp

        def look():
            with mbox.locked():
                return _newestSerial(mbox), [
                    (e.msgid, e.key) for e in _entriesAfter(mbox, after) if not e.deleted]

        top, arrived = yield mailbox.run(look)
        if arrived:
            known = yield self._inThread(self.writer.pairs, self.folderKey)
            new = [pair for pair in arrived if pair not in known]
            yield self._readAndIndex(new, None, after)
        self._caughtUp = max(top, after)

    def indexHanded(self, handed):
        """
        In the indexing process: index the deliveries the server handed
        over (L{delivered}: C{(inode, start, end, id, key hex, uid)} each),
        read from the file without its locks.  Each record read is checked
        against its id and key; should one differ, or the file be another
        (an expunge, mutt's rewrite), the mailbox is caught up under its
        locks instead (L{catchUp}).

        @return: a L{Deferred}, as L{catchUp}'s.
        """
        if self._caughtUp is None:
            # The process's first look at this mailbox, or the one after a
            # failure: in full, under the locks (which repairs the index).
            return self.catchUp()
        d = self._writeLock.run(self._indexHandedOnce, handed)
        d.addCallback(lambda done: None if done else self.catchUp())
        return d.addErrback(self._catchUpFailed)

    @defer.inlineCallbacks
    def _indexHandedOnce(self, handed):
        for first in range(0, len(handed), BATCH):
            known = yield self._inThread(self.writer.pairs, self.folderKey)
            wanted = [h for h in handed[first:first + BATCH]
                      if (h[3], bytes.fromhex(h[4])) not in known]
            if not wanted:
                continue
            records = yield self._inThread(_readHanded, self._dirfd, self._userid, wanted)
            if records is None:
                return False
            parsed = yield self._inThread(_parseRecords, self._readRecord, [
                (m, r) for m, _, r, _, _ in records])
            # A message handed over may have been deleted since (its mark is
            # in the delete journal, not read here): the next search syncs
            # in full, as it would have after the delivery.
            yield self._inThread(self._index, records, parsed, True)
        return True

    @defer.inlineCallbacks
    def _readAndIndex(self, new, pool, after=None):
        """
        Read the messages C{new} (C{(id, key)} pairs) from the mbox file and
        index them, a batch at a time; with a process C{pool}, each batch is
        parsed there while the one before is written.

        @param after: if given, every one of C{new} came after this serial
            (only the file's entries after it are looked at).
        """
        mailbox = self._mailbox
        mbox = mailbox.mbox
        done = 0
        parsing = None
        for first in range(0, len(new) + BATCH, BATCH):
            wanted = set(new[first:first + BATCH])
            if not wanted and parsing is None:
                return

            def read(wanted=wanted):
                with mbox.locked() as handle:
                    return [(e.msgid, e.key, mbox.read(handle, e), e.uid, e.flags)
                            for e in _wantedEntries(mbox, wanted, after)]

            records = (yield mailbox.run(read)) if wanted else []
            if pool is None and parsing is None:
                yield self._inThread(lambda: self._index(records, _parseRecords(
                    self._readRecord, [(m, r) for m, _, r, _, _ in records])))
            else:
                previous, parsing = parsing, None
                if records and pool is not None:
                    parsing = (records, _submit(pool, self.parsers, self._readRecord, records))
                elif records:
                    parsing = (records, None)
                if previous is None:
                    continue
                records, futures = previous
                parsed = yield self._inThread(self._gathered, records, futures)
                if parsed is None:
                    # The pool broke (a process killed, or unable to start):
                    # parse here from now on.
                    pool = None
                    parsed = yield self._inThread(_parseRecords, self._readRecord, [
                        (m, r) for m, _, r, _, _ in records])
                yield self._inThread(self._index, records, parsed)
            done += len(records)
            if self.progress is not None:
                self.progress(done, len(new))
            elif len(new) > BATCH:
                log.info("indexed {done}/{count} messages of {user}", done=done,
                         count=len(new), user=self._userid)

    def _gathered(self, records, futures):
        """
        The parts' results, in order, once all are done (blocking: in a
        worker thread); L{None} if the pool could not parse them.
        """
        if futures is None:
            return None
        try:
            return [each for future in futures for each in future.result()]
        except Exception as e:
            log.warn("search index of {user}: parsing processes failed ({why}); "
                     "parsing here", user=self._userid, why=repr(e))
            return None

    def _index(self, records, parsed, stale=False):
        add = []
        for (msgid, key, record, uid, flags), (summary, doc) in zip(records, parsed):
            if summary is None:
                # The reader never raises by contract; should it, the message
                # is still indexed, by its id and size, and never lost.
                log.error("search index of {user}: message {id} unreadable ({why})",
                          user=self._userid, id=msgid, why=doc)
                summary, doc = _unreadable(msgid, record)
            # (The summaries just parsed, this batch's own: given their
            # UID, flags and folder in place, not copied.)
            summary.uid, summary.flags, summary.folder = uid, frozenset(flags), self.folderKey
            add.append((key, summary, doc))
        self.writer.update(self.folderKey, (), add, stale=stale)

    # -- answering

    def summaries(self, msgids):
        """
        The summaries the index holds of these INBOX messages.

        @return: a L{Deferred} firing with a L{dict} from C{(id, key)} to
            summary (empty if the index can't be read).
        """
        d = self._readLock.run(self._inThread, self.reader.summaries, self.folderKey, msgids)
        return d.addErrback(lambda f: f.trap(IndexDamaged, OSError, sqlite3.Error) and {})

    def freshen(self):
        """
        Catch up with the mailbox if it changed since the index last did.

        @return: a L{Deferred} firing with L{None}, or failing as L{sync}.
        """
        mbox = self._mailbox.mbox

        def stale():
            stamp = mailboxStamp(mbox._dirfd, mbox.userid, mbox.journalName)
            return stamp != self.reader.stamp(self.folderKey)

        def check(isStale):
            return self.sync() if isStale else None

        def damaged(f):
            _refuseBusy(f)
            f.trap(IndexDamaged)
            self.reader.close()
            return self._writeLock.run(self._inThread, self.writer.discard).addCallback(
                lambda _: self.sync())

        return self._readLock.run(self._inThread, stale).addCallback(check).addErrback(
            damaged)

    def keepOnly(self, folders):
        """
        Forget what the index holds of folders not among C{folders} (keys),
        once per set of folders.

        @return: a L{Deferred} firing with L{None}.
        """
        folders = frozenset(folders)
        if folders == self._kept:
            return defer.succeed(None)

        def kept(_):
            self._kept = folders

        def busy(f):
            _refuseBusy(f)
            return f

        return self._writeLock.run(self._inThread, self.writer.keepOnly, sorted(folders)
                                   ).addCallbacks(kept, busy)

    _kept = None

    def search(self, query, folders, start, limit, names=None):
        """
        The page of matches among the folders C{folders} (their keys in
        the index; L{None}: all it holds) of this index's database, newest
        first.

        @param names: folder key to the name the summaries show (a key
            not there: the key).
        @return: a L{Deferred} firing with C{(total, summaries)}.
        """
        def plain():
            return self.reader.search(query, folders, start, limit, names)

        def damaged(f):
            _refuseBusy(f)
            f.trap(IndexDamaged)
            self.reader.close()
            raise errors.TemporaryFailure("the search index is being rebuilt; try again")

        return self._readLock.run(self._inThread, plain).addErrback(damaged)


def _parseRecords(readRecord, records, prepare=None):
    """
    C{readRecord} of each C{(id, record)}: C{(summary, document)} pairs,
    C{(None, why)} where it raised.  (In a worker thread, or a parsing
    process: there, the document is what C{prepare} makes of the pair, so
    that the writer has less to do.)
    """
    parsed = []
    for msgid, record in records:
        try:
            summary, doc = readRecord(msgid, record)
            if prepare is not None:
                doc = prepare(summary, doc)
            parsed.append((summary, doc))
        except Exception as e:
            parsed.append((None, repr(e)))
    return parsed


def _parserPool(size):
    """
    A pool of C{size} parsing processes, started fresh (never forked from a
    process that runs threads).
    """
    import concurrent.futures
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(
        size, mp_context=multiprocessing.get_context("spawn"))


def _submit(pool, parts, readRecord, records):
    """
    Parse C{records} in the process pool, cut in C{parts} parts.

    @return: the futures of the parts, in order, or L{None}.
    """
    pairs = [(msgid, record) for msgid, _, record, _, _ in records]
    size = max(1, -(-len(pairs) // parts))
    try:
        return [pool.submit(_parseRecords, readRecord, pairs[i:i + size], prepareRow)
                for i in range(0, len(pairs), size)]
    except Exception:
        # A broken pool refuses work at once: parsed here (L{None}).
        return None




def _unreadable(msgid, record):
    from twisted_mail.mail.mime import MessageSummary
    from twisted_mail.mail.query import SearchDocument

    fields = dict.fromkeys(
        ["from", "to", "cc", "bcc", "subject", "body", "attachment", "headers"], "")
    return MessageSummary(msgid, len(record), 0), SearchDocument(fields, [], None, 0)


def _readHanded(dirfd, userid, handed):
    """
    The records of deliveries handed over (L{MailboxIndex.delivered}), read
    from C{userid}'s mbox file without its locks, as L{MailboxIndex._index}
    takes them: C{(id, key, record, uid, flags)}.

    @return: the records, or L{None} if the file is another or any record
        is not the one handed over.
    """
    from twisted_mail.stores.spool.locks import _O_FLAGS
    from twisted_mail.stores.spool.records import _facts

    try:
        fd = os.open(userid, os.O_RDONLY | _O_FLAGS, dir_fd=dirfd)
    except OSError:
        return None
    try:
        if {h[0] for h in handed} != {os.fstat(fd).st_ino}:
            return None
        records = []
        i = 0
        while i < len(handed):
            # Records side by side (deliveries are), in pieces of at most
            # HANDOVER_READ bytes (or one record).
            j = i + 1
            while j < len(handed) and handed[j][1] == handed[j - 1][2] and \
                    handed[j][2] - handed[i][1] <= HANDOVER_READ:
                j += 1
            start, end = handed[i][1], handed[j - 1][2]
            span = os.pread(fd, end - start, start)
            if len(span) != end - start:
                return None
            for _, s, e, msgid, key, uid in handed[i:j]:
                record = span[s - start:e - start]
                found, foundId, foundUid, flags = _facts(record)
                if foundId != msgid or found.hex() != key or foundUid != uid:
                    return None
                records.append((msgid, found, record, uid, flags))
            i = j
        return records
    finally:
        os.close(fd)


def _refuseBusy(f):
    """
    An index another process holds locked past the timeout (an
    L{sqlite3.Error}) is not damage: the caller is told to try again.

    @raise errors.TemporaryFailure: if C{f} is that.
    """
    if f.check(sqlite3.Error):
        raise errors.TemporaryFailure("the search index is busy; try again")


def _newestSerial(mbox):
    """
    The serial of C{mbox}'s newest entry (0 for none), under its lock.
    """
    return mbox._serialList[-1] if mbox._serialList else 0


def _wantedEntries(mbox, wanted, after):
    """
    The live entries of C{mbox} (after the serial C{after}, if not
    L{None}) whose C{(id, key)} is in C{wanted}, in file order, under its
    lock: found by id (a batch of a large sync looked at every entry of
    the file, 40 times in a build of 20,000), or, should one not be found
    so (an id that two records carry for a moment), by looking at every
    entry.
    """
    byId = mbox._byId
    found = []
    for msgid, key in wanted:
        entry = byId.get(msgid)
        if entry is None or entry.deleted or entry.key != key:
            break
        found.append(entry)
    else:
        if after is not None:
            found = [e for e in found if e.serial > after]
        found.sort(key=lambda e: e.start)
        return found
    return [e for e in _entriesAfter(mbox, after)
            if not e.deleted and (e.msgid, e.key) in wanted]


def _entriesAfter(mbox, serial):
    """
    C{mbox}'s entries after C{serial} (all of them for L{None}), under its
    lock: serials grow in file order.
    """
    if serial is None:
        return mbox.entries
    return mbox.entries[bisect.bisect_right(mbox._serialList, serial):]
