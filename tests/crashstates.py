"""
A crash-state explorer for the spool, in the manner of ALICE (Pillai et
al., "All File Systems Are Not Created Equal", OSDI 2014).

1. L{Recorder} runs a scripted workload on a real L{SpoolStore} in this
   process and records every file-system operation the spool makes in its
   directory (open with O_CREAT or O_TRUNC, write, pwrite, pwritev,
   ftruncate, fsync, fdatasync, rename, unlink, link, mkdir), with the
   data, and markers where a delivery or delete was acknowledged.
2. L{crashStates} builds, for a crash after each operation, the on-disk
   states a power cut may leave on a journaling file system such as ext4
   with C{data=ordered}:

     - directory operations (create, rename, unlink, link, mkdir) persist
       in the order they were made: a prefix of them, at least up to the
       last fsync of the directory;
     - each file's data operations (writes, truncations) persist as a
       prefix of that file's own sequence, at least up to its last fsync
       or fdatasync, independently of other files (no order between
       files); the last one kept may be torn: a prefix of its bytes cut at
       a 512-byte sector boundary of the file, or half-way;
     - a file whose creation did not persist is not there; nothing synced
       is lost.

   Where the combinations of one crash point pass a bound, the extremes
   (nothing unsynced kept, everything kept, each file alone torn or
   dropped) and a seeded sample of the rest are taken.
3. L{check} materialises each distinct state in a temporary directory,
   runs the server's start-up recovery on it (as after a reboot: another
   boot id) and checks: every mailbox file parses as mbox and holds no torn
   message; every acknowledged delivery is there exactly once and every
   acknowledged delete done; nothing is doubled or resurrected.

C{tests/test_crashstates.py} runs a bounded exploration in CI;
C{benchmarks/crashstates.py} the full one.
"""

import hashlib
import itertools
import mailbox
import os
import random
import shutil
import stat
import tempfile

from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from tests.test_store import SynchronousThreads
from twisted_mail import errors
from twisted_mail.stores.spool import journal as journalModule
from twisted_mail.stores.spool import recovery
from twisted_mail.stores.spool.records import scanRecords
from twisted_mail.stores.spool.store import SpoolStore

DIR_OPS = ("creat", "rename", "unlink", "link", "mkdir")
SECTOR = 512


class ManualThreads(SynchronousThreads):
    """
    A reactor and thread pool stand-in whose "threaded" jobs wait until
    L{drain}: deliveries queued meanwhile go out as one batch.
    """

    def __init__(self):
        SynchronousThreads.__init__(self)
        self.jobs = []

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.jobs.append((onResult, f, args, kwargs))

    def drain(self):
        while self.jobs:
            onResult, f, args, kwargs = self.jobs.pop(0)
            SynchronousThreads.callInThreadWithCallback(self, onResult, f, *args, **kwargs)


class Recorder:
    """
    Records the spool's file-system operations in one directory, by
    wrapping the L{os} functions the spool uses while L{start}ed.

    @ivar ops: the operations, tuples whose first item is their kind.
    @ivar base: the directory when recording started: C{(names, contents)},
        names mapping to inode numbers, contents inode numbers to bytes.
    """

    _wrapped = ("open", "close", "write", "pwrite", "pwritev", "ftruncate", "fsync",
                "fdatasync", "rename", "unlink", "link", "mkdir")

    def __init__(self, path, dirfds=(), fds=()):
        self.path = os.path.abspath(path)
        self.ops = []
        # fd -> [inode, position], for files of the directories open now.
        self._fds = {fd: [os.fstat(fd).st_ino, 0] for fd in fds}
        # Directory fds -> their names relative to the spool ("" for it):
        # the spool and a user's folder directory (.amy.folders).
        if not isinstance(dirfds, dict):
            dirfds = dict.fromkeys(dirfds, "")
        self._dirfds = dict(dirfds)
        self._real = {}
        self.base = snapshot(self.path)

    def mark(self, kind, key):
        self.ops.append(("ack", kind, key))

    def start(self):
        for name in self._wrapped:
            self._real[name] = getattr(os, name)
            setattr(os, name, getattr(self, "_" + name))

    def stop(self):
        for name, f in self._real.items():
            setattr(os, name, f)
        self._real = {}

    def _ours(self, path, dir_fd):
        if dir_fd is not None:
            return dir_fd in self._dirfds
        path = os.fspath(path) if not isinstance(path, int) else None
        return path is not None and os.path.dirname(os.path.abspath(path)) == self.path

    def _name(self, path, dir_fd=None):
        """
        A file's name relative to the spool (C{.amy.folders/f...} for one
        in a folder directory).
        """
        if dir_fd is None:
            return os.path.relpath(os.path.abspath(os.fspath(path)), self.path)
        name = os.path.normpath(os.path.join(self._dirfds[dir_fd], os.fspath(path)))
        return "" if name == "." else name

    def _open(self, path, flags, mode=0o777, *, dir_fd=None):
        real = self._real["open"]
        if not isinstance(path, int) and os.path.abspath(os.fspath(path)) == self.path \
                and dir_fd is None:
            fd = real(path, flags, mode)
            self._dirfds[fd] = ""
            return fd
        if not self._ours(path, dir_fd):
            return real(path, flags, mode, dir_fd=dir_fd)
        name = self._name(path, dir_fd)
        try:
            os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
            existed = True
        except FileNotFoundError:
            existed = False
        fd = real(path, flags, mode, dir_fd=dir_fd)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self._dirfds[fd] = name
            return fd
        if flags & os.O_CREAT and not existed:
            self.ops.append(("creat", name, st.st_ino))
        elif flags & os.O_TRUNC and existed:
            self.ops.append(("trunc", st.st_ino, 0))
        self._fds[fd] = [st.st_ino, 0]
        return fd

    def _close(self, fd):
        self._fds.pop(fd, None)
        self._dirfds.pop(fd, None)
        return self._real["close"](fd)

    def _write(self, fd, data):
        n = self._real["write"](fd, data)
        if fd in self._fds:
            ino, pos = self._fds[fd]
            self.ops.append(("write", ino, pos, bytes(data[:n])))
            self._fds[fd][1] = pos + n
        return n

    def _pwrite(self, fd, data, offset):
        n = self._real["pwrite"](fd, data, offset)
        if fd in self._fds:
            self.ops.append(("write", self._fds[fd][0], offset, bytes(data[:n])))
        return n

    def _pwritev(self, fd, buffers, offset):
        buffers = list(buffers)
        n = self._real["pwritev"](fd, buffers, offset)
        if fd in self._fds:
            data = b"".join(bytes(b) for b in buffers)[:n]
            self.ops.append(("write", self._fds[fd][0], offset, data))
        return n

    def _ftruncate(self, fd, size):
        self._real["ftruncate"](fd, size)
        if fd in self._fds:
            self.ops.append(("trunc", self._fds[fd][0], size))

    def _sync(self, kind, fd):
        self._real[kind](fd)
        if fd in self._dirfds:
            self.ops.append(("dirsync", self._dirfds[fd]))
        elif fd in self._fds:
            self.ops.append(("sync", self._fds[fd][0]))

    def _fsync(self, fd):
        self._sync("fsync", fd)

    def _fdatasync(self, fd):
        self._sync("fdatasync", fd)

    def _rename(self, src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        self._real["rename"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if self._ours(dst, dst_dir_fd):
            self.ops.append(("rename", self._name(src, src_dir_fd),
                             self._name(dst, dst_dir_fd)))

    def _unlink(self, path, *, dir_fd=None):
        self._real["unlink"](path, dir_fd=dir_fd)
        if self._ours(path, dir_fd):
            self.ops.append(("unlink", self._name(path, dir_fd)))

    def _link(self, src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
        self._real["link"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                           follow_symlinks=follow_symlinks)
        if self._ours(dst, dst_dir_fd):
            self.ops.append(("link", self._name(src, src_dir_fd),
                             self._name(dst, dst_dir_fd)))

    def _mkdir(self, path, mode=0o777, *, dir_fd=None):
        self._real["mkdir"](path, mode, dir_fd=dir_fd)
        if self._ours(path, dir_fd):
            self.ops.append(("mkdir", self._name(path, dir_fd)))


def snapshot(path):
    """
    A spool's regular files, its own and its folder directories' (one
    level down): C{(names -> inode, inode -> bytes, directory names)},
    names relative to C{path}.
    """
    names, contents, dirs = {}, {}, set()

    def scan(directory, prefix):
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False) and not prefix:
                dirs.add(entry.name)
                scan(entry.path, entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                ino = entry.inode()
                names[prefix + entry.name] = ino
                if ino not in contents:
                    with open(entry.path, "rb") as f:
                        contents[ino] = f.read()

    scan(path, "")
    return names, contents, dirs


# -- the states a crash may leave


def _cuts(offset, data):
    """
    Where a torn write of C{data} at C{offset} may end: sector boundaries
    inside it (at most four of them: first, last, two between) and
    half-way.
    """
    end = offset + len(data)
    first = (offset // SECTOR + 1) * SECTOR
    bounds = list(range(first, end, SECTOR))
    if len(bounds) > 4:
        bounds = [bounds[0], bounds[len(bounds) // 3], bounds[2 * len(bounds) // 3],
                  bounds[-1]]
    cuts = {b - offset for b in bounds}
    if len(data) > 1:
        cuts.add(len(data) // 2)
    return sorted(c for c in cuts if 0 < c < len(data))


def _options(dataOps, low):
    """
    What may persist of one file's data operations: C{(kept, torn)} pairs,
    the first C{kept} whole and, if C{torn}, the next cut to that length.
    """
    found = [(k, None) for k in range(low, len(dataOps) + 1)]
    for k in range(low, len(dataOps)):
        op = dataOps[k]
        if op[0] == "write":
            found.extend((k, cut) for cut in _cuts(op[2], op[3]))
    return found


def _apply(content, op, torn=None):
    if op[0] == "trunc":
        return content[:op[2]] + b"\0" * max(0, op[2] - len(content))
    offset, data = op[2], op[3]
    if torn is not None:
        data = data[:torn]
    if len(content) < offset:
        content += b"\0" * (offset - len(content))
    return content[:offset] + data + content[offset + len(data):]


def crashStates(recorder, limit=64, seed=0):
    """
    Every (or, past C{limit} per crash point, a sample of the) on-disk
    states a power cut may leave, after each recorded operation.

    @return: an iterator of C{(crash point, acknowledged, state)}: the
        index of the last operation made, the acknowledgement markers
        before it, and the state as C{name -> bytes or None} (a directory).
    """
    ops = recorder.ops
    rng = random.Random(seed)
    for point in range(len(ops) + 1):
        if point < len(ops) and ops[point][0] == "ack":
            continue  # the same disk as the next operation's crash
        done = ops[:point]
        acked = [op for op in done if op[0] == "ack"]
        dirOps = [op for op in done if op[0] in DIR_OPS]
        dirLow = _dirLow(done)
        dataOps, low = {}, {}
        for i, op in enumerate(done):
            if op[0] in ("write", "trunc"):
                dataOps.setdefault(op[1], []).append(op)
            elif op[0] == "sync":
                low[op[1]] = len(dataOps.get(op[1], []))
        options = {ino: _options(seq, low.get(ino, 0)) for ino, seq in dataOps.items()}
        for dirKept in range(dirLow, len(dirOps) + 1):
            names, dirs = _directory(recorder.base[0], dirOps[:dirKept], recorder.base[2])
            live = sorted(ino for ino in set(names.values()) if ino in options)
            for choice in _choices([options[ino] for ino in live], limit, rng):
                yield point, acked, _materialise(
                    recorder.base, names, dirs, dict(zip(live, choice)), dataOps)


def _dirLow(done):
    """
    How many directory operations surely persisted: every one made in a
    directory before that directory's last sync (directory operations
    persist in order, as ext4's journal commits them).
    """
    low = 0
    count = 0
    last = {}
    for op in done:
        if op[0] in DIR_OPS:
            count += 1
            for name in op[1:3] if op[0] in ("rename", "link") else op[1:2]:
                last[os.path.dirname(name)] = count
        elif op[0] == "dirsync":
            low = max(low, last.get(op[1], 0))
    return low


def _choices(optionLists, limit, rng):
    total = 1
    for options in optionLists:
        total *= len(options)
    if total <= limit:
        yield from itertools.product(*optionLists)
        return
    lows = [options[0] for options in optionLists]
    highs = [max(options, key=lambda o: (o[0], o[1] is None)) for options in optionLists]
    picked = {tuple(lows), tuple(highs)}
    for i, options in enumerate(optionLists):
        for option in options:
            for base in (lows, highs):
                if len(picked) < limit:
                    picked.add(tuple(base[:i] + [option] + base[i + 1:]))
    while len(picked) < limit:
        picked.add(tuple(rng.choice(options) for options in optionLists))
    yield from sorted(picked, key=repr)


def _directory(baseNames, dirOps, baseDirs=()):
    names = dict(baseNames)
    dirs = set(baseDirs)
    for op in dirOps:
        if op[0] == "creat":
            names[op[1]] = op[2]
        elif op[0] == "rename":
            if op[1] in names:
                names[op[2]] = names.pop(op[1])
        elif op[0] == "unlink":
            names.pop(op[1], None)
        elif op[0] == "link":
            if op[1] in names:
                names[op[2]] = names[op[1]]
        elif op[0] == "mkdir":
            dirs.add(op[1])
    return names, dirs


def _materialise(base, names, dirs, choice, dataOps):
    contents = {}
    for ino in set(names.values()):
        content = base[1].get(ino, b"")
        if ino in choice:
            kept, torn = choice[ino]
            for op in dataOps[ino][:kept]:
                content = _apply(content, op)
            if torn is not None:
                content = _apply(content, dataOps[ino][kept], torn)
        contents[ino] = content
    return {"names": names, "dirs": dirs, "contents": contents}


def stateKey(state):
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(state["names"]):
        ino = state["names"][name]
        digest.update(b"%s\0%d\0" % (name.encode(), ino))
        digest.update(hashlib.blake2b(state["contents"][ino], digest_size=16).digest())
    for name in sorted(state["dirs"]):
        digest.update(b"d" + name.encode())
    return digest.digest()


def writeState(state, path):
    """
    Make C{state} in the (empty) directory C{path}; names of one inode are
    hard links.

    @return: a L{dict} from the inodes made to the inodes recorded.
    """
    made = {}
    for name in state["dirs"]:
        os.makedirs(os.path.join(path, name), exist_ok=True)
    for name in sorted(state["names"]):
        ino = state["names"][name]
        target = os.path.join(path, name)
        if ino in made:
            os.link(made[ino], target)
            continue
        with open(target, "wb") as f:
            f.write(state["contents"][ino])
        os.chmod(target, 0o600)
        made[ino] = target
    return {os.stat(target).st_ino: ino for ino, target in made.items()}


# -- checking a state


def visibleBodies(path, users, journal, inodes=None, boot=b"another boot...."):
    """
    Recover the spool at C{path} as the server does at start after a
    reboot, then read every folder of every user through the store.

    @return: C{{user: [(folder, body, flags), ...]}}.
    """
    real = journalModule.bootId, recovery.inodeNumber
    journalModule.bootId = lambda: boot
    if inodes:
        recovery.inodeNumber = lambda ino: inodes.get(ino, ino)
    try:
        # No search index: what is checked is the mbox files.
        store = SpoolStore(FilePath(path), reactor=SynchronousThreads(), journal=journal,
                           searchIndex=False)
        store.repairNow()
    except BaseException:
        journalModule.bootId, recovery.inodeNumber = real
        raise
    # (The inode seam stays while reading: a folder file is recovered at
    # its first look, not at start.)
    journalModule.bootId = real[0]
    try:
        found = {}
        for user in users:
            if not os.path.exists(os.path.join(path, user)):
                found[user] = []
                continue
            found[user] = shown = []
            names = ["INBOX"]
            if any(label != user for label, _ in _mboxFiles(path, [user])):
                # The user's folders whose files hold anything.
                folders = os.path.join(path, "." + user + ".folders")
                names = sorted(
                    name for name, (filename, _) in store._userFolders(user).scan().items()
                    if os.path.getsize(os.path.join(folders, filename))) + names
                # (A folder opened first finishes a move a crash cut short
                # without the journal, as any folder call does; INBOX's
                # session alone does not.)
            for name in names:
                view = _result(store.openFolder(user, name))
                for summary in _result(view.listMessages()).messages:
                    text = _result(view.fetchMessage(summary.id))
                    shown.append((name, text.split(b"\n\n", 1)[-1],
                                  frozenset(summary.flags)))
        return found
    finally:
        recovery.inodeNumber = real[1]
        store.close()


def _result(d):
    got = []
    d.addBoth(got.append)
    if isinstance(got[0], Failure):
        got[0].raiseException()
    return got[0]


def _mboxFiles(path, users):
    """
    The mbox files of C{users} in the spool at C{path}: INBOX and folder
    files, C{(name, path)}.
    """
    for user in users:
        yield user, os.path.join(path, user)
        folders = os.path.join(path, "." + user + ".folders")
        if os.path.isdir(folders):
            for name in sorted(os.listdir(folders)):
                if name.startswith("f") and "." not in name:
                    yield user + "/" + name, os.path.join(folders, name)


def problems(path, users, acked, everSent, journal, inodes=None, boot=b"another boot...."):
    """
    What is wrong with the spool at C{path} after recovery.

    @param acked: the acknowledgement markers: C{("ack", "deliver",
        (user, body))} and C{("ack", "delete", (user, body))}, and
        C{("ack", "deleting", (user, body))} when a delete was asked for;
        C{("ack", "moving"/"move", (user, body, folder))} for a move asked
        for / acknowledged; C{("ack", "flagging"/"flag", (user, body,
        flags))} likewise for a flag change (the flags it gave).
    @param everSent: every C{(user, body)} the workload sent.
    @return: a L{list} of problems (empty: the state is fine).
    """
    found = []
    for label, name in _mboxFiles(path, users):
        if not os.path.exists(name):
            continue
        with open(name, "rb") as f:
            data = f.read()
        fd = os.open(name, os.O_RDONLY)
        try:
            records = scanRecords(fd, 0, len(data))
        finally:
            os.close(fd)
        box = mailbox.mbox(name, create=False)
        try:
            count = len(box.keys())
        finally:
            box.close()
        if count != len(records) or (data and not data.startswith(b"From ")):
            found.append("%s does not parse as mbox (%d vs %d)" % (label, count, len(records)))
    try:
        shown = visibleBodies(path, users, journal, inodes, boot)
    except Exception as e:
        import traceback
        return found + ["recovery or reading failed: %r %s" % (e, traceback.format_exc())]
    delivered = {key for _, kind, key in acked if kind == "deliver"}
    deleted = {key for _, kind, key in acked if kind == "delete"}
    deleting = {key for _, kind, key in acked if kind == "deleting"}
    # Where each message must be, and with which flags: the last change
    # acknowledged, unless another was under way since (then either).
    places, flags = {}, {}
    for _, kind, key in acked:
        if kind in ("moving", "move"):
            user, body, folder = key
            was = places.get((user, body), ("INBOX",))
            places[(user, body)] = (folder,) if kind == "move" else was + (folder,)
        elif kind in ("flagging", "flag"):
            user, body, given = key
            flags[(user, body)] = given if kind == "flag" else None
    for user, messages in shown.items():
        bodies = [body for _, body, _ in messages]
        for folder, body, given in messages:
            if bodies.count(body) > 1:
                found.append("%s: %r doubled" % (user, body))
            if (user, body) in deleted:
                found.append("%s: deleted %r resurrected" % (user, body))
            if (user, body) not in everSent:
                found.append("%s: %r is not a message sent (torn?)" % (user, body[:40]))
            if folder not in places.get((user, body), ("INBOX",)):
                found.append("%s: %r in %s, not %s" % (
                    user, body, folder, " or ".join(places.get((user, body), ("INBOX",)))))
            want = flags.get((user, body))
            if want is not None and given != want:
                found.append("%s: %r has flags %s, not the acknowledged %s" % (
                    user, body, sorted(given), sorted(want)))
    for user, body in sorted(delivered - deleting):
        if body not in [b for _, b, _ in shown.get(user, [])]:
            found.append("%s: acknowledged %r lost" % (user, body))
    return found


def explore(recorder, users, everSent, journal, limit=64, seed=0, maxStates=None,
            report=None, inodes=None, acked=(), boot=b"another boot....", check=None):
    """
    Check every distinct crash state of C{recorder}'s run with C{check}
    (L{problems} unless given: same arguments, returns a list of problems).

    @return: C{(states generated, distinct states checked, failures)},
        failures a L{list} of C{(crash point, problems)}.
    """
    seen = set()
    failures = []
    generated = 0
    # On a memory file system where there is one: recovery syncs a lot.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    scratch = tempfile.mkdtemp(prefix="crashstates-", dir=shm)
    try:
        for point, markers, state in crashStates(recorder, limit, seed):
            markers = list(acked) + markers
            generated += 1
            key = (stateKey(state), len(markers))
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(scratch, "s%d" % (len(seen),))
            os.mkdir(path)
            made = writeState(state, path)
            if inodes:
                made = {real: inodes.get(ino, ino) for real, ino in made.items()}
            wrong = (check or problems)(path, users, markers, everSent, journal, made, boot)
            if wrong:
                failures.append((point, wrong))
            shutil.rmtree(path)
            if report is not None and len(seen) % 500 == 0:
                report(generated, len(seen), len(failures))
            if maxStates is not None and len(seen) >= maxStates:
                break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return generated, len(seen), failures


# -- scripted workloads


class Workload:
    """
    A scripted run on a fresh spool: mailboxes made before recording,
    then deliveries in batches, deletes, a checkpoint, an expunge.
    """

    def __init__(self, path, users=("amy", "bob", "cyd"), journal=True, folders=False):
        self.path = path
        self.users = list(users)
        self.journal = journal
        self.sent = set()
        self._n = 0
        self.reactor = ManualThreads()
        self.store = SpoolStore(FilePath(path), reactor=self.reactor, journal=journal)
        for user in self.users:
            self.store.addUser(user)
        self.reactor.drain()
        if folders:
            for user in self.users:
                self.store.listFolders(user)  # makes the special folders
            self.reactor.drain()
        self.recorder = None
        self.sessions = {}
        self.views = {}
        # Acknowledgements before recording (synced by a checkpoint since).
        self._early = []

    def _mark(self, kind, key):
        if self.recorder is None:
            self._early.append(("ack", kind, key))
        else:
            self.recorder.mark(kind, key)

    def record(self):
        journalled = self.store._journalled
        # Files kept open between jobs are opened again, where the recorder
        # sees it.
        for mailbox in self.store._mailboxes.values():
            mailbox.mbox.closeSideFiles()
        dirfds = {self.store._dirfd: ""}
        for user, folders in self.store._folderDirs.items():
            dirfds[folders.dirfd] = "." + user + ".folders"
        self.recorder = Recorder(self.path, dirfds,
                                 [journalled.journal._fd] if journalled else [])
        self.recorder.ops.extend(self._early)
        self.recorder.start()

    def stop(self):
        if self.recorder is not None:
            self.recorder.stop()

    def close(self):
        self.stop()
        self.store.close()

    def deliver(self, *users):
        """
        Deliver one message to each of C{users}, all in one batch.
        """
        self.group(*[("deliver", user) for user in users])

    def _session(self, user):
        session = self.sessions.get(user)
        if session is None:
            got = []
            self.store.openMailbox(user).addBoth(got.append)
            self.reactor.drain()
            session = self.sessions[user] = got[0]
        return session

    def delete(self, user, nth=0):
        """
        Delete the C{nth} message of C{user}'s mailbox (by stable id).
        """
        session = self._session(user)
        listing = []
        session.listMessages().addBoth(listing.append)
        self.reactor.drain()
        summary = listing[0].messages[nth]
        done = []
        body = []
        session.fetchMessage(summary.id).addBoth(body.append)
        self.reactor.drain()
        key = (user, body[0].split(b"\n\n", 1)[1])
        # From here on a crash may leave the message deleted or not.
        self.recorder.mark("deleting", key)
        session.deleteMessages([summary.id]).addBoth(done.append)
        self.reactor.drain()
        if done and not isinstance(done[0], Failure):
            self.recorder.mark("delete", key)

    def _view(self, user, folder):
        if folder == "INBOX":
            return self._session(user)
        view = self.views.get((user, folder))
        if view is None:
            got = []
            self.store.openFolder(user, folder).addBoth(got.append)
            self.reactor.drain()
            view = self.views[(user, folder)] = got[0]
        return view

    def _pick(self, user, folder, nth):
        view = self._view(user, folder)
        listing, body = [], []
        view.listMessages().addBoth(listing.append)
        self.reactor.drain()
        summary = listing[0].messages[nth]
        view.fetchMessage(summary.id).addBoth(body.append)
        self.reactor.drain()
        return view, summary, body[0].split(b"\n\n", 1)[1]

    def move(self, user, nth, target, folder="INBOX"):
        """
        Move the C{nth} message of C{user}'s C{folder} to C{target}.
        """
        view, summary, body = self._pick(user, folder, nth)
        self.recorder.mark("moving", (user, body, target))
        done = []
        view.moveMessages([summary.id], target).addBoth(done.append)
        self.reactor.drain()
        if done and not isinstance(done[0], Failure):
            self.recorder.mark("move", (user, body, target))

    def flag(self, user, nth, add=(), remove=(), folder="INBOX"):
        """
        Change the flags of the C{nth} message of C{user}'s C{folder}.
        """
        view, summary, body = self._pick(user, folder, nth)
        self.recorder.mark("flagging", (user, body, None))
        done = []
        view.setFlags([summary.id], add=add, remove=remove).addBoth(done.append)
        self.reactor.drain()
        if done and not isinstance(done[0], Failure):
            given = frozenset((summary.flags | set(add)) - set(remove))
            self.recorder.mark("flag", (user, body, given))

    def group(self, *steps):
        """
        Several operations on different mailboxes at once, answered
        together (one group of the store's jobs: one journal sync).  Each
        step is C{("deliver", user)}, C{("flag", user, nth, add)},
        C{("move", user, nth, folder)} or C{("delete", user, nth)}, on
        C{user}'s INBOX.
        """
        picked = [None if step[0] == "deliver" else self._pick(step[1], "INBOX", step[2])
                  for step in steps]
        issued = []
        for step, pick in zip(steps, picked):
            kind, user = step[:2]
            if kind == "deliver":
                self._n += 1
                body = b"message %d to %s\n" % (self._n, user.encode())
                self.sent.add((user, body))
                issued.append((self.store.deliver("sender", user, body), kind, (user, body)))
                continue
            view, summary, body = pick
            if kind == "flag":
                self.recorder.mark("flagging", (user, body, None))
                d = view.setFlags([summary.id], add=step[3])
                key = (user, body, frozenset(summary.flags | set(step[3])))
            elif kind == "move":
                self.recorder.mark("moving", (user, body, step[3]))
                d = view.moveMessages([summary.id], step[3])
                key = (user, body, step[3])
            else:
                self.recorder.mark("deleting", (user, body))
                d = view.deleteMessages([summary.id])
                key = (user, body)
            issued.append((d, kind, key))
        self.reactor.drain()
        for d, kind, key in issued:
            result = []
            d.addBoth(result.append)
            if result and not isinstance(result[0], Failure):
                self._mark(kind, key)

    def endSession(self, user):
        """
        End C{user}'s session: its deletes are expunged.
        """
        session = self.sessions.pop(user)
        session.close()
        self.reactor.drain()

    def checkpoint(self):
        self.reactor.advance(2)
        self.reactor.drain()


def standardWorkload(path, journal=True):
    """
    Deliveries to several mailboxes in batches, deletes, a checkpoint, more
    deliveries and a delete, an expunge: recorded.

    @return: the L{Workload}, stopped.
    """
    w = Workload(path, journal=journal)
    w.record()
    try:
        w.deliver("amy", "bob", "amy")
        w.deliver("cyd")
        w.delete("amy", 0)
        w.checkpoint()
        w.deliver("bob", "cyd")
        w.delete("bob", 0)
        w.deliver("amy")
        w.endSession("bob")
        w.deliver("bob")
    finally:
        w.stop()
    return w


def folderWorkload(path, journal=True):
    """
    Flag changes and moves between INBOX and a folder and back, among a
    delivery and a checkpoint: recorded.

    @return: the L{Workload}, stopped.
    """
    w = Workload(path, users=("amy",), journal=journal, folders=True)
    w.deliver("amy", "amy")
    w.checkpoint()
    w.record()
    try:
        w.flag("amy", 0, add=["\\Flagged"])
        w.move("amy", 0, "Archive")
        w.deliver("amy")
        w.flag("amy", 0, add=["\\Seen", "$Label1"])
        w.flag("amy", 0, remove=["\\Flagged"], folder="Archive")
        w.move("amy", 0, "INBOX", folder="Archive")
        w.checkpoint()
        w.move("amy", 1, "Archive")
    finally:
        w.stop()
    return w


def mixedWorkload(path, journal=True):
    """
    Deliveries, a flag change, a move and a delete, each on another
    mailbox, all in one group (with the journal: one sync), twice, with a
    checkpoint between: recorded.

    @return: the L{Workload}, stopped.
    """
    w = Workload(path, journal=journal, folders=True)
    w.deliver("amy", "bob", "cyd", "bob", "cyd")
    w.checkpoint()
    w.record()
    try:
        w.group(("deliver", "amy"), ("flag", "amy", 0, ["\\Flagged"]),
                ("move", "bob", 0, "Archive"), ("delete", "cyd", 0), ("deliver", "bob"))
        w.checkpoint()
        w.group(("move", "amy", 1, "Archive"), ("flag", "bob", 0, ["\\Seen"]),
                ("delete", "cyd", 0), ("deliver", "cyd"), ("deliver", "amy"))
    finally:
        w.stop()
    return w


def recoveryWorkload(workload, path, limit=64):
    """
    Recovery itself, recorded: the state of C{workload} that loses the
    most (a crash after its last operation, nothing unsynced kept) is made
    in C{path} and recovered as after a power cut.

    @return: C{(recorder, acknowledged markers, inode map)} for L{explore}
        (with another boot id, as after a second power cut).
    """
    point, acked, state = None, None, None
    for point, acked, state in crashStates(workload.recorder, limit):
        if point == len(workload.recorder.ops):
            break  # the first state of the last point: the least kept
    os.mkdir(path)
    inodes = writeState(state, path)
    recorder = Recorder(path)
    real = journalModule.bootId, recovery.inodeNumber
    journalModule.bootId = lambda: b"recovering boot."
    recovery.inodeNumber = lambda ino: inodes.get(ino, ino)
    recorder.start()
    try:
        store = SpoolStore(FilePath(path), reactor=SynchronousThreads(), journal=workload.journal)
        store.repairNow()
    finally:
        recorder.stop()
        journalModule.bootId, recovery.inodeNumber = real
    store.close()
    return recorder, acked, inodes


# -- UIDs never given twice, even when another program removes the newest


class UidWorkload(Workload):
    """
    A L{Workload} that also marks, after each acknowledged delivery, the
    highest UID its mailbox has given and the mailbox's C{UIDVALIDITY}:
    C{("ack", "uid", (user, uidvalidity, uid))}.
    """

    def deliver(self, *users):
        Workload.deliver(self, *users)
        for user in sorted(set(users)):
            mbox = self.store._mailboxes[user].mbox
            self._mark("uid", (user, mbox.uidValidity, mbox.uidNext - 1))


def uidWorkload(path, journal=True):
    """
    Deliveries to one mailbox in three batches, with checkpoints between
    (the journal trimmed: the UIDs given are in the files and the UID
    record alone): recorded.

    @return: the L{UidWorkload}, stopped.
    """
    w = UidWorkload(path, users=("amy",), journal=journal)
    w.record()
    try:
        w.deliver("amy", "amy")
        w.checkpoint()
        w.deliver("amy")
        w.checkpoint()
        w.deliver("amy")
    finally:
        w.stop()
    return w


def uidProblems(path, users, acked, journal, inodes=None, boot=b"another boot...."):
    """
    What UIDs the spool at C{path} would give again: another program (mutt
    deleting mail) empties each mailbox file after the power cut, before
    the server's first look; then the next UID of each mailbox must be
    above every UID acknowledged under the same C{UIDVALIDITY}.

    @param acked: the markers, with C{("ack", "uid", (user, validity,
        uid))} (L{UidWorkload}).
    @return: a L{list} of problems (empty: the state is fine).
    """
    given = {}
    for _, kind, key in acked:
        if kind == "uid":
            user, validity, uid = key
            given[(user, validity)] = max(uid, given.get((user, validity), 0))
    for user in users:
        name = os.path.join(path, user)
        if os.path.exists(name):
            os.truncate(name, 0)
    real = journalModule.bootId, recovery.inodeNumber
    journalModule.bootId = lambda: boot
    if inodes:
        recovery.inodeNumber = lambda ino: inodes.get(ino, ino)
    store = None
    try:
        store = SpoolStore(FilePath(path), reactor=SynchronousThreads(), journal=journal,
                           searchIndex=False)
        store.repairNow()
        found = []
        for user in users:
            for info in _result(store.listFolders(user)):
                if info.name != "INBOX":
                    continue
                top = given.get((user, info.uidValidity), 0)
                if info.uidNext <= top:
                    found.append("%s: UIDNEXT %d under UIDVALIDITY %d, but UID %d was given"
                                 % (user, info.uidNext, info.uidValidity, top))
        return found
    except Exception as e:
        return ["recovery or reading failed: %r" % (e,)]
    finally:
        journalModule.bootId, recovery.inodeNumber = real
        if store is not None:
            store.close()


def exploreUids(recorder, users, journal, limit=64, seed=0, maxStates=None):
    """
    L{explore} with L{uidProblems} for its check.

    @return: C{(states generated, distinct states checked, failures)}.
    """
    def check(path, users, markers, everSent, journal, inodes, boot):
        return uidProblems(path, users, markers, journal, inodes, boot)

    return explore(recorder, users, set(), journal, limit, seed, maxStates, check=check)
