"""
A user's folders in the spool (docs/folders.rst): synchronous code for a
worker thread.

Layout::

    <spool>/bob                       INBOX (as ever)
    <spool>/.bob.uids                 INBOX's UID record
    <spool>/.bob.folders/             bob's other folders (mode 0700)
        f3a91c0d2e4b5f60              one folder: an mbox file (mutt -f)
        .f3a91c0d2e4b5f60.uids        its UID record and its name (JSON)
        .f3a91c0d2e4b5f60.deleted     its delete journal, .append, .new,
                                      .tail: as for INBOX
        .moving                       a move in progress (see L{Folders})
        .uidvalidity                  the last UIDVALIDITY given to a folder

A folder's file name never comes from its name: any name, however hostile,
is data in the UID record, never a path.  The directory and every file are
opened without following symbolic links; a folder file that is not a
regular file with one link is refused as a mailbox is.
"""

import fcntl
import json
import os
import re
import secrets
import stat
import threading
import time
from contextlib import contextmanager

from twisted_mail import errors
from twisted_mail.mail.model import INBOX, SPECIAL_FOLDERS
from twisted_mail.stores.base import checkDeletable, folderOrder, renames
from twisted_mail.stores.spool.folderfile import readUidRecord, writeUidRecord
from twisted_mail.stores.spool.locks import _O_FLAGS, directoryEntries
from twisted_mail.stores.spool.records import _writeAll

_RECORD = re.compile(r"\A\.(f[0-9a-f]{16})\.uids\Z")
_SIDECARS = (".{}.uids", ".{}.deleted", ".{}.append", ".{}.new", ".{}.tail",
             ".{}.uids.new", "{}.lock", "{}")

VALIDITY_FILE = ".uidvalidity"


def newValidity(dirfd):
    """
    A UIDVALIDITY never given before in the directory C{dirfd}: the time, or
    one more than the last given (kept in L{VALIDITY_FILE}, under an
    flock), so that a folder deleted and made again within a second gets a
    new one.
    """
    fd = os.open(VALIDITY_FILE, os.O_RDWR | os.O_CREAT | _O_FLAGS, 0o600, dir_fd=dirfd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            last = int(os.pread(fd, 32, 0).split()[0])
        except (ValueError, IndexError):
            last = 0
        validity = max(last + 1, int(time.time()))
        if validity >= 2 ** 32:
            validity = 1
        os.pwrite(fd, b"%d\n" % (validity,), 0)
        os.fsync(fd)
        return validity
    finally:
        os.close(fd)


class Folders:
    """
    One user's folder directory.  Every change holds an flock on the
    directory, so processes sharing the spool make them one at a time.

    A move between folder files writes C{.moving} (the source, the target
    and the ids) before the target's append and removes it once the
    source's delete is journalled: a crash between leaves the message in
    both, and L{pendingMove} tells the store to finish the delete.
    """

    def __init__(self, spoolfd, userid):
        self._spoolfd = spoolfd
        self.userid = userid
        self._fd = None
        self._threadLock = threading.RLock()
        self._openLock = threading.Lock()
        self.lockSource = None
        # Whether a move a crash interrupted was looked for (the store's).
        self.moveChecked = False
        self._moveFileSynced = False

    @property
    def dirfd(self):
        """
        The directory, opened (and made) on first need.
        """
        # Opened once, by one thread: two threads opening it at once would
        # each lock their own descriptor, and a lock taken on one and
        # released on the other stays held for good.
        with self._openLock:
            if self._fd is None:
                name = "." + self.userid + ".folders"
                try:
                    os.mkdir(name, 0o700, dir_fd=self._spoolfd)
                    os.fsync(self._spoolfd)
                except FileExistsError:
                    pass
                try:
                    self._fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _O_FLAGS,
                                       dir_fd=self._spoolfd)
                except OSError:
                    raise errors.MailboxUnavailable(self.userid)
            return self._fd

    def close(self):
        if self.lockSource is not None:
            self.lockSource.remove()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def locked(self):
        with self._threadLock:
            fd = self.dirfd  # the one descriptor locked and unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def scan(self):
        """
        The folders other than INBOX: a L{dict} from canonical name to
        C{(file name, uidvalidity)}.
        """
        found = {}
        for entryName, _ in directoryEntries(self.dirfd):
            match = _RECORD.match(entryName)
            if not match:
                continue
            filename = match.group(1)
            record = readUidRecord(self.dirfd, filename)
            if record is None:
                continue
            try:
                name = json.loads(record[3].decode("utf-8"))["name"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue
            if isinstance(name, str) and name not in found:
                found[name] = (filename, record[0])
        return found

    def names(self):
        return folderOrder([INBOX] + list(self.scan()))

    def fileOf(self, name, make=True):
        """
        The file name of folder C{name} (canonical, not INBOX), making a
        special-use one on first need.

        @raise NoSuchFolder: it does not exist.
        """
        found = self.scan().get(name)
        if found is None:
            if not (make and name in SPECIAL_FOLDERS):
                raise errors.NoSuchFolder(name)
            with self.locked():
                found = self.scan().get(name)
                if found is None:
                    return self._create(name)
        return found[0]

    def ensureSpecial(self):
        """
        Make the special-use folders that are missing.
        """
        existing = self.scan()
        missing = [name for name in SPECIAL_FOLDERS if name not in existing]
        if missing:
            with self.locked():
                existing = self.scan()
                for name in missing:
                    if name not in existing:
                        self._create(name)

    def create(self, name):
        if name == INBOX or name in SPECIAL_FOLDERS:
            raise errors.FolderExists(name)
        with self.locked():
            if name in self.scan():
                raise errors.FolderExists(name)
            self._create(name)
        return name

    def _create(self, name):
        filename = "f" + secrets.token_hex(8)
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_FLAGS, 0o600,
                     dir_fd=self.dirfd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        # The UID record last: the folder exists once it does.
        writeUidRecord(self.dirfd, filename, newValidity(self.dirfd), 1, 0,
                       _nameRecord(name))
        return filename

    def rename(self, name, newName):
        with self.locked():
            found = self.scan()
            moved = renames(list(found) + [INBOX], name, newName)
            for old, new in moved:
                filename = found[old][0]
                record = readUidRecord(self.dirfd, filename)
                if record is None:
                    continue
                validity, uidnext, generation, _, last = record
                writeUidRecord(self.dirfd, filename, validity, uidnext, generation,
                               _nameRecord(new), last=last)
        return newName

    def delete(self, name):
        """
        Delete a folder and its mail for good: its UID record first (the
        folder is gone), then its file and the files beside it.

        @return: the file name it had.
        """
        with self.locked():
            found = self.scan()
            checkDeletable(list(found) + [INBOX], name)
            filename = found[name][0]
            os.unlink(".{}.uids".format(filename), dir_fd=self.dirfd)
            os.fsync(self.dirfd)
            for pattern in _SIDECARS:
                try:
                    os.unlink(pattern.format(filename), dir_fd=self.dirfd)
                except FileNotFoundError:
                    pass
            os.fsync(self.dirfd)
        return filename

    def checkFile(self, filename):
        """
        Refuse a folder file that is a symbolic link or has other links.
        """
        st = os.stat(filename, dir_fd=self.dirfd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise errors.MailboxUnavailable(self.userid)

    # -- moves between files

    def beginMove(self, source, target, msgids):
        """
        Record, synced, that a move is about to append these messages to
        C{target} and then delete them from C{source}.  The file stays (it is
        emptied when the move ends), so that this costs one data sync, not a
        directory's.
        """
        fd = os.open(".moving", os.O_WRONLY | os.O_CREAT | _O_FLAGS, 0o600,
                     dir_fd=self.dirfd)
        try:
            data = json.dumps({"source": source, "target": target,
                               "ids": list(msgids)}).encode("ascii") + b"\n"
            os.ftruncate(fd, 0)
            _writeAll(fd, [data], 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if not self._moveFileSynced:
            os.fsync(self.dirfd)
            self._moveFileSynced = True

    def endMove(self):
        """
        The move is done: empty the record (no sync: finishing a finished
        move again only finds nothing to do).
        """
        try:
            fd = os.open(".moving", os.O_WRONLY | _O_FLAGS, dir_fd=self.dirfd)
        except FileNotFoundError:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def pendingMove(self):
        """
        A move a crash interrupted: C{(source, target, ids)} (file names,
        L{None} for INBOX), or L{None}.
        """
        try:
            fd = os.open(".moving", os.O_RDONLY | _O_FLAGS, dir_fd=self.dirfd)
        except FileNotFoundError:
            return None
        try:
            data = os.read(fd, 1 << 22)
        finally:
            os.close(fd)
        if not data:
            return None
        try:
            move = json.loads(data.decode("ascii"))
            return move["source"], move["target"], list(move["ids"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            self.endMove()
            return None


def _nameRecord(name):
    return json.dumps({"name": name}).encode("ascii") + b"\n"
