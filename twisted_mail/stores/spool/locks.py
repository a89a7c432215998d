"""
How the spool locks a mailbox against other processes and other mail tools:
the C{fcntl} lock on the file and the C{<user>.lock} dot-lock made as a hard
link to this process's lock source file.  Used by L{twisted_mail.stores.spool.mboxfile}.
"""

import errno
import fcntl
import os
import stat
import struct
import threading
import time

from twisted.logger import Logger

from twisted_mail import errors

log = Logger()

#: A dot-lock older than this is stale even if we cannot tell who holds it.
STALE_DOTLOCK_AGE = 300.0

_O_FLAGS = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)


class LockSource:
    """
    The file each of this process's dot-locks is a hard link to: it holds
    the process id, and is made once per process (and again after a fork)
    rather than once per lock.  Linked into place as C{<user>.lock}, a lock
    is whole the moment it exists, so a crash never leaves an empty one; and
    taking a lock makes no file (three system calls fewer per lock).

    Its name, C{.simplemail-<pid>.lockpid}, is not a user id.  The server
    removes it when it stops; L{removeStale} removes those of dead
    processes.
    """

    prefix = ".simplemail-"
    suffix = ".lockpid"

    def __init__(self, dirfd):
        self._dirfd = dirfd
        self._mutex = threading.Lock()
        self._pid = None

    def _name(self, pid):
        return "{}{}{}".format(self.prefix, pid, self.suffix)

    def _make(self, pid):
        """
        Write the source under a temporary name and rename it into place: a
        new inode, so that the locks linked to an old one keep their text.
        """
        name = self._name(pid)
        temporary = name + ".tmp"
        fd = os.open(
            temporary,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_FLAGS,
            0o600,
            dir_fd=self._dirfd,
        )
        try:
            os.write(fd, b"%d\n" % (pid,))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=self._dirfd, dst_dir_fd=self._dirfd)
        self._pid = pid

    def link(self, lockName):
        """
        Make C{lockName} a link to the source, after setting the source's
        times to now (other mail tools call a lock stale by its age).

        @raise FileExistsError: if C{lockName} exists.
        """
        for attempt in range(2):
            pid = os.getpid()
            with self._mutex:
                if self._pid != pid or attempt:
                    self._make(pid)
            source = self._name(pid)
            try:
                os.utime(source, dir_fd=self._dirfd, follow_symlinks=False)
                os.link(
                    source,
                    lockName,
                    src_dir_fd=self._dirfd,
                    dst_dir_fd=self._dirfd,
                    follow_symlinks=False,
                )
                return
            except FileNotFoundError:
                # Someone removed our source: make it again, once.
                if attempt:
                    raise

    def remove(self):
        """
        Remove this process's source (when the server stops).
        """
        with self._mutex:
            if self._pid != os.getpid():
                return
            self._pid = None
            try:
                os.unlink(self._name(os.getpid()), dir_fd=self._dirfd)
            except FileNotFoundError:
                pass

    def removeStale(self):
        """
        Remove the sources (and half-made ones) of processes that are gone.

        @return: how many were removed.
        """
        removed = 0
        for name, _ in directoryEntries(self._dirfd):
            if not name.startswith(self.prefix):
                continue
            pid = name[len(self.prefix):]
            for ending in (self.suffix + ".tmp", self.suffix):
                if pid.endswith(ending):
                    pid = pid[: -len(ending)]
                    break
            else:
                continue
            if not pid.isdigit() or processIsAlive(int(pid)):
                continue
            try:
                os.unlink(name, dir_fd=self._dirfd)
                removed += 1
            except FileNotFoundError:
                pass
        return removed


def directoryEntries(dirfd):
    """
    The entries of the directory C{dirfd}: C{(name, whether a regular
    file)} each, read through a descriptor of its own.  (C{scandir} on a
    shared descriptor shares its offset with every other thread scanning
    the spool at once, and each then sees part of it; and a descriptor
    closed before an entry's type is asked for could not answer it.)
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _O_FLAGS, dir_fd=dirfd)
    try:
        with os.scandir(fd) as entries:
            return [(entry.name, entry.is_file(follow_symlinks=False)) for entry in entries]
    finally:
        os.close(fd)


def processIsAlive(pid):
    """
    Whether a process with this id exists (one we may not signal counts).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lockFile(fd):
    """
    Take an exclusive fcntl lock on the whole file without waiting.  An
    open-file-description lock where the platform has them, so that two
    connections in one process exclude each other; it conflicts with the
    classic POSIX locks of other mail tools.
    """
    if _F_OFD_SETLK is not None:
        flock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        fcntl.fcntl(fd, _F_OFD_SETLK, flock)
    else:  # pragma: no cover - not Linux
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class MailboxLocks:
    """
    Opening and locking one mailbox file as mail tools do, a mixin of
    L{twisted_mail.stores.spool.mboxfile.MboxFile}: it uses the file's
    C{userid}, C{_dirfd}, C{_lockName} and C{_lockSource}.
    """

    def _stillAtPath(self, st):
        try:
            now = os.stat(self.userid, dir_fd=self._dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)

    def _open(self):
        """
        Open the mailbox for reading and writing, without following a
        symbolic link.

        @return: the file descriptor, or L{None} when the file opened was
            replaced at once (try again).
        @raise MailboxUnavailable: for anything but a regular file with one
            link.
        """
        try:
            fd = os.open(self.userid, os.O_RDWR | _O_FLAGS, dir_fd=self._dirfd)
        except FileNotFoundError:
            raise errors.NoSuchUser(self.userid)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                log.error(
                    "refusing spool file {user}: {why}",
                    user=self.userid,
                    why="a symbolic link" if e.errno == errno.ELOOP else e.strerror,
                )
                raise errors.MailboxUnavailable(self.userid)
            raise
        st = os.fstat(fd)
        if st.st_nlink == 0 and stat.S_ISREG(st.st_mode):
            # Renamed over (another process expunged) since we opened it.
            os.close(fd)
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            log.error(
                "refusing spool file {user}: not a regular file with one link",
                user=self.userid,
            )
            raise errors.MailboxUnavailable(self.userid)
        return fd

    def _tryLocks(self, fd):
        """
        Try once to take both locks; True when both are held.
        """
        try:
            lockFile(fd)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return self._takeDotLock()

    def _takeDotLock(self):
        """
        Create C{<userid>.lock} holding our pid, atomically: it is a link to
        this process's L{LockSource}.  Breaks a stale one (we hold the
        fcntl lock, so nobody else is deciding the same).
        """
        name = self._lockName
        try:
            self._lockSource.link(name)
        except FileExistsError:
            if self._dotLockIsStale():
                log.warn("breaking stale lock {name}", name=name)
                try:
                    os.unlink(name, dir_fd=self._dirfd)
                except FileNotFoundError:
                    pass
            return False
        return True

    def _dotLockIsStale(self):
        """
        Decide, while holding the fcntl lock, whether the dot-lock belongs to
        nobody: its holder is dead, or it is too old.
        """
        try:
            fd = os.open(self._lockName, os.O_RDONLY | _O_FLAGS, dir_fd=self._dirfd)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            content = os.read(fd, 64)
        finally:
            os.close(fd)
        if time.time() - st.st_mtime > STALE_DOTLOCK_AGE:
            return True
        try:
            pid = int(content.split()[0])
        except (ValueError, IndexError):
            return False
        if pid == os.getpid():
            # A lock of ours left by a job that died: we hold the fcntl lock
            # now, so nobody else in this process does.
            return True
        return not processIsAlive(pid)

    def _dropDotLock(self):
        try:
            os.unlink(self._lockName, dir_fd=self._dirfd)
        except FileNotFoundError:
            pass
