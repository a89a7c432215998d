"""
The reactor's side of the spool's write-ahead journal
(L{twisted_mail.stores.spool.journal}, docs/journal.rst): deliveries to
every mailbox gathered into one batch, one journal sync per batch, the
mbox files written at once and synced at checkpoints; checkpoints on a
timer and by size; and recovery of the journals dead processes left.
"""

import os
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_mail import errors
from twisted_mail.mail.message import idHeaderLine, mboxRecordChunks
from twisted_mail.stores.spool.journal import (
    ABORT,
    DELIVERY,
    FLAGS,
    MOVE,
    Journal,
    Record,
    Staged,
    flagsText,
)
from twisted_mail.stores.spool.mboxfile import InodeChanged, MboxFile
from twisted_mail.stores.spool.replay import leftoverJournals, recoverJournals

log = Logger()

#: Seconds between checkpoints while anything is written (the mbox files
#: are synced, the journal emptied).
CHECKPOINT_INTERVAL = 1.0

#: Group commit: the longest a batch waits for more deliveries (seconds),
#: only when the last batch held at least COMMIT_SIBLINGS messages, and
#: no longer than until it holds as many as the last (up to BATCH_TARGET).
COMMIT_DELAY = 0.002
COMMIT_SIBLINGS = 4
BATCH_TARGET = 64

#: Every this many checkpoints, look for journals left by dead processes
#: sharing the spool.
ADOPT_EVERY = 5


class JournalledDeliveries:
    """
    Batches of deliveries to any number of mailboxes, each made durable by
    one sync of the store's journal.

    @ivar journal: the L{Journal}; every mailbox job of the store runs
        under its C{lock} (see L{SpoolStore._inMailboxThread}).
    """

    def __init__(self, store, newMessageId, pid=None, boot=None):
        self._store = store
        self._newMessageId = newMessageId
        self.journal = Journal(store._dirfd, pid=pid, boot=boot)
        self.journal.open(lambda name: self.recover())
        self._pendingLock = threading.Lock()
        self._pending = []
        self._flushQueued = False
        # Mailbox jobs waiting for the runner (runJobs), under _jobsLock.
        self._jobsLock = threading.Lock()
        self._jobs = []
        self._runnerQueued = False
        self.groups = 0
        self._checkpointCall = None
        self._ticks = 0
        self.batches = 0
        self.delivered = 0
        self._lastBatch = 0

    # -- recovery

    def recover(self):
        """
        Recover the journals of dead processes (synchronous: at start, and
        in the mailbox thread under the journal's lock).
        """
        store = self._store
        return recoverJournals(
            store._dirfd,
            lambda user: MboxFile(store._dirfd, user, store._serials,
                                  store._lockDeadline, store._lockSource),
            self.journal.boot,
            own=self.journal.name,
        )

    # -- every mailbox job: group commit

    def run(self, pool, f, *args):
        """
        Run the mailbox job C{f(*args)} in the mailbox thread, in the next
        group (L{runJobs}).

        @return: a L{Deferred} firing with its result once it is durable.
        """
        d = defer.Deferred()
        with self._jobsLock:
            self._jobs.append((f, args, d))
            queue, self._runnerQueued = not self._runnerQueued, True
        if queue:
            pool.callInThreadWithCallback(self._ran, self.runJobs)
        return d

    def _ran(self, success, result):
        # In the mailbox thread (runJobs answers every job, whatever fails).
        self._store._reactor.callFromThread(self._answerJobs, result)

    def runJobs(self):
        """
        In the mailbox thread: take every job queued (deliveries to any
        mailboxes, flag changes, moves, copies, deletes, reads), run them
        one by one under the journal's lock, each writing its frame
        unsynced and leaving its file writes for after the sync
        (L{Journal.stage}); then one sync for all of them, then their file
        writes (docs/journal.rst, "Group commit").  A job taken alone runs
        as outside a group (its commit syncs, then it writes).

        @return: the jobs and their results (values or L{Failure}s).
        """
        with self._jobsLock:
            jobs, self._jobs = self._jobs, []
            self._runnerQueued = False
        journal = self.journal
        results = []
        try:
            with journal.lock:
                # A job alone commits and writes under one hold of its
                # file's lock, as outside a group: the same one sync.
                journal.grouping = len(jobs) > 1
                try:
                    for f, args, _ in jobs:
                        try:
                            results.append(f(*args))
                        except BaseException:
                            results.append(Failure())
                finally:
                    journal.grouping = False
                    journal.flush()
        except BaseException:
            log.failure("mailbox jobs failed")
        self.groups += 1
        if len(results) < len(jobs):
            results.extend([_lost()] * (len(jobs) - len(results)))
        for i, result in enumerate(results):
            if isinstance(result, Staged):
                results[i] = result.result if result.done else _lost()
        return jobs, results

    def _answerJobs(self, done):
        jobs, results = done
        for (_, _, d), result in zip(jobs, results):
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    # -- deliveries

    def append(self, mailbox, separator, parts):
        """
        Queue a message for C{mailbox} in the next batch.

        @return: a L{Deferred} firing once it is durable.
        """
        d = defer.Deferred()
        with self._pendingLock:
            self._pending.append((mailbox, separator, parts, d))
            queue, self._flushQueued = not self._flushQueued, True
        if queue:
            self._store._inMailboxThread(self._takeAndStore).addCallback(self._answer)
        return d

    def _takeAndStore(self):
        self._gather()
        with self._pendingLock:
            batch, self._pending = self._pending, []
            self._flushQueued = False
        if not batch:
            return batch, []
        try:
            outcomes = self._store_(batch)
        except BaseException:
            return batch, Failure()
        if isinstance(outcomes, Staged):
            # Written and answered after the group's sync.
            return outcomes.then(lambda result: (batch, result))
        return batch, outcomes

    def _gather(self):
        """
        Group commit's wait (PostgreSQL's C{commit_delay}): when the last
        batch was large (many clients waiting on the store), give the
        deliveries on their way a moment to join this one.  A lone client
        never waits.
        """
        target = min(self._lastBatch, BATCH_TARGET)
        if target < COMMIT_SIBLINGS:
            return
        deadline = time.monotonic() + COMMIT_DELAY
        while len(self._pending) < target and time.monotonic() < deadline:
            time.sleep(COMMIT_DELAY / 5)

    def _store_(self, batch):
        """
        In the mailbox thread, under the journal's lock: build the records,
        journal them (synced with the rest of the group), write them to
        their mbox files.

        @return: for each message, its id (stored) or the exception
            refusing it; or a L{Staged} giving that after the sync.
        """
        outcomes = [None] * len(batch)
        limit = self._store.maxMessageSize
        byMailbox = {}
        for i, (mailbox, separator, parts, _) in enumerate(batch):
            msgid = self._newMessageId()
            idLine = idHeaderLine(msgid)
            record = mboxRecordChunks(separator, idLine, *parts)
            if sum(map(len, record)) - len(idLine) > limit:
                outcomes[i] = errors.MessageTooLarge(limit)
            else:
                byMailbox.setdefault(mailbox.mbox.userid, (mailbox, []))[1].append(
                    (i, msgid, record))
        todo = {}
        for user, (mailbox, items) in byMailbox.items():
            try:
                st = os.stat(user, dir_fd=self._store._dirfd, follow_symlinks=False)
            except FileNotFoundError:
                for i, _, _ in items:
                    outcomes[i] = errors.NoSuchUser(user)
                continue
            todo[user] = (mailbox, st.st_ino, items)
        self.batches += 1
        self._lastBatch = len(batch)
        if not todo:
            return outcomes
        return self.journal.stage(_deliveryRecords(todo),
                                  lambda: self._write(todo, outcomes))

    def _write(self, todo, outcomes):
        """
        Once their frame is synced: append the records to their mbox files,
        unsynced.  Those whose file an expunge replaced since are journalled
        again (synced at once: rare) for the new file.
        """
        journal = self.journal
        for attempt in range(3):
            if attempt:
                journal.commit(_deliveryRecords(todo))
            again = {}
            aborts = []
            for user, (mailbox, ino, items) in sorted(todo.items()):
                try:
                    written = mailbox.mbox.append([record for _, _, record in items],
                                                  durable=False, inode=ino)
                    for i, msgid, _ in items:
                        outcomes[i] = msgid
                except InodeChanged as e:
                    # An expunge replaced the file between our stat and
                    # the lock: journal them again for the new one.
                    again[user] = (mailbox, e.args[0], items)
                except BaseException:
                    f = Failure()
                    for i, msgid, _ in items:
                        outcomes[i] = f
                        aborts.append(Record(ABORT, user=user, msgid=msgid))
                else:
                    if mailbox.index is not None:
                        try:
                            mailbox.index.delivered(ino, written)
                        except Exception:
                            # Only the hand-over is lost: a search syncs.
                            log.failure("search index of {user}: hand-over failed",
                                        user=user)
            if aborts:
                journal.note(aborts)
            todo = again
            if not todo:
                break
        for user, (_, _, items) in todo.items():
            for i, _, _ in items:
                outcomes[i] = errors.TemporaryFailure("the mailbox is being rewritten")
        return outcomes

    def _answer(self, result):
        batch, outcomes = result
        if isinstance(outcomes, Failure):
            outcomes = [outcomes] * len(batch)
        stored = 0
        touched = set()
        for (mailbox, _, _, waiting), outcome in zip(batch, outcomes):
            if isinstance(outcome, str):
                stored += 1
                touched.add(mailbox)
                waiting.callback(outcome)
                continue
            f = outcome if isinstance(outcome, Failure) else Failure(outcome)
            if not f.check(errors.MailError):
                log.failure("mailbox {user}: delivery failed", f, user=mailbox.mbox.userid)
                f = Failure(errors.TemporaryFailure("the mailbox could not be written"))
            waiting.errback(f)
        self.delivered += stored
        for mailbox in touched:
            if mailbox.watch is not None:
                mailbox.watch.check()
            if mailbox.index is not None:
                mailbox.index.kickIndexer()
        if stored:
            self.scheduleCheckpoint()
            if self.journal.size > self.journal.sizeLimit:
                self.checkpointNow()

    # -- checkpoints

    def scheduleCheckpoint(self):
        if self._checkpointCall is None or not self._checkpointCall.active():
            self._checkpointCall = self._store._reactor.callLater(
                CHECKPOINT_INTERVAL, self.checkpointNow)

    def checkpointNow(self):
        """
        Sync the files written and empty the journal, in the mailbox
        thread; every few checkpoints, recover dead processes' journals.
        """
        if self._checkpointCall is not None and self._checkpointCall.active():
            self._checkpointCall.cancel()
        self._checkpointCall = None
        self._ticks += 1
        adopt = self._ticks % ADOPT_EVERY == 0

        def work():
            self.journal.checkpoint()
            if adopt and leftoverJournals(self._store._dirfd, self.journal.name):
                self.recover()

        def failed(f):
            # The journal keeps the records: replay has them.  Try again.
            log.failure("journal checkpoint failed", f)
            self.scheduleCheckpoint()

        return self._store._inMailboxThread(work).addErrback(failed)

    def close(self):
        """
        Last checkpoint and remove the journal (the mailbox threads are
        stopped).
        """
        if self._checkpointCall is not None and self._checkpointCall.active():
            self._checkpointCall.cancel()
        self._checkpointCall = None
        self.journal.close()


def journalledTransfer(source, target, records, flags, move):
    """
    Move or copy messages between two mbox files of a journalling store
    (in the mailbox thread, holding both mailboxes' jobs and the journal's
    lock): one journal frame and one sync (a C{M} record per message moved,
    a C{D} per copy, a C{F} for the flags each carries), then the target
    appended and the source's delete marks written, both unsynced.

    A move keeps the message's id.  Moving a message back to a file that
    still holds its deleted record (not yet expunged) first checkpoints:
    within one journal epoch a file then receives a given id at most once,
    which replay relies on (docs/journal.rst).

    @param records: the records to append (L{recordForCopy}'s pieces), in
        order; their id lines give the ids.
    @param flags: the flags of each.
    @return: the target's new entries, or in a group a L{Staged} giving
        them once the frame is synced and the files written.
    """
    wal = target.wal
    ids = [_idOf(record) for record in records]
    with target.locked() as handle:
        ino = handle.stat.st_ino
        movedBack = move and any(msgid in target._byId for msgid in ids)
    if movedBack:
        wal.checkpoint()
    journalled = []
    for msgid, record, given in zip(ids, records, flags):
        if move:
            journalled.append(Record(MOVE, user=source.walName, msgid=msgid,
                                     toUser=target.walName, inode=ino, newMsgid=msgid,
                                     data=record))
        else:
            journalled.append(Record(DELIVERY, user=target.walName, inode=ino, msgid=msgid,
                                     data=record))
        if given:
            journalled.append(Record(FLAGS, user=target.walName, msgid=msgid,
                                     flags=flagsText(given)))

    def apply():
        # Once the frame is synced (with the rest of the group's).
        try:
            written = target.append(records, flags, durable=False, inode=ino)
        except BaseException as e:
            # Nothing was appended: the moves must not be replayed (their
            # deletes would lose the messages).  Synced: rare.
            wal.commit([Record(ABORT, user=target.walName, msgid=msgid) for msgid in ids])
            if isinstance(e, InodeChanged):
                raise errors.TemporaryFailure("the mailbox is being rewritten")
            raise
        if move:
            source.markDeletedIds(ids, journalled=True)
        return written

    return wal.stage(journalled, apply)


def _lost():
    return Failure(errors.TemporaryFailure("the mailbox could not be written"))


def _deliveryRecords(todo):
    return [
        Record(DELIVERY, user=user, inode=ino, msgid=msgid, data=record)
        for user, (_, ino, items) in sorted(todo.items())
        for _, msgid, record in items
    ]


def _idOf(record):
    """
    The id of a record as L{recordForCopy} gives it (its second piece is
    the id line).
    """
    return record[1].split(b":", 1)[1].strip().decode("ascii")
