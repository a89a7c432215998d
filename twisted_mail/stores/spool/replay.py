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

import os

from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.stores.spool.journal import (
    ABORT,
    DELETE,
    DELIVERY,
    FLAGS,
    MOVE,
    isJournalName,
    readFrames,
    syncSpoolFiles,
)
from twisted_mail.stores.spool import recovery
from twisted_mail.stores.spool.locks import _O_FLAGS, lockFile

log = Logger()


def leftoverJournals(dirfd, own=None):
    """
    The names of the journals in the spool directory other than C{own}.
    """
    return sorted(entry.name for entry in os.scandir(dirfd)
                  if isJournalName(entry.name) and entry.name != own)


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
        repair = set()
        report = []
        for name, fd, transactions in taken:
            users = namedUsers(transactions)
            replayed = any(tx.boot != boot for tx in transactions)
            if replayed:
                replay.extend(transactions)
            else:
                repair |= users
            report.append((name, sorted(users), replayed))
        if replay:
            applyTransactions(replay, openMailbox)
        repairMailboxes(repair - namedUsers(replay), openMailbox)
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


def repairMailboxes(users, openMailbox):
    """
    Same boot: bring each mailbox's torn append (if any) to the state a
    kill -9 always left, by a locked access (L{MboxFile.count}).
    """
    for user in sorted(users):
        try:
            openMailbox(user).count()
        except errors.MailError as e:
            log.warn("journal: mailbox {user} not repaired: {why}", user=user, why=str(e))


def plan(transactions):
    """
    What replay does, from whole transactions in journal order.

    @return: C{(deliveries, deletes, flags)}: deliveries by user (lists of
        C{(inode, msgid, data)}), deletes by user (lists of msgids), and the
        last flags per C{(user, msgid)}.
    """
    aborted = set()
    for tx in transactions:
        for record in tx.records:
            if record.type == ABORT:
                aborted.add((record.user, record.msgid))
    deliveries = {}
    deletes = {}
    flags = {}
    for tx in transactions:
        for record in tx.records:
            if record.type == DELIVERY and (record.user, record.msgid) not in aborted:
                deliveries.setdefault(record.user, []).append(
                    (record.inode, record.msgid, record.data))
            elif record.type == MOVE:
                deliveries.setdefault(record.toUser, []).append(
                    (record.inode, record.newMsgid, record.data))
                deletes.setdefault(record.user, []).append(record.msgid)
            elif record.type == DELETE:
                deletes.setdefault(record.user, []).append(record.msgid)
            elif record.type == FLAGS:
                flags[(record.user, record.msgid)] = record.flags
    return deliveries, deletes, flags


def applyTransactions(transactions, openMailbox):
    """
    Apply deliveries, then deletes, each at most once (by message id).
    Deliveries first: a delete always follows the delivery of what it
    deletes, so, taken across journals, this order ends as the acknowledged
    history did.  (Flag records are not written on this branch; when they
    are, they are applied after the deletes, last one per message winning.)
    """
    deliveries, deletes, _ = plan(transactions)
    for user in sorted(deliveries):
        try:
            replayDeliveries(openMailbox(user), deliveries[user])
        except errors.NoSuchUser:
            log.warn("journal: mailbox {user} is gone; its deliveries are dropped",
                     user=user)
    for user in sorted(deletes):
        try:
            openMailbox(user).markDeletedIds(deletes[user])
        except errors.NoSuchUser:
            pass


def replayDeliveries(mbox, records):
    """
    Put each journalled delivery that is missing from C{mbox} into it,
    once: first cut a torn record of ours off the end of the file.

    @param records: C{(inode, msgid, data)} in journal order.
    """
    # Cut our torn record before anything else reads the tail: the store's
    # lines are given to records that lack them (a rewrite of the tail)
    # only once the file holds whole records.
    mbox.stampingHeld = True
    try:
        cut, ours = _cutTornTail(mbox, records)
    finally:
        mbox.stampingHeld = False
    if ours is None:
        return 0
    if cut is not None:
        mbox.count()  # index the file as it is now
    present = mbox.knownIds()
    missing = []
    for msgid, data in ours:
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
