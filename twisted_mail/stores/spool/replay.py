"""
Recovery from the journals of dead processes (docs/journal.rst has the
rules).  Synchronous, for start-up and the mailbox thread.

A journal left behind is one whose owner's lock can be taken.  If it was
written in this boot, the page cache kept every write its process made:
each acknowledged record is in the files already, and what is not there
was never acknowledged (the process died first); the mailboxes it names
are repaired (torn appends cut, as a kill -9 always was) and synced.  If it
was written in an earlier boot (a power cut or a kernel crash), every whole
transaction is applied exactly once: deliveries by message id (a torn
record of ours at the end of a mailbox is cut first, and an mbox file
replaced since, by an expunge, is left alone), then deletes by message id.
Then the files are synced and the journal removed.
"""

import itertools
import os

from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.stores.spool.journal import (
    ABORT,
    DELETE,
    DELIVERY,
    FLAGS,
    MOVE,
    filePaths,
    flagsOfText,
    isJournalName,
    readFrames,
    syncSpoolFiles,
)
from twisted_mail.stores.spool.mboxfile import MboxFile
from twisted_mail.stores.spool import recovery
from twisted_mail.stores.spool.locks import _O_FLAGS, directoryEntries, lockFile

log = Logger()


def leftoverJournals(dirfd, own=None):
    """
    The names of the journals in the spool directory other than C{own}.
    """
    return sorted(name for name, _ in directoryEntries(dirfd)
                  if isJournalName(name) and name != own)


def recoverJournals(dirfd, openMailbox, boot, own=None):
    """
    Recover every journal left by a dead process, all together: the
    transactions of several journals may touch one mailbox (workers), and
    a torn record of one must be cut before another's are appended.

    @param openMailbox: makes a fresh L{MboxFile} for a user id, not
        journalling (recovery syncs as it goes).
    @return: a L{list} of C{(name, users, replayed)}: each journal
        recovered, the users it named, and whether it was replayed (an
        earlier boot's) or only synced.
    """
    taken = []
    try:
        for name in leftoverJournals(dirfd, own):
            found = _takeJournal(dirfd, name)
            if found is not None:
                taken.append((name,) + found)
        replay = []
        sameBoot = []
        repair = set()
        report = []
        for name, fd, transactions in taken:
            users = namedUsers(transactions)
            replayed = any(tx.boot != boot for tx in transactions)
            if replayed:
                replay.extend(transactions)
            else:
                repair |= users
                sameBoot.extend(transactions)
            report.append((name, sorted(users), replayed))
        if replay:
            applyTransactions(replay, openMailbox, dirfd)
        repairMailboxes(repair - namedUsers(replay), openMailbox, dirfd)
        if sameBoot:
            applyTransactions(sameBoot, openMailbox, dirfd, sameBoot=True)
        everyone = set()
        for _, users, _ in report:
            everyone.update(users)
        if taken:
            syncSpoolFiles(dirfd, everyone)
        for name, fd, _ in taken:
            os.unlink(name, dir_fd=dirfd)
        if taken:
            os.fsync(dirfd)
        for name, users, replayed in report:
            if users:
                log.info("journal {name}: {how} for {users}", name=name,
                         how="replayed" if replayed else "synced",
                         users=", ".join(users))
        return report
    finally:
        for _, fd, _ in taken:
            os.close(fd)


def namedUsers(transactions):
    users = set()
    for tx in transactions:
        for record in tx.records:
            users.add(record.user)
            if record.type == MOVE:
                users.add(record.toUser)
    return users


def _takeJournal(dirfd, name):
    """
    Open and lock a journal whose owner is dead.

    @return: C{(fd, transactions)}, or L{None} if it is not ours to take
        (its process is alive, or another process recovered it meanwhile).
    """
    try:
        fd = os.open(name, os.O_RDWR | _O_FLAGS, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    try:
        lockFile(fd)
        st = os.fstat(fd)
        if st.st_nlink == 0:
            raise OSError("gone")
        return fd, readFrames(os.pread(fd, st.st_size, 0))
    except OSError:
        os.close(fd)
        return None


def repairMailboxes(users, openMailbox, dirfd=None):
    """
    Same boot: bring each mailbox's torn append (if any) to the state a
    kill -9 always left, by a locked access (L{MboxFile.count}).
    """
    files = _Files(dirfd, openMailbox)
    try:
        for user in sorted(users):
            try:
                files(user).count()
            except errors.MailError as e:
                log.warn("journal: mailbox {user} not repaired: {why}", user=user,
                         why=str(e))
    finally:
        files.close()


def plan(transactions):
    """
    What replay does, from whole transactions in journal order.

    @return: C{(deliveries, steps)}: the deliveries by file (lists of
        C{(inode, msgid, data)}, aborted ones left out), and the moves,
        deletes and flag changes in journal order (L{Record}s; aborted
        moves left out).
    """
    cancelled = set()
    pending = {}
    order = []
    for tx in transactions:
        for record in tx.records:
            if record.type == ABORT:
                # An abort cancels the last delivery, copy or move of that
                # id to that file before it.
                at = pending.pop((record.user, record.msgid), None)
                if at is not None:
                    cancelled.add(at)
                continue
            if record.type == DELIVERY:
                pending[(record.user, record.msgid)] = len(order)
            elif record.type == MOVE:
                pending[(record.toUser, record.newMsgid)] = len(order)
            order.append(record)
    deliveries = {}
    steps = []
    for i, record in enumerate(order):
        if i in cancelled:
            continue
        if record.type == DELIVERY:
            deliveries.setdefault(record.user, []).append(
                (record.inode, record.msgid, record.data))
        else:
            steps.append(record)
    return deliveries, steps


def movedTo(steps):
    """
    The records moves appended, by target file: C{(inode, msgid, data)}.
    """
    found = {}
    for record in steps:
        if record.type == MOVE:
            found.setdefault(record.toUser, []).append(
                (record.inode, record.newMsgid, record.data))
    return found


class _Files:
    """
    The mbox files replay works on, each opened once: INBOX through
    C{openMailbox}, a folder file (C{user/file}) in its folder directory.
    """

    def __init__(self, dirfd, openMailbox):
        self._dirfd = dirfd
        self._openMailbox = openMailbox
        self._files = {}
        self._dirs = []

    def __call__(self, name):
        mbox = self._files.get(name)
        if mbox is None:
            folder = filePaths(name)[0]
            filename = name.partition("/")[2]
            if folder == ".":
                mbox = self._openMailbox(name)
            else:
                try:
                    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _O_FLAGS,
                                 dir_fd=self._dirfd)
                except OSError:
                    raise errors.NoSuchUser(name)
                self._dirs.append(fd)
                mbox = MboxFile(fd, filename, itertools.count(1))
            # Its UID record may be older than its mail until settled.
            mbox.copiesHeld = True
            self._files[name] = mbox
        return mbox

    def opened(self):
        return sorted(self._files.items())

    def close(self):
        for fd in self._dirs:
            os.close(fd)
        self._dirs = []


def applyTransactions(transactions, openMailbox, dirfd=None, sameBoot=False):
    """
    Apply a power cut's journals: deliveries first, each at most once (by
    message id); then moves, deletes and flag changes one by one in journal
    order (docs/journal.rst has the rules).  A delete always follows the
    delivery of what it deletes, so, taken across journals, this ends as
    the acknowledged history did.

    @param sameBoot: the page cache kept every write (a kill -9): only
        moves are finished (see L{_replayMove}).
    """
    deliveries, steps = plan(transactions)
    files = _Files(dirfd, openMailbox)
    try:
        if not sameBoot:
            moved = movedTo(steps)
            for user in sorted(set(deliveries) | set(moved)):
                try:
                    replayDeliveries(files(user), deliveries.get(user, []),
                                     moved.get(user, []))
                except errors.NoSuchUser:
                    log.warn("journal: mailbox {user} is gone; its deliveries are dropped",
                             user=user)
        for record in steps:
            try:
                if record.type == MOVE:
                    _replayMove(files(record.user), files(record.toUser), record, sameBoot)
                elif sameBoot:
                    continue
                elif record.type == DELETE:
                    files(record.user).markDeletedIds([record.msgid])
                elif record.type == FLAGS:
                    _replayFlags(files(record.user), record.msgid, flagsOfText(record.flags))
            except errors.NoSuchUser:
                continue
        if not sameBoot:
            ours = {}
            for tx in transactions:
                for record in tx.records:
                    if record.type == DELIVERY:
                        ours.setdefault(record.user, set()).add(record.msgid)
                    elif record.type == MOVE:
                        ours.setdefault(record.toUser, set()).add(record.newMsgid)
            for name, mbox in files.opened():
                mbox.settleUidRecord(ours.get(name, ()))
    finally:
        files.close()


def _replayMove(source, target, record, sameBoot):
    """
    A move, at most once: the record is appended to the target unless it
    holds the id live (or the target is another file now: an expunge
    replaced it, synced, after the move); then the source's record is
    deleted if the target holds the message (or was replaced).

    After a kill -9 (C{sameBoot}) nothing is appended: the source's delete
    is finished only if the target's append was made (a move the process
    died inside is either done or not, never doubled).
    """
    msgid = record.msgid
    with target.locked() as handle:
        replaced = recovery.inodeNumber(handle.stat.st_ino) != record.inode
        entry = target._byId.get(record.newMsgid)
        known = entry is not None
        live = known and not entry.deleted
    if sameBoot:
        if known or replaced:
            source.markDeletedIds([msgid])
        return
    if not replaced and not live:
        target.append([[record.data]])
        live = True
    if live or replaced:
        source.markDeletedIds([msgid])


def _replayFlags(mbox, msgid, flags):
    """
    Set a message's flags to what an C{F} record says.
    """
    with mbox.locked():
        entry = mbox._byId.get(msgid)
        if entry is None or entry.deleted:
            return
        current = entry.flags
    if current != flags:
        mbox.setFlags([msgid], flags - current, current - flags)


def replayDeliveries(mbox, records, moved=()):
    """
    Put each journalled delivery that is missing from C{mbox} into it,
    once: first cut a torn record of ours off the end of the file.

    @param records: C{(inode, msgid, data)} in journal order.
    @param moved: likewise, records moves appended to C{mbox}: a torn one
        is cut too (the move itself is replayed later, in order).
    """
    # Cut our torn record before anything else reads the tail: the store's
    # lines are given to records that lack them (a rewrite of the tail)
    # only once the file holds whole records.
    mbox.stampingHeld = True
    try:
        cut, ours = _cutTornTail(mbox, list(records) + list(moved))
    finally:
        mbox.stampingHeld = False
    if ours is None:
        return 0
    if cut is not None:
        mbox.count()  # index the file as it is now
    present = mbox.knownIds()
    missing = []
    delivered = {msgid for _, msgid, _ in records}
    for msgid, data in ours:
        if msgid not in delivered:
            continue
        if msgid not in present:
            present.add(msgid)
            missing.append([data])
    if missing:
        mbox.append(missing)
    return len(missing)


def _cutTornTail(mbox, records):
    """
    Cut a torn record of ours off the end of C{mbox}.

    @return: C{(where it was cut or None, the records for this file or
        None when none are)}.
    """
    with mbox.locked(journal=False) as handle:
        ino = recovery.inodeNumber(handle.stat.st_ino)
        # Records for another inode went to a file an expunge has replaced
        # since (synced, with them in it unless deleted): never again.
        ours = [(msgid, data) for inode, msgid, data in records if inode == ino]
        if not ours:
            return None, None
        cut = _tornTail(handle.fd, handle.stat.st_size,
                        mbox.entries[-1].start if mbox.entries else 0,
                        [data for _, data in ours])
        if cut is not None:
            log.warn("mailbox {user}: cutting off {n} bytes of a journalled delivery "
                     "torn by a crash", user=mbox.userid, n=handle.stat.st_size - cut)
            os.ftruncate(handle.fd, cut)
            os.fsync(handle.fd)
    return cut, ours


def _tornTail(fd, size, lastStart, datas):
    """
    Where a torn record of ours begins at the end of the file, if there is
    one: the file from there to its end is a proper prefix of one of
    C{datas}.  Looked for at the last record's start, and in the last five
    bytes (a tail too short to show C{From }).
    """
    candidates = {lastStart}
    tail = os.pread(fd, min(size, 6), max(0, size - 6))
    base = size - len(tail)
    for i in range(len(tail)):
        if i == 0 and base == 0 or i > 0 and tail[i - 1:i] == b"\n":
            candidates.add(base + i)
    for start in sorted(candidates):
        if start >= size:
            continue
        found = _unstamped(os.pread(fd, size - start, start))
        for data in datas:
            if len(found) < len(data) and data.startswith(found):
                return start
    return None


#: The lines the store writes after a record's id line (its UID and flags:
#: L{twisted_mail.stores.spool.flags.storeLines}), which a record appended
#: from the journal has in the file but not in the journal.
_STORE_LINES = (b"X-UID:", b"Status:", b"X-Status:", b"X-Keywords:")


def _unstamped(found):
    """
    The bytes at the end of a mailbox with the store's lines after the id
    line taken out, so that they compare with a journalled record: a record
    torn inside those lines is the journalled record's separator and id
    lines.
    """
    first = found.find(b"\n") + 1
    if not first or not found.startswith(b"X-Simplemail-Id: ", first):
        return found
    at = found.find(b"\n", first) + 1
    if not at:
        return found
    head, rest = found[:at], found[at:]
    while rest:
        end = rest.find(b"\n") + 1
        line = rest[:end] if end else rest
        if any(line.startswith(name) for name in _STORE_LINES):
            rest = rest[len(line):]
        elif not end and any(name.startswith(line) for name in _STORE_LINES):
            rest = b""  # torn inside the name of a store line
        else:
            break
    return head + rest
