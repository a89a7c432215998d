"""
The spool's write-ahead journal (docs/journal.rst): one file per server
process, C{.simplemail-<pid>.journal} in the spool directory, so that a
batch of deliveries to any number of mailboxes is acknowledged after one
sync of the journal; the mbox files are written at once (unsynced, so every
reader sees the message when it is acknowledged) and synced in bulk at
checkpoints, after which the journal is emptied.

Format: a sequence of frames, one per transaction (a batch)::

    magic b"SMJ1" | payload length (u32 LE) | crc32 of the payload (u32 LE)
    payload: epoch (u32) | txid (u64) | boot id (16 bytes) | count (u16)
             | count records

A frame whose magic, length or checksum is wrong, or whose epoch differs
from the first frame's, ends the journal: a torn tail (a crash in the
middle of a write) was never acknowledged and is ignored.  Records, each a
type byte and its fields (strings: u16 length + UTF-8; data: u32 length +
bytes; inode: u64):

  - C{D} delivery: user, inode of the mbox appended to, message id, the
    whole mbox record.
  - C{X} delete: user, message id, content key (16 bytes).
  - C{A} abort: user, message id: a delivery journalled but not written
    (the append failed, the client was told so); not applied.
  - C{F} flags: file, message id, the flags (names joined by spaces);
    replay sets them.
  - C{M} move: source file, message id, target file, inode of the target
    mbox, the id in the target (the same: a move keeps the id), the
    record as appended without the store's lines; replay is the append
    to the target then the delete in the source (docs/journal.rst).

A "user" field names an mbox file: C{bob} is INBOX (C{<spool>/bob}),
C{bob/f3a91c0d2e4b5f60} one of bob's folder files
(C{<spool>/.bob.folders/f3a91c0d2e4b5f60}; see L{filePaths}).

Recovery (the rules are in docs/journal.rst) is
L{twisted_mail.stores.spool.replay}.
"""

import os
import struct
import threading
import time
import zlib

from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_mail import errors
from twisted_mail.stores.spool.locks import _O_FLAGS, lockFile
from twisted_mail.stores.spool.records import _writeAll

log = Logger()

MAGIC = b"SMJ1"
_FRAME = struct.Struct("<4sII")
_TX = struct.Struct("<IQ16sH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

DELIVERY = b"D"
DELETE = b"X"
ABORT = b"A"
FLAGS = b"F"
MOVE = b"M"

#: The fields of each record type, in order: s string, i inode, k key,
#: d data.
RECORD_FIELDS = {
    DELIVERY: ("user", "inode", "msgid", "data"),
    DELETE: ("user", "msgid", "key"),
    ABORT: ("user", "msgid"),
    FLAGS: ("user", "msgid", "flags"),
    MOVE: ("user", "msgid", "toUser", "inode", "newMsgid", "data"),
}
_KINDS = {"user": "s", "msgid": "s", "toUser": "s", "newMsgid": "s", "flags": "s",
          "inode": "i", "key": "k", "data": "d"}

#: Journal file names: C{.simplemail-<pid>.journal}.
PREFIX = ".simplemail-"
SUFFIX = ".journal"

#: Empty the journal (checkpoint) when it grows past this many bytes.
CHECKPOINT_SIZE = 32 * 1024 * 1024


def bootId():
    """
    This boot of the machine (16 bytes): a journal written in this boot
    needs no replay, the page cache still holds every write (see
    docs/journal.rst).
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return bytes.fromhex(f.read().strip().replace(b"-", b"").decode("ascii"))
    except (OSError, ValueError):
        return b"\0" * 16


class Record:
    """
    One journal record: its type and its fields by name.
    """

    __slots__ = ("type", "fields")

    def __init__(self, type, **fields):
        self.type = type
        self.fields = fields

    def __getattr__(self, name):
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name)

    def __repr__(self):
        shown = {k: (v if k != "data" else "<%d bytes>" % (_size(v),))
                 for k, v in self.fields.items()}
        return "Record(%r, %r)" % (self.type, shown)

    def chunks(self):
        """
        The encoded record, as byte strings (data is not copied).
        """
        fields = self.fields
        if self.type == DELIVERY:
            # Most records: one header piece, then the record's pieces.
            user = fields["user"].encode("utf-8")
            msgid = fields["msgid"].encode("utf-8")
            data = fields["data"]
            if not isinstance(data, (list, tuple)):
                data = [data]
            return [b"".join((DELIVERY, _U16.pack(len(user)), user,
                              _U64.pack(fields["inode"]), _U16.pack(len(msgid)), msgid,
                              _U32.pack(sum(map(len, data)))))] + list(data)
        return self._fieldChunks()

    def _fieldChunks(self):
        """
        The encoded record, field by field (every type).
        """
        fields = self.fields
        out = [self.type]
        for name in RECORD_FIELDS[self.type]:
            value = fields[name]
            kind = _KINDS[name]
            if kind == "s":
                raw = value.encode("utf-8")
                out += [_U16.pack(len(raw)), raw]
            elif kind == "i":
                out.append(_U64.pack(value))
            elif kind == "k":
                out.append(bytes(value).ljust(16, b"\0")[:16])
            else:
                chunks = value if isinstance(value, (list, tuple)) else [value]
                out.append(_U32.pack(sum(map(len, chunks))))
                out.extend(chunks)
        return out


def _size(value):
    if isinstance(value, (list, tuple)):
        return sum(len(c) for c in value)
    return len(value)


def _decodeRecord(payload, pos):
    type = payload[pos:pos + 1]
    names = RECORD_FIELDS.get(bytes(type))
    if names is None:
        raise ValueError("unknown record type %r" % (type,))
    pos += 1
    fields = {}
    for name in names:
        kind = _KINDS[name]
        if kind == "s":
            (n,) = _U16.unpack_from(payload, pos)
            pos += 2
            fields[name] = bytes(payload[pos:pos + n]).decode("utf-8")
            pos += n
        elif kind == "i":
            (fields[name],) = _U64.unpack_from(payload, pos)
            pos += 8
        elif kind == "k":
            fields[name] = bytes(payload[pos:pos + 16])
            pos += 16
        else:
            (n,) = _U32.unpack_from(payload, pos)
            pos += 4
            fields[name] = bytes(payload[pos:pos + n])
            pos += n
        if pos > len(payload):
            raise ValueError("record runs past its frame")
    return Record(bytes(type), **fields), pos


def encodeFrame(epoch, txid, boot, records):
    """
    A transaction's frame, as byte strings for one C{pwritev}: its header
    and its payload (joined: one checksum call, where a checksum and a
    length per piece cost more Python steps than the copy).
    """
    body = [_TX.pack(epoch, txid, boot, len(records))]
    for record in records:
        body += record.chunks()
    payload = b"".join(body)
    return [_FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)), payload]


class Transaction:
    """
    One frame read back: C{epoch}, C{txid}, C{boot}, C{records}, and
    C{start}, C{end}: where it lies in the journal.
    """

    def __init__(self, epoch, txid, boot, records, start, end):
        self.epoch = epoch
        self.txid = txid
        self.boot = boot
        self.records = records
        self.start = start
        self.end = end


def readFrames(data):
    """
    The whole transactions at the start of C{data} (a journal's bytes),
    stopping at the first torn or foreign frame.

    @return: a L{list} of L{Transaction}.
    """
    view = memoryview(data)
    found = []
    pos = 0
    epoch = None
    while pos + _FRAME.size <= len(view):
        magic, length, crc = _FRAME.unpack_from(view, pos)
        start = pos + _FRAME.size
        end = start + length
        if magic != MAGIC or end > len(view) or length < _TX.size:
            break
        payload = view[start:end]
        if zlib.crc32(payload) != crc:
            break
        frameEpoch, txid, boot, count = _TX.unpack_from(payload, 0)
        if epoch is None:
            epoch = frameEpoch
        elif frameEpoch != epoch:
            break  # a stale frame left by an emptying that did not persist
        records = []
        at = _TX.size
        try:
            for _ in range(count):
                record, at = _decodeRecord(payload, at)
                records.append(record)
        except (ValueError, struct.error, UnicodeDecodeError):
            break
        found.append(Transaction(frameEpoch, txid, boot, records, pos, end))
        pos = end
    return found


def journalName(pid, n=0):
    """
    The name of a process's journal: C{.simplemail-<pid>.journal}, or
    C{.simplemail-<pid>-<n>.journal} for its C{n}th store on one spool
    (tests).
    """
    middle = str(pid) if not n else "{}-{}".format(pid, n)
    return "{}{}{}".format(PREFIX, middle, SUFFIX)


def isJournalName(name):
    if not (name.startswith(PREFIX) and name.endswith(SUFFIX)):
        return False
    return name[len(PREFIX):-len(SUFFIX)].replace("-", "", 1).isdigit()


def filePaths(name):
    """
    The paths, relative to the spool directory, of the directory, the mbox
    file and the delete-mark file that a journal record's file name names
    (C{bob}: INBOX; C{bob/<file>}: a folder file of bob's).
    """
    user, _, filename = name.partition("/")
    if not filename:
        return ".", user, "." + user + ".deleted"
    folder = "." + user + ".folders"
    return folder, folder + "/" + filename, folder + "/." + filename + ".deleted"


def flagsText(flags):
    """
    Flags as an C{F} record holds them.
    """
    return " ".join(sorted(flags))


def flagsOfText(text):
    return frozenset(text.split())


def syncSpoolFiles(dirfd, users, created=True):
    """
    Sync, in bulk, the mbox files, delete-mark files and UID records of
    C{users} (file names as records give them: L{filePaths}), then their
    directories (a delete-mark file may be new): a checkpoint.  The UID
    record goes with its file: once the journal is trimmed, it alone keeps
    the UIDs given to messages another program may delete.
    """
    folders = set()
    for user in sorted(users):
        folder, mbox, marks = filePaths(user)
        if folder != ".":
            folders.add(folder)
        # The UID record is named as the delete-mark file is.
        uids = marks[:-len(".deleted")] + ".uids"
        for name in (mbox, marks, uids):
            try:
                fd = os.open(name, os.O_RDONLY | _O_FLAGS, dir_fd=dirfd)
            except (FileNotFoundError, OSError):
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
    if created:
        for folder in sorted(folders):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _O_FLAGS, dir_fd=dirfd)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.fsync(dirfd)


class Staged:
    """
    A mailbox job's answer that waits for its group's journal sync
    (L{Journal.stage}): the job's frame is written, unsynced, when the job
    runs; its file writes (C{apply}) run once the group's one sync is done,
    and the job is answered with what they return.

    @ivar result: what C{apply} returned, or the L{Failure} it raised (or
        the sync's), passed through every function given to L{then}.
    """

    def __init__(self, apply):
        self._apply = apply
        self._after = []
        self.done = False
        self.result = None

    def then(self, f):
        """
        Pass the result (a value or a L{Failure}) through C{f} once known.
        """
        self._after.append(f)
        return self

    def _finish(self, result):
        for f in self._after:
            try:
                result = f(result)
            except BaseException:
                result = Failure()
        self.result = result
        self.done = True

    def run(self):
        try:
            result = self._apply()
        except BaseException:
            result = Failure()
        self._finish(result)

    def fail(self, failure):
        self._finish(failure)


class Journal:
    """
    This process's journal.  Synchronous, for the mailbox thread; every
    mailbox job of a journalling store runs under L{lock}, so a checkpoint
    never empties the journal between a commit and the writes it covers.

    Group commit (docs/journal.rst): while L{grouping} (the store's runner
    takes every queued mailbox job, L{JournalledDeliveries.runJobs}), a job
    L{stage}s its frame, unsynced, and leaves its file writes for after the
    sync; L{flush} then syncs every frame of the group at once, runs their
    file writes in order, and only then are the jobs answered.

    @ivar dirty: the users whose files were written since the last
        checkpoint.
    @ivar grouping: whether L{stage} defers the sync and the file writes
        (the runner sets it while it runs a group of jobs).
    @ivar commits: the journal's syncs.
    """

    grouping = False

    def __init__(self, dirfd, pid=None, boot=None, sizeLimit=CHECKPOINT_SIZE):
        self._dirfd = dirfd
        self.pid = os.getpid() if pid is None else pid
        self.name = None
        self.boot = bootId() if boot is None else boot
        self.sizeLimit = sizeLimit
        self.lock = threading.RLock()
        self.dirty = set()
        self._fd = None
        self._end = 0
        # The end of the journal when it was last synced, and the jobs
        # whose frames were written since, waiting for the sync.
        self._synced = 0
        self._staged = []
        self._epoch = 1
        self._txid = 0
        self.commits = 0
        self.checkpoints = 0
        # Tests only (SIMPLEMAIL_CHECKPOINT_PAUSE): seconds a checkpoint
        # waits, logged, before and after syncing the files, so that a
        # test can kill the process inside one.
        self.pause = float(os.environ.get("SIMPLEMAIL_CHECKPOINT_PAUSE") or 0)

    def open(self, recoverLeftover):
        """
        Create the journal file (an old one of the same name, from a dead
        process with our pid, is first handed to C{recoverLeftover}), lock
        it for the life of this process, and sync the directory.
        """
        n = 0
        retried = False
        while True:
            name = journalName(self.pid, n)
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_FLAGS,
                             0o600, dir_fd=self._dirfd)
                break
            except FileExistsError:
                if retried:
                    # Another store of this process journals there.
                    n += 1
                    retried = False
                else:
                    recoverLeftover(name)
                    retried = True
        self.name = name
        try:
            lockFile(fd)
        except OSError:
            os.close(fd)
            raise
        os.fsync(self._dirfd)
        self._fd = fd
        self._end = self._synced = 0

    @property
    def size(self):
        return self._end

    def _write(self, records):
        """
        Append one transaction, unsynced.

        @raise OSError: if it could not be written (it is cut off again).
        """
        self._txid += 1
        frame = encodeFrame(self._epoch, self._txid, self.boot, records)
        start = self._end
        try:
            _writeAll(self._fd, frame, start)
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise
        self._end = start + len(frame[0]) + len(frame[1])
        return self._txid

    def _sync(self):
        """
        Sync what was written since the last sync.  If that fails, nothing
        written since counts: the journal is cut back, and the jobs waiting
        for it fail.

        @raise OSError: if the sync failed.
        """
        if self._end == self._synced:
            return
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, self._synced)
            except OSError:
                pass
            self._end = self._synced
            staged, self._staged = self._staged, []
            failure = Failure(errors.TemporaryFailure(
                "the journal could not be written: " + (os.strerror(e.errno) if e.errno
                                                         else str(e))))
            for job in staged:
                job.fail(failure)
            raise
        self._synced = self._end
        self.commits += 1

    def _runStaged(self):
        """
        The file writes of the jobs whose frames are synced now, in order
        (outside the group: a journal write they make syncs at once).
        """
        grouping, self.grouping = self.grouping, False
        try:
            while self._staged:
                staged, self._staged = self._staged, []
                for job in staged:
                    job.run()
        finally:
            self.grouping = grouping

    def commit(self, records):
        """
        Write one transaction and sync it: after this returns, the records
        survive a power cut.  Frames staged before it are synced with it,
        and their file writes run.

        @return: the transaction id.
        @raise OSError: if it could not be written or synced (nothing of it
            counts: the journal is cut back).
        """
        txid = self._write(records)
        self._sync()
        self._runStaged()
        return txid

    def stage(self, records, apply):
        """
        Journal C{records}, then run C{apply} (the file writes they cover)
        once they are synced: in a group (L{grouping}), write them unsynced
        and leave C{apply} for L{flush}, returning a L{Staged} the runner
        answers the job with; outside one, L{commit} and apply at once.

        @return: a L{Staged}, or what C{apply} returned.
        @raise OSError: if the records could not be written.
        """
        if not self.grouping:
            self.commit(records)
            return apply()
        self._write(records)
        job = Staged(apply)
        self._staged.append(job)
        return job

    def flush(self):
        """
        End a group: one sync for every frame written since the last, then
        the staged jobs' file writes, in order.  A failed sync fails those
        jobs (nothing of theirs was written to the files).
        """
        if not self._staged:
            # Frames noted unsynced (aborts, reads' \Seen) wait for the
            # next sync or checkpoint.
            return
        try:
            self._sync()
        except OSError:
            log.failure("journal {name}: sync failed", name=self.name)
            return
        self._runStaged()

    def note(self, records):
        """
        Write a transaction without syncing it (aborts: if it is lost, the
        delivery it cancels is applied at replay: a duplicate, never a
        loss).
        """
        try:
            self._write(records)
        except OSError:
            log.failure("journal: could not note an abort")

    def checkpoint(self):
        """
        Sync every file written since the last checkpoint, then empty the
        journal.  The emptying need not be synced: if it is lost, replay
        finds records already in the files and skips them (docs/journal.rst).
        """
        with self.lock:
            # The jobs of a group first: their writes are in the files then.
            self.flush()
            if self._end == 0 and not self.dirty:
                return False
            self._paused("syncing")
            syncSpoolFiles(self._dirfd, self.dirty)
            self._paused("synced")
            os.ftruncate(self._fd, 0)
            self._end = self._synced = 0
            self._epoch += 1
            self.dirty = set()
            self.checkpoints += 1
            return True

    def _paused(self, stage):
        if self.pause:
            log.info("journal {name}: checkpoint {stage}", name=self.name, stage=stage)
            time.sleep(self.pause)

    def close(self):
        """
        Checkpoint, then remove the journal (when the server stops).
        """
        with self.lock:
            if self._fd is None:
                return
            self.checkpoint()
            os.unlink(self.name, dir_fd=self._dirfd)
            os.fsync(self._dirfd)
            os.close(self._fd)
            self._fd = None
