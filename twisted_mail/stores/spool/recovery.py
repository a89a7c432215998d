"""
Crash recovery of one mbox file (L{twisted_mail.stores.spool.mboxfile}):
the delete journal and the append intent.

  - The B{append intent} (C{.<user>.append}) records, synced before an
    append, the file's inode, where the append begins and ends, and its
    first bytes.  A later locked access that finds the file longer than the
    start but shorter than the end, beginning with those bytes, cuts the
    torn tail off at the start.
  - The B{delete journal} (C{.<user>.deleted}) holds, one per line, the keys
    of messages deleted and not yet expunged; a delete is acknowledged once
    its line is synced, and every reader hides journalled messages.  An
    expunge writes C{expunged <inode>} into it before the rename, so a
    journal outliving a finished expunge is recognised as stale.
"""

import os

from twisted.logger import Logger

from twisted_mail.stores.spool.locks import _O_FLAGS
from twisted_mail.stores.spool.records import _writeAll, keyed

log = Logger()

_INTENT_SIZE = 128
#: How many first bytes of an append its intent keeps, to recognise them.
_INTENT_HEAD = 32


def inodeNumber(ino):
    """
    The inode number a recovery record (append intent, delete journal,
    write-ahead journal) would name for a file of inode C{ino}: itself.  A
    seam for the crash-state explorer (tests/crashstates.py), which copies
    files and maps the copies back to the inodes it recorded.
    """
    return ino


class CrashRecovery:
    """
    The delete journal and the append intent of an L{MboxFile}, a mixin:
    it uses the file's C{userid}, C{_dirfd}, C{_ino}, C{entries}, C{_byKey},
    C{live}, C{_journalName}, C{_intentName}, C{_journalIno} and
    C{_journalPos}.
    """

    #: The highest UIDNEXT the append intent held or was given (L{_writeIntent}).
    _intentNext = 0

    # -- the delete journal

    def _readJournal(self):
        """
        Apply delete marks written to the journal (by us or another process)
        since we last looked.
        """
        try:
            fd = os.open(self._journalName, os.O_RDONLY | _O_FLAGS, dir_fd=self._dirfd)
        except FileNotFoundError:
            if self._journalIno is not None:
                self._journalIno = None
                self._journalPos = 0
            return
        try:
            st = os.fstat(fd)
            if st.st_ino != self._journalIno or st.st_size < self._journalPos:
                # A journal we have not read from its start: every mark
                # comes from it, so apply them all afresh.
                self._journalIno = st.st_ino
                self._journalPos = 0
                for entry in self.entries:
                    if entry.deleted:
                        entry.deleted = False
                        self.live += 1
            if st.st_size == self._journalPos:
                return
            data = os.pread(fd, st.st_size - self._journalPos, self._journalPos)
        finally:
            os.close(fd)
        complete = data.rfind(b"\n") + 1
        lines = data[:complete].split(b"\n")[:-1]
        self._journalPos += complete
        if any(line.startswith(b"expunged ") for line in lines):
            if self._journalIsStale(lines):
                return
        for line in lines:
            if len(line) == 32:
                try:
                    key = bytes.fromhex(line.decode("ascii"))
                except ValueError:
                    continue
                self._applyMark(key)

    def _journalIsStale(self, lines):
        """
        A journal whose expunge completed (the mailbox is now the file the
        expunge wrote) describes nothing in the mailbox: remove it.
        """
        for line in lines:
            if line.startswith(b"expunged "):
                try:
                    ino = int(line.split()[1])
                except (ValueError, IndexError):
                    continue
                if ino == inodeNumber(self._ino):
                    self._removeJournal()
                    return True
        return False

    def _applyMark(self, key):
        for entry in keyed(self._byKey, key):
            if not entry.deleted:
                entry.deleted = True
                self.live -= 1
                return

    def _removeJournal(self):
        try:
            os.unlink(self._journalName, dir_fd=self._dirfd)
        except FileNotFoundError:
            pass
        self._journalIno = None
        self._journalPos = 0

    # -- the append intent

    def _readIntent(self):
        try:
            fd = self._intentFile.acquire(self._dirfd, self._intentName)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(fd, _INTENT_SIZE, 0)
        finally:
            self._intentFile.release(fd)
        fields = data.split()
        if fields and fields[0].startswith(b"U"):
            try:
                self._intentNext = max(self._intentNext, int(fields[0][1:]))
            except ValueError:
                return None
            del fields[0]
        try:
            ino, start, end = (int(x) for x in fields[:3])
            head = bytes.fromhex(fields[3].decode("ascii")) if len(fields) > 3 else b""
        except (ValueError, UnicodeDecodeError):
            return None
        return ino, start, end, head

    def _openIntent(self, durable=True):
        """
        Open the append intent (kept open between jobs: a L{SideFile}),
        creating it if need be; a new one's directory entry is synced
        (unless C{durable} is false: the spool's journal covers the append
        then), or a power cut could lose the intent that recognises a torn
        append (found by tests/crashstates.py).  Give the descriptor back
        with L{_closeIntent}.
        """
        try:
            return self._intentFile.acquire(self._dirfd, self._intentName)
        except FileNotFoundError:
            pass
        fd = os.open(self._intentName, os.O_WRONLY | os.O_CREAT | _O_FLAGS, 0o600,
                     dir_fd=self._dirfd)
        if durable:
            try:
                os.fsync(self._dirfd)
            except OSError:
                os.close(fd)
                raise
        return fd

    def _closeIntent(self, fd):
        """
        Give back a descriptor L{_openIntent} returned.
        """
        self._intentFile.release(fd)

    def closeSideFiles(self):
        """
        Close the files beside the mailbox kept open between jobs (the
        store is closing, or a test records every open from now on).
        """
        self._intentFile.close()
        self._uidsFile.close()

    def _writeIntent(self, ino, start, end, sync, head=b"", fd=None, uidNext=0):
        """
        Record (or, with zeros, clear) where an append begins and ends, and
        its first bytes, so that a crash's torn tail can be recognised as
        ours and cut off exactly; and the mailbox's UIDNEXT after it.

        The intent is synced before the append's bytes are written (without
        the journal), so its UIDNEXT is on disk whenever a message that
        raised it is: the UID record, written but not synced per append,
        may be older after a power cut, and if another program then removed
        the newest messages, their UIDs would otherwise be given again.
        A clear keeps the UIDNEXT.

        @param fd: the intent file, open (L{_openIntent}); by default it is
            opened and closed here.
        @param uidNext: UIDNEXT after the append (never lowered).
        """
        self._intentNext = max(self._intentNext, uidNext)
        record = b"U%d %d %d %d" % (self._intentNext, ino, start, end)
        room = (_INTENT_SIZE - 2 - len(record)) // 2
        record += b" " + head[:max(0, min(_INTENT_HEAD, room))].hex().encode()
        record = record.ljust(_INTENT_SIZE - 1) + b"\n"
        if fd is None:
            fd = self._openIntent()
            try:
                self._writeIntent(ino, start, end, sync, head, fd)
            finally:
                self._closeIntent(fd)
            return
        os.pwrite(fd, record, 0)
        if sync:
            os.fdatasync(fd)

    def _recover(self, handle):
        """
        Cut off the torn tail of an append that never completed.
        """
        intent = self._readIntent()
        if intent is None:
            return
        ino, start, end, head = intent
        st = handle.stat
        if ino != inodeNumber(st.st_ino) or not (start < st.st_size < end):
            return
        found = os.pread(handle.fd, min(len(head), st.st_size - start), start)
        if not head.startswith(found):
            # Not our bytes: another program broke our stale lock and wrote
            # here after the crash.  Keep its mail; forget the intent.
            log.warn(
                "mailbox {user}: an interrupted delivery was followed by another "
                "program's writes; nothing cut",
                user=self.userid,
            )
            self._writeIntent(ino, 0, 0, sync=False)
            return
        log.warn(
            "mailbox {user}: cutting off {n} bytes of an interrupted delivery",
            user=self.userid,
            n=st.st_size - start,
        )
        os.ftruncate(handle.fd, start)
        os.fsync(handle.fd)
        handle.stat = os.fstat(handle.fd)
        self._writeIntent(ino, 0, 0, sync=False)

    def _appendJournal(self, line, sync=True):
        """
        Append delete marks; synced unless C{sync} is false (the spool's
        journal holds them durably then, and a checkpoint syncs this file).
        """
        fd = os.open(
            self._journalName,
            os.O_RDWR | os.O_CREAT | _O_FLAGS,
            0o600,
            dir_fd=self._dirfd,
        )
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size:
                # A torn last line (a crash mid-write) was never
                # acknowledged: write after it on a line of its own.
                if os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
            _writeAll(fd, [line], size)
            if sync:
                os.fdatasync(fd)
                if size == 0:
                    os.fsync(self._dirfd)
            if st.st_ino == self._journalIno and self._journalPos == size:
                self._journalPos = size + len(line)
        finally:
            os.close(fd)
