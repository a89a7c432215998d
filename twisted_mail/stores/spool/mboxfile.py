"""
One user's mbox file in the spool directory, and its index: locking,
scanning, durable appends, the delete journal and the expunge.  Synchronous
code for the mailbox thread; the store built on it is L{twisted_mail.stores.spool.store}.

Layout of the spool directory::

    bob                 bob's mailbox, mboxrd (RFC 4155), mode 0600
    bob.lock            dot-lock, present only while someone holds it
    .bob.append         append intent: where our last append began and ends
    .bob.deleted        delete journal: keys of messages deleted, not yet
                        expunged
    .bob.new            expunge in progress (temporary)
    .simplemail-<pid>.lockpid
                        a server process's id: its dot-locks are hard links
                        to this file (see L{LockSource})

Guarantees (see docs/protocol.rst):

  - A delivery is acknowledged only after its bytes are synced.  Before an
    append, the append intent (inode, start, end) is synced; a later locked
    access that finds the file longer than C{start} but shorter than C{end}
    cuts the torn tail off at C{start}.
  - A delete is acknowledged once the key of the message is synced in the
    delete journal; every reader hides journalled messages.  When the
    deleting session ends the file is rewritten without them (temporary
    file, fsync, rename, fsync of the directory) and the journal removed.
  - Every access takes an open-file-description C{fcntl} lock and the
    C{<file>.lock} dot-lock, as mail tools do, in a worker thread, with
    back-off and a deadline; then it checks that the path still names the
    file it opened.

Stable message ids (docs/mailbox-ids.rst): each message we write carries
them as its first header line, C{X-Simplemail-Id: <id>}, hidden from
readers; a message another program wrote gets one derived from its bytes.
"""

import bisect
import os
import stat
import time
from contextlib import contextmanager

from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.stores.spool.folderfile import FolderFile
from twisted_mail.stores.spool.flags import NO_FLAGS, sharedFlags, storeLines
from twisted_mail.stores.spool.locks import _O_FLAGS, LockSource, MailboxLocks
from twisted_mail.stores.spool.records import (
    _Entry,
    _key,
    _unkey,
    recordKey,
    _head,
    storedKey,
    _tailBytes,
    _writeAll,
    contentId,
    scanRecords,
)
from twisted_mail.mail.message import ID_HEADER, recordId
from twisted_mail.stores.spool import recovery
from twisted_mail.stores.spool.flags import readerText
from twisted_mail.stores.spool.snapshot import EntriesSnapshot
from twisted_mail.stores.spool.recovery import _INTENT_HEAD, CrashRecovery
from twisted_mail.stores.spool.sidefiles import SideFile

log = Logger()

#: How long to wait for a lock before answering a temporary failure.
LOCK_DEADLINE = 20.0

#: The most L{MboxFile.readByIds} reads in one go (messages side by side).
READ_AHEAD = 1 << 20




def _stamped(record, lines):
    """
    C{record} (its pieces) with the store's C{lines} put right after its
    separator and id lines, however the pieces split them (the store's own
    appends give the separator and the id line as pieces of their own; a
    record replayed from the journal is one piece).

    @return: the new pieces, and the index of C{lines} among them.
    """
    first = bytes(record[0])
    end = first.find(b"\n") + 1
    if end == len(first) and len(record) > 1:
        # The separator is a piece of its own; the id line starts the next.
        second = bytes(record[1])
        if second.startswith(ID_HEADER):
            cut = second.find(b"\n") + 1 or len(second)
            if cut == len(second):
                return record[:2] + [lines] + record[2:], 2
            return record[:1] + [second[:cut], lines, second[cut:]] + record[2:], 2
        return record[:1] + [lines] + record[1:], 1
    if end and first.startswith(ID_HEADER, end):
        end = first.find(b"\n", end) + 1 or len(first)
    if end == 0:
        end = len(first)
    return [first[:end], lines, first[end:]] + record[1:], 1


class InodeChanged(Exception):
    """
    The mailbox is another file than the journal said (an expunge replaced
    it): C{args[0]} is the inode it is now.
    """


class _Locked:
    """
    A spool file opened and locked; the handle a job works through.
    """

    def __init__(self, fd, stat):
        self.fd = fd
        self.stat = stat


class MboxFile(MailboxLocks, CrashRecovery, FolderFile, EntriesSnapshot):
    """
    One user's mbox and its index.  Synchronous: every method is meant to run
    in a worker thread, one at a time (L{_Mailbox} sees to that).

    @ivar entries: the messages, in file order, with increasing serials.
    """

    def __init__(self, dirfd, userid, serials, lockDeadline=LOCK_DEADLINE,
                 lockSource=None):
        self._dirfd = dirfd
        self._lockSource = LockSource(dirfd) if lockSource is None else lockSource
        self.userid = userid
        self._serials = serials
        self._lockDeadline = lockDeadline
        self.entries = []
        self._serialList = []
        self._byKey = {}
        self._byId = {}
        self.live = 0
        self._ino = None
        self._size = 0
        self._mtime = None
        self._journalIno = None
        self._journalPos = 0
        # (size, last bytes) of the file as our last append left it.
        self._tail = None
        # The store's write-ahead journal (journal.Journal), if it keeps
        # one: deletes are made durable there, and the files synced at its
        # checkpoints.
        self.wal = None
        # This file's name in the journal's records (journal.filePaths).
        self.walName = userid
        # Called once, at the first look, for a saved picture of the
        # entries (see _fromSnapshot), or None.
        self.snapshotSource = None
        # The append intent and the UID record, kept open between jobs.
        self._intentFile, self._uidsFile = SideFile(), SideFile()

    # -- names of the files beside the mailbox

    @property
    def _lockName(self):
        return self.userid + ".lock"

    @property
    def _intentName(self):
        return "." + self.userid + ".append"

    @property
    def _journalName(self):
        return "." + self.userid + ".deleted"

    journalName = _journalName

    @property
    def _newName(self):
        return "." + self.userid + ".new"

    # -- locking

    @contextmanager
    def locked(self, journal=True):
        """
        Open the mailbox without following symlinks, take the fcntl and dot
        locks, bring the index up to date (repairing a torn append), and
        yield a L{_Locked}.

        @param journal: whether to apply delete marks others journalled
            since we last looked (an append does not need them: the next
            job that does applies them).
        """
        deadline = time.monotonic() + self._lockDeadline
        delay = 0.001
        while True:
            fd = self._open()
            if fd is None:
                continue
            try:
                locked = self._tryLocks(fd)
                if locked:
                    st = os.fstat(fd)
                    if self._stillAtPath(st):
                        break
                    # Renamed over while we waited: open the new file.
                    self._dropDotLock()
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if locked:
                continue
            if time.monotonic() > deadline:
                raise errors.TemporaryFailure("the mailbox is locked by another program")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            handle = _Locked(fd, st)
            self._sameFile = self._unchanged(st)
            if not self._sameFile:
                self._tail = None
                self._recoverTail(handle)
                self._recover(handle)
            self._reindexed = False
            self._refresh(handle, journal)
            self._afterRefresh(handle, journal)
            if not self._sameFile:
                self._seenFresh = False
            if self.seenToApply or (self.seenUnwritten and not self._seenFresh):
                self._applySeen()
            yield handle
        finally:
            try:
                self._dropDotLock()
            finally:
                os.close(fd)  # also releases the fcntl lock

    # -- the index

    def _unchanged(self, st):
        """
        Whether the file is as our last job left it (same inode, size and
        modification time): nobody appended to it since, so no append of
        anyone's can be torn in it.
        """
        return (
            st.st_ino == self._ino
            and st.st_size == self._size
            and st.st_mtime_ns == self._mtime
        )

    def _refresh(self, handle, journal=True):
        """
        Bring the index up to date with the file (appends by anyone,
        rewrites by anyone) and, unless C{journal} is false, the delete
        journal.
        """
        st = handle.stat
        size = st.st_size
        if self._ino is None and self.snapshotSource is not None:
            self._fromSnapshot(handle)
        if st.st_ino != self._ino or size < self._size:
            self._reindex(handle.fd, size, st.st_ino)
        elif st.st_mtime_ns != self._mtime or size != self._size:
            if not self._stillValid(handle.fd):
                self._reindex(handle.fd, size, st.st_ino)
            elif size > self._size:
                self._extend(handle.fd, size)
        self._mtime = st.st_mtime_ns
        if journal:
            self._readJournal()

    def _stillValid(self, fd):
        """
        Whether what we indexed is still there, checked by the last message:
        another program may have rewritten the file in place.
        """
        if not self.entries:
            return True
        last = self.entries[-1]
        record = os.pread(fd, last.end - last.start, last.start)
        return storedKey(record) == last.key

    def _newEntries(self, scanned):
        entries = []
        for start, end, key, msgid, uid, flags in scanned:
            entries.append(_Entry(start, end, key, next(self._serials), msgid, uid, flags))
        return entries

    def _extend(self, fd, size):
        """
        The file grew: index what was appended, without reading what was
        indexed before (unless the last message itself grew).
        """
        self._checkFrom = max(0, len(self.entries) - 1)
        head = os.pread(fd, 6, self._size - 1) if self._size else b"\n"
        if self._size == 0 or head.startswith(b"\nFrom "):
            scanned = scanRecords(fd, self._size, size)
        else:
            # The last message was extended: index it again with the rest.
            last = self.entries.pop()
            self._serialList.pop()
            _unkey(self._byKey, last)
            self._byId.pop(last.msgid, None)
            if not last.deleted:
                self.live -= 1
            scanned = scanRecords(fd, last.start, size)
            if scanned and scanned[0][0] == last.start:
                start, end, key, msgid, uid, flags = scanned.pop(0)
                if msgid is None and key == last.key:
                    msgid = last.msgid
                last.end, last.key, last.msgid = end, key, msgid
                last.uid, last.flags = uid, flags
                self._add([last])
        self._add(self._newEntries(scanned))
        self._size = size

    def _add(self, entries):
        # Entries made from the file: reads' \Seen marks held in memory
        # must be applied to them again (FolderFile._applySeen).
        self._seenFresh = False
        byId = self._byId
        for entry in entries:
            if entry.msgid is None:
                # Another program's message: a derived id until the record
                # is stamped (folderfile).
                entry.msgid = contentId(entry.key, byId)
                entry.derived = True
                self._needsStamp = True
            elif entry.msgid in byId or not entry.uid:
                # An id seen before is a copy only if both are live (a
                # message moved back keeps its id beside its deleted old
                # record): stamping decides, once the journal is read.
                self._needsStamp = True
            byId[entry.msgid] = entry
            self.entries.append(entry)
            self._serialList.append(entry.serial)
            _key(self._byKey, entry)
            if not entry.deleted:
                self.live += 1

    def _replaceAll(self, entries):
        self.entries = []
        self._serialList = []
        self._byKey = {}
        self._byId = {}
        self.live = 0
        self._add(entries)

    def _reindex(self, fd, size, ino):
        """
        Index the whole file again, keeping the serials of messages we knew
        (matched by content) so that sessions' cursors stay where they were.
        """
        scanned = scanRecords(fd, 0, size)
        self._reindexed = True
        self._checkFrom = 0
        known = {}
        knownIds = {}
        for entry in self.entries:
            known.setdefault(entry.key, []).append(entry.serial)
            if not entry.derived:
                knownIds[entry.msgid] = entry.serial
        serials = []
        for start, end, key, msgid, uid, flags in scanned:
            # Matched by permanent id first: mutt's rewrites change bytes.
            serial = knownIds.pop(msgid, None) if msgid is not None else None
            bucket = known.get(key)
            if serial is None:
                serial = bucket.pop(0) if bucket else None
            elif bucket and serial in bucket:
                bucket.remove(serial)
            serials.append(serial)
        matched = [s for s in serials if s is not None]
        if matched != sorted(matched):
            serials = [None] * len(serials)  # reordered by someone: start afresh
        # The next matched serial after each position, in one backward pass.
        following = [None] * len(serials)
        upcoming = None
        for i in range(len(serials) - 1, -1, -1):
            following[i] = upcoming
            if serials[i] is not None:
                upcoming = serials[i]
        # Give unmatched messages serials between their neighbours.
        entries = []
        previous = 0
        for i, (start, end, key, msgid, uid, flags) in enumerate(scanned):
            serial = serials[i]
            if serial is None:
                if following[i] is None:
                    serial = next(self._serials)
                else:
                    serial = (previous + following[i]) / 2.0
            entries.append(_Entry(start, end, key, serial, msgid, uid, flags))
            previous = serial
        self._replaceAll(entries)
        self._ino = ino
        self._size = size
        # Marks are applied afresh from the journal.
        self._journalIno = None
        self._journalPos = 0

    # -- operations (each runs under the locks)

    def count(self):
        with self.locked():
            return self.live

    def needsRepair(self):
        """
        Whether a crash left this mailbox with a torn append or a dot-lock
        of a dead process (which other mail tools would wait on).
        """
        try:
            st = os.stat(self.userid, dir_fd=self._dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        intent = self._readIntent()
        if intent is not None:
            ino, start, end, _ = intent
            if ino == recovery.inodeNumber(st.st_ino) and start < st.st_size < end:
                return True
        try:
            os.stat(self._lockName, dir_fd=self._dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return self._dotLockIsStale()

    def knownIds(self):
        """
        The stable ids of the messages indexed (after a locked access).
        """
        return set(self._byId)

    def append(self, records, flags=None, uids=None, durable=True, inode=None):
        """
        Append whole mbox records (each a list of byte strings: the
        separator line, the id line, then the message), sync, and index
        them.  Each is given the next UID and its flags (C{flags}, a list
        beside C{records}; none by default) in lines after its id line
        (C{uids}, a list beside them, gives UIDs instead: a migration).  On
        any error the file is cut back to where it was and
        L{TemporaryFailure} raised.

        @param durable: whether to sync; false when the records are in the
            spool's journal already (synced at its next checkpoint).
        @param inode: the inode the journal names for them: if the mailbox
            is another file now (an expunge replaced it), nothing is written
            and L{InodeChanged} raised.
        @return: the new entries.
        """
        with self.locked(journal=False) as handle:
            stamped = []
            assigned = []
            storePieces = []
            for i, record in enumerate(records):
                given = NO_FLAGS if flags is None else flags[i]
                uid = self.uidNext if uids is None else max(uids[i], 1)
                lines = storeLines(uid, given, old=bool(given))
                self.uidNext = max(self.uidNext, uid) + 1
                assigned.append(uid)
                record, at = _stamped(record, lines)
                stamped.append(record)
                storePieces.append(at)
            records = stamped
            fd = handle.fd
            start = handle.stat.st_size
            if inode is not None and handle.stat.st_ino != inode:
                raise InodeChanged(handle.stat.st_ino)
            if self._tail is not None and self._tail[0] == start:
                # Our last append ended the file, and nobody wrote since.
                tail = self._tail[1]
            else:
                tail = os.pread(fd, 2, start - 2 if start >= 2 else 0)
            prefix = b""
            if start:
                if not tail.endswith(b"\n"):
                    prefix = b"\n\n"
                elif not tail.endswith(b"\n\n") and start >= 2:
                    prefix = b"\n"
            chunks = [prefix] if prefix else []
            for record in records:
                chunks.extend(record)
            end = start + sum(map(len, chunks))
            ino = handle.stat.st_ino
            try:
                intent = self._openIntent(durable)
            except OSError as e:
                self._failedAppend(e)
            try:
                try:
                    self._writeIntent(ino, start, end, sync=durable,
                                      head=_head(chunks, _INTENT_HEAD), fd=intent,
                                      uidNext=self.uidNext)
                    _writeAll(fd, chunks, start)
                    if durable:
                        os.fdatasync(fd)
                    elif self.wal is not None:
                        self.wal.dirty.add(self.walName)
                except OSError as e:
                    self._undoAppend(fd, start)
                    self._failedAppend(e)
                self._writeIntent(ino, 0, 0, sync=False, fd=intent)
            finally:
                self._closeIntent(intent)
            if prefix and self.entries:
                last = self.entries[-1]
                last.end += len(prefix)
            # Index what we wrote from what we hold: no need to read it back.
            offset = start + len(prefix)
            written = []
            for record in records:
                length = sum(map(len, record))
                written.append(
                    _Entry(offset, offset + length,
                           recordKey(record, storePieces[len(written)]),
                           next(self._serials), recordId(_head(record, 160)),
                           assigned[len(written)],
                           NO_FLAGS if flags is None else sharedFlags(flags[len(written)]))
                )
                offset += length
            self._add(written)
            self._size = end
            self._mtime = os.fstat(fd).st_mtime_ns
            self._tail = (end, _tailBytes(chunks, 2))
            self._saveUids(sync=False)
            return written

    def _failedAppend(self, e):
        log.error(
            "mailbox {user}: delivery failed, nothing stored: {error}",
            user=self.userid,
            error=e,
        )
        raise errors.TemporaryFailure(os.strerror(e.errno) if e.errno else str(e))

    def _undoAppend(self, fd, start):
        try:
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError:
            # The intent stays: the next locked access cuts the tail.
            log.failure("mailbox {user}: could not cut a failed append", user=self.userid)
            return
        try:
            # Cut back: the intent must not later cut what another program
            # appends from here.
            self._writeIntent(0, 0, 0, sync=True)
        except OSError:
            log.failure("mailbox {user}: could not clear the append intent",
                        user=self.userid)

    def readAfter(self, serial):
        """
        The first message not deleted whose serial is above C{serial}.

        @return: C{(serial, text, msgid)}, or L{None} when there is none.
        """
        with self.locked() as handle:
            entries = self.entries
            for i in range(bisect.bisect_right(self._serialList, serial), len(entries)):
                entry = entries[i]
                if not entry.deleted:
                    record = os.pread(handle.fd, entry.end - entry.start, entry.start)
                    return entry.serial, readerText(record), entry.msgid
            return None

    # -- the mailbox view: messages by stable id

    def readById(self, msgid):
        """
        The message with stable id C{msgid}, if not deleted.

        @return: C{(serial, text)}
        @raise NoSuchMessage: if there is none.
        """
        with self.locked() as handle:
            entry = self.liveEntry(msgid)
            record = os.pread(handle.fd, entry.end - entry.start, entry.start)
            return entry.serial, readerText(record)

    def liveEntry(self, msgid):
        """
        The entry of the message with stable id C{msgid} (a dictionary
        look-up; call it under L{locked}).

        @raise NoSuchMessage: if there is none, or it is deleted.
        """
        entry = self._byId.get(msgid)
        if entry is None or entry.deleted:
            raise errors.NoSuchMessage()
        return entry

    def readByIds(self, msgids):
        """
        The messages with stable ids C{msgids}, under one lock, read in file
        order: messages side by side in the file (the common case: a
        client fetching a range) in one read of at most L{READ_AHEAD} bytes.

        @return: a L{list} in the order of C{msgids}: each message's text,
            or L{None} for one deleted or unknown.
        """
        with self.locked() as handle:
            byId = self._byId
            wanted = sorted({e.start: e for e in (byId.get(m) for m in msgids)
                             if e is not None and not e.deleted}.values(),
                            key=lambda e: e.start)
            texts = {}
            i = 0
            while i < len(wanted):
                first = wanted[i]
                j = i + 1
                while (j < len(wanted) and wanted[j].start == wanted[j - 1].end
                       and wanted[j].end - first.start <= READ_AHEAD):
                    j += 1
                base = first.start
                chunk = os.pread(handle.fd, wanted[j - 1].end - base, base)
                for entry in wanted[i:j]:
                    texts[entry.msgid] = readerText(
                        chunk[entry.start - base:entry.end - base])
                i = j
            return [texts.get(msgid) for msgid in msgids]

    def listing(self, start, limit, newestFirst, cached):
        """
        A page of the messages not deleted, in mailbox order or the reverse.

        @param cached: a container of the C{(id, key)} pairs whose summary
            the caller holds already: their records are not read.
        @return: C{(total, page)}, the page a L{list} of C{(id, key,
            record)}, the record L{None} when cached.
        """
        with self.locked() as handle:
            live = [entry for entry in self.entries if not entry.deleted]
            if newestFirst:
                live.reverse()
            end = None if limit is None else start + limit
            page = []
            for entry in live[start:end]:
                record = None
                if (entry.msgid, entry.key) not in cached:
                    record = os.pread(handle.fd, entry.end - entry.start, entry.start)
                page.append((entry.msgid, entry.key, record))
            return len(live), page

    def newSince(self, serial):
        """
        The messages not deleted that came after C{serial}, for new-mail
        announcements.

        @param serial: the highest serial already announced, or L{None} to
            learn it without reading any message.
        @return: C{(highest serial, [(id, key, record), ...])}
        """
        with self.locked() as handle:
            top = self._serialList[-1] if self._serialList else 0
            if serial is None:
                return top, []
            found = []
            for i in range(bisect.bisect_right(self._serialList, serial), len(self.entries)):
                entry = self.entries[i]
                if not entry.deleted:
                    record = os.pread(handle.fd, entry.end - entry.start, entry.start)
                    found.append((entry.msgid, entry.key, record))
            return max(top, serial), found

    def markDeletedIds(self, msgids, journalled=False):
        """
        Record durably, with one journal write and sync, that the messages
        with these stable ids are deleted; ids of messages already gone are
        skipped.

        @param journalled: the spool's journal holds these deletes already
            (a move's records): the marks are written unsynced.
        @return: the L{list} of ids deleted now.
        """
        with self.locked():
            entries = []
            for msgid in dict.fromkeys(msgids):
                entry = self._byId.get(msgid)
                if entry is not None and not entry.deleted:
                    entries.append(entry)
            if not entries:
                return []
            if not journalled and self.wal is not None and self.wal.grouping:
                # Group commit: the X records now, the marks after the
                # group's sync (docs/journal.rst).
                return self._stageDeletes(entries)
            lines = b"".join(e.key.hex().encode("ascii") + b"\n" for e in entries)
            try:
                if journalled:
                    self.wal.dirty.add(self.walName)
                    self._appendJournal(lines, sync=False)
                else:
                    self._markDurably(entries, lines)
            except OSError as e:
                log.error(
                    "mailbox {user}: delete failed: {error}", user=self.userid, error=e
                )
                raise errors.TemporaryFailure(os.strerror(e.errno) if e.errno else str(e))
            for entry in entries:
                entry.deleted = True
                self.live -= 1
            return [entry.msgid for entry in entries]

    def _markDurably(self, entries, lines):
        """
        Make the delete marks of C{entries} durable: in the spool's journal
        (one sync) and then, unsynced, the delete-mark file; or, without a
        journal, in the delete-mark file, synced.
        """
        if self.wal is None:
            self._appendJournal(lines)
            return
        self.wal.commit(self._deleteRecords(entries))
        self.wal.dirty.add(self.walName)
        self._appendJournal(lines, sync=False)

    def markDeleted(self, serial):
        """
        Record durably that the message with C{serial} is deleted.

        @raise NoCurrentMessage: if it is gone or already deleted.
        """
        with self.locked():
            i = bisect.bisect_left(self._serialList, serial)
            if i == len(self.entries) or self.entries[i].serial != serial:
                raise errors.NoCurrentMessage()
            entry = self.entries[i]
            if entry.deleted:
                raise errors.NoCurrentMessage()
            if self.wal is not None and self.wal.grouping:
                return self._stageDeletes([entry], one=True)
            line = entry.key.hex().encode("ascii") + b"\n"
            try:
                self._markDurably([entry], line)
            except OSError as e:
                log.error(
                    "mailbox {user}: delete failed: {error}", user=self.userid, error=e
                )
                raise errors.TemporaryFailure(os.strerror(e.errno) if e.errno else str(e))
            entry.deleted = True
            self.live -= 1

    def expunge(self):
        """
        Rewrite the mailbox without its deleted messages and remove the
        journal.  Crash-safe at every step.
        """
        with self.locked() as handle:
            if self.live == len(self.entries):
                return 0
            kept = [e for e in self.entries if not e.deleted]
            st = handle.stat
            fd = os.open(
                self._newName,
                os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_FLAGS,
                0o600,
                dir_fd=self._dirfd,
            )
            try:
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except PermissionError:
                    pass
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                offset = 0
                newEntries = []
                for entry in kept:
                    record = os.pread(handle.fd, entry.end - entry.start, entry.start)
                    _writeAll(fd, [record], offset)
                    new = _Entry(offset, offset + len(record), entry.key,
                                 entry.serial, entry.msgid, entry.uid, entry.flags)
                    new.derived = entry.derived
                    newEntries.append(new)
                    offset += len(record)
                os.fsync(fd)
                newIno = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            # UIDNEXT must outlive the messages that raised it.
            self._saveUids(sync=True, entries=newEntries)
            self._appendJournal(b"expunged %d\n" % (newIno,))
            os.rename(self._newName, self.userid, src_dir_fd=self._dirfd,
                      dst_dir_fd=self._dirfd)
            os.fsync(self._dirfd)
            self._removeJournal()
            removed = len(self.entries) - len(kept)
            self._replaceAll(newEntries)
            self._ino = newIno
            self._size = offset
            self._mtime = None
            return removed
