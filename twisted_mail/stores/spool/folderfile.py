"""
The mailbox model's part of one mbox file (L{MboxFile}'s mixin): UIDs and
UIDVALIDITY, permanent ids for mail other programs wrote, flags kept in the
records and changed in place, and the crash-safe rewrite of a file's tail.
Synchronous code for the mailbox thread.  docs/folders.rst says why.

Beside the mbox file C{F} (C{<user>} for INBOX)::

    .F.uids     "<uidvalidity> <uidnext> <generation> <last uid>" (one
                64-byte line), then, for a folder, its name (JSON): the
                folder's UID record.  The generation counts flag changes
                written in place, so that other processes know to read flags
                again; the last UID is the UID of the file's last record
                when the store last wrote the record (absent in records of
                older releases).
    .F.tail     while a tail rewrite runs: "<inode> <start> <size>" and the
                tail's old bytes, synced first; a crash restores them.
"""

import bisect
import errno
import os
import time

from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.mail.model import SEEN
from twisted_mail.stores.spool.flags import (
    parseHeader,
    sharedFlags,
    patchInPlace,
    quickPatch,
    withStoreLines,
)
from twisted_mail.stores.spool.journal import DELETE, FLAGS, Record, flagsText
from twisted_mail.stores.spool.locks import _O_FLAGS
from twisted_mail.stores.spool.records import _Entry, _writeAll

log = Logger()

_UIDS_LINE = 64
_SEEN = frozenset([SEEN])
#: How much of a record a flag change reads first (its header, usually).
_QUICK_HEAD = 4096

#: At most how long (seconds) a file nobody else wrote goes without its UID
#: record's generation being read again.
GENERATION_RECHECK = 1.0
_MAX_UID = 2 ** 32 - 1


def newMessageId():
    """
    A fresh permanent id: 16 URL-safe characters, 96 random bits, so never
    one given before (docs/mailbox-ids.rst).
    """
    import secrets

    return secrets.token_urlsafe(12)


def readUidRecord(dirfd, name, sideFile=None):
    """
    The UID record C{.F.uids} of the file C{name}: C{(uidvalidity, uidnext,
    generation, rest, last uid or None)}, or L{None} when there is none (or
    it is damaged).

    @param sideFile: a L{SideFile} keeping the record open, or L{None}.
    """
    try:
        if sideFile is None:
            fd = os.open("." + name + ".uids", os.O_RDONLY | _O_FLAGS, dir_fd=dirfd)
        else:
            fd = sideFile.acquire(dirfd, "." + name + ".uids")
    except FileNotFoundError:
        return None
    try:
        data = os.pread(fd, 1 << 16, 0)
    finally:
        if sideFile is None:
            os.close(fd)
        else:
            sideFile.release(fd)
    fields = data[:_UIDS_LINE].split()
    try:
        validity, uidnext, generation = (int(x) for x in fields[:3])
    except ValueError:
        return None
    if not 0 < validity <= _MAX_UID:
        return None
    try:
        last = int(fields[3]) if len(fields) > 3 else None
    except ValueError:
        last = None
    return validity, uidnext, generation, data[_UIDS_LINE:], last


def _uidsLine(validity, uidnext, generation, last):
    line = b"%d %d %d" % (validity, uidnext, generation)
    if last is not None:
        line += b" %d" % (last,)
    return line.ljust(_UIDS_LINE - 1) + b"\n"


def writeUidRecord(dirfd, name, validity, uidnext, generation, rest=b"", sync=True,
                   last=None):
    """
    Write a whole UID record, atomically (a temporary file renamed over).
    """
    temporary = "." + name + ".uids.new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_FLAGS, 0o600,
                 dir_fd=dirfd)
    try:
        line = _uidsLine(validity, uidnext, generation, last)
        _writeAll(fd, [line, rest], 0)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, "." + name + ".uids", src_dir_fd=dirfd, dst_dir_fd=dirfd)
    if sync:
        os.fsync(dirfd)


class FolderFile:
    """
    A mixin of L{MboxFile}: it uses C{userid} (the file's name), C{_dirfd},
    C{entries}, C{_byId}, C{_serials}, C{live}, C{_size}, C{_ino},
    C{_mtime}, C{_reindex}.

    @ivar uidValidity: the file's UIDVALIDITY (once locked once).
    @ivar uidNext: the next UID it gives.
    """

    uidValidity = None
    uidNext = 1
    _generation = None
    _needsStamp = False
    _migrating = False
    _sameFile = False
    _generationChecked = 0.0
    _reindexed = False
    #: A callable giving a fresh UIDVALIDITY (the store's counter).
    newValidity = staticmethod(lambda: max(1, int(time.time()) & _MAX_UID))
    #: What the UID record says: the UID of the file's last record when the
    #: store last wrote it (L{None}: a record of an older release), and
    #: UIDNEXT (not raised by the file's X-UIDs).
    _lastUid = None
    _recordNext = 0
    #: The first of the entries the last refresh read from the file (not
    #: from the store's own append), or L{None}: they are checked for
    #: records another program copied in (L{_findCopies}).
    _checkFrom = None
    #: The serials of entries L{_findCopies} found, until stamped.
    _copies = frozenset()
    #: Whether L{_findCopies} waits (a power cut's replay: L{settleUidRecord}).
    copiesHeld = False

    @property
    def _uidsName(self):
        return "." + self.userid + ".uids"

    @property
    def _tailName(self):
        return "." + self.userid + ".tail"

    # -- the UID record

    def _loadUids(self):
        """
        Read the UID record, making it when missing (the folder's UIDs are
        new: a new UIDVALIDITY).
        """
        found = readUidRecord(self._dirfd, self.userid, self._uidsFile)
        top = max((e.uid for e in self.entries), default=0)
        if found is None:
            self.uidValidity = self.newValidity()
            # A new UIDVALIDITY: the UIDs start again.
            self.uidNext = 1
            self._generation = 0
            # Every UID in the file is from a record now lost: give new ones.
            for entry in self.entries:
                entry.uid = 0
            self._needsStamp = bool(self.entries)
            # A file without a UID record: written before this release (or
            # its record lost).  Ids derived from bytes are kept as they
            # were, this once (a spool of the previous release keeps every
            # id it had); later ones get random ids.  (Only while there
            # is something to stamp: an empty file has nothing to keep.)
            self._migrating = bool(self.entries)
            self._saveUids(sync=True)
            return
        validity, uidnext, generation, _, self._lastUid = found
        self._recordNext = uidnext
        self.uidValidity = validity
        # The append intent's UIDNEXT was synced with the appends (the
        # record's write may have been lost in a power cut); _recover read
        # it at this look, which is a first look or follows a rewrite.
        self.uidNext = max(uidnext, top + 1, self._intentNext)
        self._generation = generation

    def _saveUids(self, sync, entries=None):
        """
        Write UIDNEXT, the generation and the last record's UID in place
        (the record's first line).

        @param entries: the file's entries once written, if not
            C{self.entries} (an expunge saves before its file is in place).
        """
        entries = self.entries if entries is None else entries
        if not self._needsStamp and self._checkFrom is None:
            # Every record is the store's (stamped): any record found after
            # the last one with a UID between it and UIDNEXT is a copy.
            self._lastUid = entries[-1].uid if entries else 0
        elif self.uidNext != self._recordNext:
            # Records not known to be the store's: no last UID until they
            # are (the gap it would leave could hold our own).
            self._lastUid = None
        self._recordNext = self.uidNext
        line = _uidsLine(self.uidValidity, self.uidNext, self._generation or 0,
                         self._lastUid)
        try:
            fd = self._uidsFile.acquire(self._dirfd, self._uidsName)
        except FileNotFoundError:
            writeUidRecord(self._dirfd, self.userid, self.uidValidity, self.uidNext,
                           self._generation or 0, sync=sync, last=self._lastUid)
            return
        try:
            os.pwrite(fd, line, 0)
            if sync:
                os.fdatasync(fd)
        finally:
            self._uidsFile.release(fd)

    def _checkGeneration(self, handle, reindexed):
        """
        After a refresh: read the flags again if another process changed
        them in place since we last looked.
        """
        if self.uidValidity is None or reindexed:
            self._loadUids()
            self._generationChecked = time.monotonic()
            return
        now = time.monotonic()
        if self._sameFile and now - self._generationChecked < GENERATION_RECHECK:
            # Nobody wrote the file since our last access: flags changed in
            # place by another process would have changed its time, but for
            # a write within the clock's tick of ours; that is caught on
            # the next access after GENERATION_RECHECK.
            return
        self._generationChecked = now
        found = readUidRecord(self._dirfd, self.userid, self._uidsFile)
        if found is None:
            self._loadUids()
            return
        validity, uidnext, generation, _, self._lastUid = found
        self._recordNext = uidnext
        if validity != self.uidValidity:
            self.uidValidity = validity
        self.uidNext = max(self.uidNext, uidnext)
        if generation != self._generation:
            self._generation = generation
            self._rereadFlags(handle)

    def _afterRefresh(self, handle, journal):
        """
        After the index is brought up to date under the locks: the UID
        record, flags others changed in place, and the store's lines for
        records that lack them.
        """
        self._checkGeneration(handle, self._reindexed)
        held = getattr(self, "stampingHeld", False)
        if self._checkFrom is not None and not held and not self.copiesHeld:
            self._findCopies(self._checkFrom)
            self._checkFrom = None
        if self._needsStamp and not held:
            if not journal:
                self._readJournal()
            # Where one id names two records (a message moved back beside
            # its deleted old record), the id is the live one's.
            byId = {}
            for entry in self.entries:
                known = byId.get(entry.msgid)
                if known is None or known.deleted:
                    byId[entry.msgid] = entry
            self._byId = byId
            self._stamp(handle)

    def _rereadFlags(self, handle):
        self._seenFresh = False
        for entry in self.entries:
            head = os.pread(handle.fd, min(entry.end - entry.start, 16384), entry.start)
            if not head.startswith(b"From "):
                self._reindex(handle.fd, handle.stat.st_size, handle.stat.st_ino)
                return
            entry.flags = parseHeader(head).flags

    # -- permanent ids and UIDs for every message

    def _findCopies(self, first):
        """
        Mark the entries from C{first} on (read from the file, not appended
        by the store) that another program copied in with the store's lines
        (mutt copying mail from another folder): a UID at or below an
        earlier record's, a UID between the last one the store wrote and
        UIDNEXT (given before, to a message since removed), or an id with
        no UID, which the store never writes.  Stamping gives them a new id
        and a new UID, as a copy gets (docs/folders.rst); so does a UID at
        or above UIDNEXT, which the store has not given (the append intent
        holds UIDNEXT before the bytes are written; after a power cut,
        replay writes the UID record again first: L{settleUidRecord}).  A
        record of an older release (no last UID in it) is trusted as before.
        """
        if self._lastUid is None or self._migrating:
            return
        previous = 0
        entries = self.entries
        for i in range(first - 1, -1, -1):
            if not entries[i].deleted:
                previous = entries[i].uid
                break
        # Removed: between the last UID and the record's UIDNEXT.  Never
        # given: at or above the higher of the record's and the intent's.
        last, removedBelow = self._lastUid, self._recordNext
        uidnext = max(removedBelow, self._intentNext)
        copies = set(self._copies)
        for i in range(first, len(entries)):
            entry = entries[i]
            if entry.deleted:
                continue
            uid = entry.uid
            if (uid and uid <= previous) or last < uid < removedBelow or uid >= uidnext or (
                    not uid and not entry.derived):
                copies.add(entry.serial)
                self._needsStamp = True
            previous = max(previous, uid)
        self._copies = copies

    def settleUidRecord(self, ours=()):
        """
        After a power cut's journal was replayed into this file: write its
        UID record again, synced, from what the file holds.  The record's
        last write may have been lost while the mail it counted was kept;
        so its UIDs cannot tell our mail from copies (L{_findCopies} is
        held meanwhile: C{copiesHeld}).  What can: the store's records are
        those the durable record counted (up to the first with its last
        UID) and those the replayed journal named (C{ours}, their ids);
        they come first, and every record after the last of them with an
        id line is a copy another program made.
        """
        self.copiesHeld = True
        try:
            with self.locked(journal=False):
                last = self._lastUid
                end = None
                if last is not None:
                    # The records the durable UID record counted: ascending
                    # UIDs up to its last one.
                    previous = 0
                    for i, entry in enumerate(self.entries):
                        if not previous < entry.uid <= last:
                            break
                        end, previous = i, entry.uid
                        if entry.uid == last:
                            break
                for i, entry in enumerate(self.entries):
                    if entry.msgid in ours:
                        end = i if end is None else max(end, i)
                if end is not None:
                    copies = set(self._copies)
                    for entry in self.entries[end + 1:]:
                        if not entry.deleted and not entry.derived:
                            copies.add(entry.serial)
                            self._needsStamp = True
                    self._copies = copies
                self._checkFrom = None
                self._saveUids(sync=True)
            if self._needsStamp:
                # Stamped now: this reader is replay's, and goes.
                with self.locked():
                    pass
        finally:
            self.copiesHeld = False

    def _stampNeeded(self):
        """
        The index of the first record that needs the store's lines: no id
        line, an id seen before, no UID, or a UID out of order.
        """
        seen = set()
        previous = 0
        for i, entry in enumerate(self.entries):
            if entry.deleted:
                continue
            if (entry.uid <= previous or entry.msgid in seen or entry.derived
                    or entry.serial in self._copies):
                return i
            seen.add(entry.msgid)
            previous = entry.uid
        return None

    def _stamp(self, handle):
        """
        Give every record from the first that needs it an id line (kept
        where it has one), a UID and room for flags: Dovecot's answer
        (X-UID written into the file when it first sees a message).
        """
        first = self._stampNeeded()
        self._needsStamp = False
        if first is None:
            return
        seen = {e.msgid for e in self.entries[:first]}
        previous = self.entries[first - 1].uid if first else 0
        self.uidNext = max(self.uidNext, previous + 1)
        migrating = self._migrating
        self._migrating = False

        copies, self._copies = self._copies, set()

        def restamp(entry, record):
            msgid = entry.msgid
            copy = entry.serial in copies
            if msgid in seen or (entry.derived and not migrating) or copy:
                msgid = newMessageId()
            seen.add(msgid)
            uid = entry.uid
            if copy or not uid or uid <= restamp.previous or uid >= self.uidNext:
                # Lost, out of order, or past UIDNEXT (not ours): a new UID.
                uid = self.uidNext
                self.uidNext += 1
            restamp.previous = uid
            return withStoreLines(record, msgid, uid, entry.flags)

        restamp.previous = previous
        self._rewriteTail(handle, first, restamp)
        self._saveUids(sync=True)

    # -- the crash-safe tail rewrite

    def _rewriteTail(self, handle, first, transform, drop=()):
        """
        Rewrite the records from C{first} to the end of the file with
        C{transform(entry, record) -> record}, in place: the old tail is
        synced to C{.F.tail} first, and a crash at any later point restores
        it (L{_recoverTail}).  Records of deleted entries are kept as they
        are (their keys must still match the delete journal).
        """
        fd = handle.fd
        start = self.entries[first].start
        size = handle.stat.st_size
        old = os.pread(fd, size - start, start)
        backup = os.open(self._tailName, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_FLAGS,
                         0o600, dir_fd=self._dirfd)
        try:
            _writeAll(backup, [b"%d %d %d\n" % (handle.stat.st_ino, start, size), old], 0)
            os.fsync(backup)
        finally:
            os.close(backup)
        os.fsync(self._dirfd)
        pieces = []
        offset = start
        newEntries = []
        for entry in self.entries[first:]:
            record = old[entry.start - start:entry.end - start]
            if not entry.deleted:
                record = transform(entry, record)
            key, msgid, uid, flags = _factsOf(record)
            new = _Entry(offset, offset + len(record), key, entry.serial, msgid, uid, flags)
            new.deleted = entry.deleted
            newEntries.append(new)
            pieces.append(record)
            offset += len(record)
        _writeAll(fd, pieces, start)
        if offset < size:
            os.ftruncate(fd, offset)
        os.fsync(fd)
        os.unlink(self._tailName, dir_fd=self._dirfd)
        os.fsync(self._dirfd)
        kept = self.entries[:first]
        self._replaceAll(kept + newEntries)
        self._size = offset
        st = os.fstat(fd)
        handle.stat = st
        self._mtime = st.st_mtime_ns

    def _recoverTail(self, handle):
        """
        Undo a tail rewrite a crash interrupted: put the old tail back.
        """
        try:
            fd = os.open(self._tailName, os.O_RDONLY | _O_FLAGS, dir_fd=self._dirfd)
        except FileNotFoundError:
            return
        try:
            data = b""
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        line, _, old = data.partition(b"\n")
        try:
            ino, start, size = (int(x) for x in line.split())
        except ValueError:
            ino = None
        if ino == handle.stat.st_ino and len(old) == size - start:
            log.warn("mailbox {user}: undoing an interrupted rewrite", user=self.userid)
            _writeAll(handle.fd, [old], start)
            os.ftruncate(handle.fd, size)
            os.fsync(handle.fd)
            handle.stat = os.fstat(handle.fd)
        os.unlink(self._tailName, dir_fd=self._dirfd)
        os.fsync(self._dirfd)

    # -- flags

    def setFlags(self, msgids, add, remove, sync=True):
        """
        Add and remove flags of messages: in place where the record has room
        (one C{pwrite} each), else by rewriting the file from the first
        message without room; durable before the answer: with the spool's
        journal, by one C{F} record per message in one journal sync (the
        file is synced at the checkpoint), else by syncing the file.  With
        C{sync} false (C{\\Seen} from reading) nothing is synced: the
        journal's record is written unsynced, or the file at the view's end.

        @return: the L{list} of changed entries.
        """
        with self.locked() as handle:
            return self._setFlags(handle, msgids, add, remove, sync)

    def _setFlags(self, handle, msgids, add, remove, sync):
        changed = []
        wanted = {}
        for msgid in dict.fromkeys(msgids):
            entry = self._byId.get(msgid)
            if entry is None or entry.deleted:
                continue
            flags = (entry.flags | add) - remove
            if flags != entry.flags:
                wanted[msgid] = flags
                changed.append(entry)
        if not changed:
            return []
        if sync and self.wal is not None and self.wal.grouping:
            # Group commit: the F records now, the writes after the
            # group's sync (docs/journal.rst).
            return self.wal.stage(self._flagRecords(changed, wanted),
                                  lambda: self._flagsAfterSync(wanted, add, remove))
        self._seenWritten(changed)
        return self._writeFlags(handle, changed, wanted, sync)

    def _seenWritten(self, entries):
        if self.seenUnwritten:
            # Written now, with the rest of their flags.
            for entry in entries:
                self.seenUnwritten.pop(entry.msgid, None)

    def _flagRecords(self, changed, wanted):
        return [Record(FLAGS, user=self.walName, msgid=e.msgid,
                       flags=flagsText(wanted[e.msgid])) for e in changed]

    def _flagsAfterSync(self, wanted, add, remove):
        """
        Once their C{F} records are synced: change the flags of the
        messages still there (from what the file says now: another process
        may have changed them since we looked; docs/journal.rst).

        @return: the entries of those messages.
        """
        with self.locked() as handle:
            live = [entry for entry in (self._byId.get(m) for m in wanted)
                    if entry is not None and not entry.deleted]
            now = {e.msgid: (e.flags | add) - remove for e in live}
            changed = [e for e in live if now[e.msgid] != e.flags]
            if changed:
                self._seenWritten(changed)
                self.wal.dirty.add(self.walName)
                self._writeFlags(handle, changed, now, False, journalled=True)
            return [self._byId[e.msgid] for e in live]

    def _writeFlags(self, handle, changed, wanted, sync, journalled=False):
        """
        Write C{wanted[id]} as the flags of the C{changed} entries
        (C{journalled}: the spool's journal holds them already).
        """
        rewriteFrom = None
        if self.wal is not None and not journalled:
            records = self._flagRecords(changed, wanted)
            if sync:
                self.wal.commit(records)
            else:
                # Durable with the journal's next sync or checkpoint.
                self.wal.note(records)
            self.wal.dirty.add(self.walName)
        for entry in changed:
            flags = wanted[entry.msgid]
            length = entry.end - entry.start
            head = os.pread(handle.fd, min(length, _QUICK_HEAD), entry.start)
            patch = quickPatch(head, flags)
            if patch is None:
                if length > len(head):
                    head = os.pread(handle.fd, length, entry.start)
                patch = patchInPlace(head, parseHeader(head), flags)
            if patch is None:
                i = bisect.bisect_left(self._serialList, entry.serial)
                rewriteFrom = i if rewriteFrom is None else min(rewriteFrom, i)
                continue
            offset, data = patch
            os.pwrite(handle.fd, data, entry.start + offset)
            entry.flags = sharedFlags(flags)
        if rewriteFrom is not None:
            def reflag(entry, record):
                flags = wanted.get(entry.msgid, entry.flags)
                return withStoreLines(record, entry.msgid, entry.uid, flags)

            self._rewriteTail(handle, rewriteFrom, reflag)
        elif sync and self.wal is None:
            os.fdatasync(handle.fd)
        self._generation = (self._generation or 0) + 1
        self._saveUids(sync=False)
        st = os.fstat(handle.fd)
        self._mtime = st.st_mtime_ns
        return [self._byId[e.msgid] for e in changed]

    # -- deletes through the journal's groups (MboxFile.markDeletedIds)

    def _stageDeletes(self, entries, one=False):
        ids = [e.msgid for e in entries]

        def apply():
            # Another process may have deleted them since we looked.
            deleted = self.markDeletedIds(ids, journalled=True)
            if one and not deleted:
                raise errors.NoCurrentMessage()
            return deleted

        return self.wal.stage(self._deleteRecords(entries), apply)

    def _deleteRecords(self, entries):
        return [Record(DELETE, user=self.walName, msgid=e.msgid, key=e.key)
                for e in entries]

    # -- \Seen from reading: at once in memory, written lazily

    #: Ids a job hands over to mark C{\\Seen} (views.PendingSeen): the next
    #: locked access marks them in memory, in the same lock.
    seenToApply = ()
    #: Ids marked C{\\Seen} in memory and not yet in the file (a L{dict}
    #: used as an ordered set), marked again after every refresh.
    seenUnwritten = None
    #: The entries the last marking changed (for the caller's events).
    seenApplied = ()
    #: Whether every id of C{seenUnwritten} is marked in memory and no
    #: entry was made or read again from the file since: then a job marks
    #: only the ids handed to it, not all of them again.
    _seenFresh = False

    def _applySeen(self):
        """
        Under the locks, after the refresh: mark in memory what reads marked
        C{\\Seen} and the file does not say yet (every reader in this
        process sees it at once).
        """
        todo = self.seenToApply
        if todo:
            if self.seenUnwritten is None:
                self.seenUnwritten = {}
            self.seenUnwritten.update(dict.fromkeys(todo))
            self.seenToApply = ()
        if not self._seenFresh:
            # Entries were made or read again from the file: all of them.
            todo = self.seenUnwritten
            self._seenFresh = True
        changed = []
        for msgid in todo:
            entry = self._byId.get(msgid)
            if entry is not None and not entry.deleted and SEEN not in entry.flags:
                entry.flags = sharedFlags(entry.flags | _SEEN)
                changed.append(entry)
        if changed:
            self.seenApplied = list(self.seenApplied) + changed

    def writeSeen(self):
        """
        Write the C{\\Seen} marks held in memory into the file, unsynced,
        with an unsynced C{F} record each in the spool's journal (its next
        sync or checkpoint makes them durable); or, without a journal,
        synced at the view's end.
        """
        with self.locked() as handle:
            ids, self.seenUnwritten = self.seenUnwritten, None
            entries = [entry for entry in (self._byId.get(m) for m in ids or ())
                       if entry is not None and not entry.deleted]
            if not entries:
                return []
            try:
                return self._writeFlags(handle, entries,
                                        {e.msgid: e.flags for e in entries}, False)
            except BaseException:
                self.seenUnwritten = dict.fromkeys(e.msgid for e in entries)
                raise

    def sync(self):
        """
        Make flags written lazily durable.
        """
        with self.locked() as handle:
            os.fdatasync(handle.fd)

    # -- moves and copies

    def records(self, msgids):
        """
        The records of these messages, for a move or copy: C{(entry,
        record)} pairs in the order given, gone ones skipped.
        """
        with self.locked() as handle:
            found = []
            for msgid in dict.fromkeys(msgids):
                entry = self._byId.get(msgid)
                if entry is not None and not entry.deleted:
                    found.append((entry, os.pread(handle.fd, entry.end - entry.start,
                                                  entry.start)))
            return found

    def snapshot(self, previous, cached):
        """
        What a watcher compares: C{{id: (uid, flags, key)}} of the messages
        not deleted, and the records of those new or changed since
        C{previous} (the last snapshot, or L{None}: none read), L{None} for
        those whose summary the caller holds (C{cached}, by C{(id, key)}).
        """
        with self.locked() as handle:
            now = {}
            records = []
            for entry in self.entries:
                if entry.deleted:
                    continue
                now[entry.msgid] = (entry.uid, entry.flags, entry.key)
                if previous is not None and previous.get(entry.msgid) != now[entry.msgid]:
                    record = None
                    if (entry.msgid, entry.key) not in cached:
                        record = os.pread(handle.fd, entry.end - entry.start, entry.start)
                    records.append((entry.msgid, entry.key, record))
            return now, records

    def read(self, handle, entry):
        """
        The record of C{entry}, read through C{handle} (under the locks).
        """
        return os.pread(handle.fd, entry.end - entry.start, entry.start)

    def keywords(self):
        """
        The keywords the folder's messages carry.
        """
        found = set()
        for entry in self.entries:
            if not entry.deleted:
                found.update(f for f in entry.flags if not f.startswith("\\"))
        return found

    def unseen(self):
        return sum(1 for e in self.entries if not e.deleted and SEEN not in e.flags)


def _factsOf(record):
    # A rewritten record is in the store's own shape: its key, id, UID and
    # flags come without parsing its header (a first look rewrites every
    # record of a file another program wrote).
    from twisted_mail.stores.spool.records import _facts

    return _facts(record)


def refuseMissing(e, name):
    """
    Translate a missing folder file into L{errors.NoSuchFolder}.
    """
    if isinstance(e, errors.NoSuchUser) or getattr(e, "errno", None) == errno.ENOENT:
        return errors.NoSuchFolder(name)
    return e
