"""
The mailbox model of the spool store (MAILBOX.md): the store's folder calls
(L{SpoolFolders}, a mixin of L{SpoolStore}) and the view of one folder
(L{SpoolFolderView}; INBOX's session with its cursor extends it).  File
work runs in the mailbox threads, one job at a time per folder file.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_mail import errors
from twisted_mail.interfaces import IFolder
from twisted_mail.mail.message import separatorLine
from twisted_mail.mail.mime import Listing, summarize
from twisted_mail.mail.model import (
    INBOX,
    SEEN,
    FolderInfo,
    MailEvent,
    checkFlags,
    normalizeFolderName,
)
from twisted_mail.stores.base import (
    appendArguments,
    folderNameArgument,
    keywordsAfter,
    pageOf,
    userIdArgument,
)
from twisted_mail.stores.spool.entries import listEntries
from twisted_mail.stores.spool.events import UserWatch
from twisted_mail.stores.spool.indexing import _Everything
from twisted_mail.stores.spool.flags import recordForCopy, stripStoreFields
from twisted_mail.stores.spool.folderfile import newMessageId, refuseMissing
from twisted_mail.stores.spool.folders import Folders, newValidity
from twisted_mail.stores.spool.journal import Staged
from twisted_mail.stores.spool.journalled import journalledTransfer
from twisted_mail.stores.spool.locks import LockSource

log = Logger()


def _summaries(mailbox, page, folder):
    """
    Summaries of C{(id, key, record, uid, flags)} rows (records L{None}
    where cached), with their UIDs, flags and folder.
    """
    def withModel(summaries):
        return [s.replace(uid=row[3], flags=row[4], folder=folder)
                for s, row in zip(summaries, page)]

    return mailbox.summarized([row[:3] for row in page]).addCallback(withModel)


class SpoolFolders:
    """
    The folder calls of L{SpoolStore} (a mixin: it uses the store's
    C{_dirfd}, C{_mailbox}, C{_makeMailbox}, C{_inThread}, C{hasUser}).
    """

    def _userFolders(self, userid):
        folders = self._folderDirs.get(userid)
        if folders is None:
            folders = self._folderDirs[userid] = Folders(self._dirfd, userid)
        return folders

    def _folderFile(self, userid, filename):
        """
        The L{_Mailbox} of a folder file (in the user's folder directory).
        """
        key = (userid, filename)
        mailbox = self._mailboxes.get(key)
        if mailbox is None:
            folders = self._userFolders(userid)
            if folders.lockSource is None:
                folders.lockSource = LockSource(folders.dirfd)
            mailbox = self._mailboxes[key] = self._makeMailbox(
                folders.dirfd, filename, folders.lockSource, owner=userid)
            # A folder's UID record is made with the folder; should it be
            # lost, the directory's counter gives a new UIDVALIDITY.
            mailbox.mbox.newValidity = lambda: newValidity(folders.dirfd)
            mailbox.owner = userid
        return mailbox

    def _resolve(self, userid, name):
        """
        The L{_Mailbox} of folder C{name} (canonical) of C{userid}.
        """
        def found(userid):
            return self._finishMove(userid).addCallback(lambda _: opened(userid))

        def opened(userid):
            if name == INBOX:
                return self._mailbox(userid)
            folders = self._userFolders(userid)
            return self._inThread(folders.fileOf, name).addCallback(
                lambda filename: self._folderFile(userid, filename))

        return self.hasUser(userid).addCallback(found)

    def _finishMove(self, userid):
        """
        Once per user and process, before its folders are used: finish a
        move a crash interrupted (the moved messages are in the target: the
        source's copies are deleted).
        """
        folders = self._userFolders(userid)
        if folders.moveChecked:
            return defer.succeed(None)
        folders.moveChecked = True

        def pending(move):
            if move is None:
                return None
            source, target, ids = move
            sourceBox = self._mailbox(userid) if source is None else self._folderFile(
                userid, source)
            targetBox = self._mailbox(userid) if target is None else self._folderFile(
                userid, target)

            def job():
                with targetBox.mbox.locked():
                    present = [m for m in ids if m in targetBox.mbox._byId
                               and not targetBox.mbox._byId[m].deleted]
                deleted = None
                if present and targetBox is not sourceBox:
                    deleted = sourceBox.mbox.markDeletedIds(present)
                if isinstance(deleted, Staged):
                    # The intent goes once the deletes are durable.
                    return deleted.then(ended)
                folders.endMove()

            def ended(result):
                if not isinstance(result, Failure):
                    folders.endMove()
                return result

            return _runBoth(sourceBox, targetBox, job)

        return self._inThread(folders.pendingMove).addCallback(pending)

    def _folderCall(self, userid, f, *args):
        def call(userid):
            return self._inThread(f, self._userFolders(userid), *args)

        return self.hasUser(userid).addCallback(
            lambda userid: self._finishMove(userid).addCallback(lambda _: call(userid)))

    @userIdArgument
    def listFolders(self, userid):
        def infos(folders):
            folders.ensureSpecial()
            return folders.names()

        def opened(names):
            ds = [self._resolve(userid, name).addCallback(
                lambda mailbox: mailbox.run(_info, mailbox.mbox)) for name in names]
            return defer.gatherResults(ds, consumeErrors=True).addCallback(
                lambda found: [FolderInfo(name, total, unseen, validity, uidnext)
                               for name, (total, unseen, validity, uidnext)
                               in zip(names, found)])

        return self._folderCall(userid, infos).addCallback(opened).addErrback(
            _firstError)

    @userIdArgument
    @folderNameArgument
    def createFolder(self, userid, name):
        return self._folderCall(userid, lambda folders: folders.create(name)).addCallback(
            self._foldersChanged, userid)

    @userIdArgument
    def renameFolder(self, userid, name, newName):
        try:
            name, newName = normalizeFolderName(name), normalizeFolderName(newName)
        except errors.MailError as e:
            return defer.fail(e)
        return self._folderCall(
            userid, lambda folders: folders.rename(name, newName)).addCallback(
            self._foldersChanged, userid)

    @userIdArgument
    @folderNameArgument
    def deleteFolder(self, userid, name):
        def gone(filename):
            self._mailboxes.pop((userid, filename), None)
            return self._foldersChanged(None, userid)

        return self._folderCall(userid, lambda folders: folders.delete(name)).addCallback(
            gone)

    def _foldersChanged(self, result, userid):
        self._watchers.announce(userid, [MailEvent("folders")])
        watch = self._userWatches.get(userid)
        if watch is not None:
            watch.check()
        return result

    @userIdArgument
    @folderNameArgument
    def openFolder(self, userid, name):
        if name == INBOX:
            return self.openMailbox(userid)
        return self._resolve(userid, name).addCallback(
            lambda mailbox: mailbox.run(mailbox.mbox.count).addCallback(
                lambda count: SpoolFolderView(mailbox, userid, name)))

    @userIdArgument
    @folderNameArgument
    @appendArguments
    def appendMessage(self, userid, folder, message, flags, when):
        separator = separatorLine(b"MAILER-DAEMON", when)
        if len(message) > self.maxMessageSize:
            return defer.fail(errors.MessageTooLarge(self.maxMessageSize))

        def store(mailbox):
            def job():
                keywordsAfter(mailbox.mbox.keywords, flags)
                text = stripStoreFields(bytes(message).replace(b"\r\n", b"\n"))
                msgid = newMessageId()
                from twisted_mail.mail.message import idHeaderLine, mboxRecordChunks

                record = mboxRecordChunks(separator, idHeaderLine(msgid), text)
                if sum(len(c) for c in record) - len(record[1]) > self.maxMessageSize:
                    raise errors.MessageTooLarge(self.maxMessageSize)
                (entry,) = mailbox.mbox.append([record], [flags])
                return entry, text

            def done(result):
                entry, text = result
                self._touched(userid)
                return summarize(text, entry.msgid, int(when)).replace(
                    uid=entry.uid, flags=entry.flags, folder=folder)

            return mailbox.run(job).addCallback(done)

        return self._resolve(userid, folder).addCallback(store)

    def watch(self, userid, listener):
        return self._watchers.subscribe(userid, listener)

    def _startWatch(self, userid):
        self._userWatches[userid] = UserWatch(self, userid)
        self._ensurePoll()

    def _stopWatch(self, userid):
        watch = self._userWatches.pop(userid, None)
        if watch is not None:
            watch.stop()
        if not self._watched and not self._userWatches:
            self.stopWatching()

    def _journalWritten(self):
        """
        Files were written unsynced under the journal: a checkpoint is due.
        """
        if self._journalled is not None:
            self._journalled.scheduleCheckpoint()

    def _touched(self, userid):
        """
        Something changed through this process: tell its watchers now.
        """
        watch = self._userWatches.get(userid)
        if watch is not None:
            watch.check()


def _info(mbox):
    with mbox.locked():
        return mbox.live, mbox.unseen(), mbox.uidValidity, mbox.uidNext


def _firstError(f):
    f.trap(defer.FirstError)
    return f.value.subFailure


@implementer(IFolder)
class SpoolFolderView:
    """
    A view of one folder file.
    """

    def __init__(self, mailbox, userid, folder):
        self._mailbox = mailbox
        self._store = mailbox._store
        self.userid = userid
        self.folder = folder
        self._deletedHere = False
        self._lazy = False
        self._closed = False

    @property
    def uidValidity(self):
        return self._mailbox.mbox.uidValidity

    def _run(self, f, *args):
        def missing(failure):
            failure.trap(errors.NoSuchUser)
            if self.folder == INBOX:
                return failure
            raise refuseMissing(failure.value, self.folder)

        return self._mailbox.run(f, *args).addErrback(missing)

    def listMessages(self, start=0, limit=None, newestFirst=False):
        mailbox = self._mailbox

        def page(mbox, cached):
            with mbox.locked() as handle:
                live = [e for e in mbox.entries if not e.deleted]
                rows = []
                for entry in pageOf(live, start, limit, newestFirst):
                    record = None
                    if (entry.msgid, entry.key) not in cached:
                        record = mbox.read(handle, entry)
                    rows.append((entry.msgid, entry.key, record, entry.uid, entry.flags))
                return len(live), rows

        def fromIndex(result):
            # The search index keeps the summaries (after a restart too):
            # only messages it lacks are read and parsed.
            total, rows = result
            wanted = [row[0] for row in rows
                      if row[2] is None and (row[0], row[1]) not in mailbox.summaries]
            if not wanted:
                return result

            def fill(found):
                mailbox.summaries.update(found)
                if all(row[2] is not None or (row[0], row[1]) in mailbox.summaries
                       for row in rows):
                    return result
                return self._run(page, mailbox.mbox, mailbox.summaries)

            return mailbox.index.summaries(wanted).addCallback(fill)

        def summarized(result):
            total, rows = result
            if start == 0 and limit is None and len(mailbox.summaries) > 2 * total + 100:
                live = {(row[0], row[1]) for row in rows}
                mailbox.summaries = {k: v for k, v in mailbox.summaries.items() if k in live}
            return _summaries(mailbox, rows, self.folder).addCallback(
                lambda summaries: Listing(total, summaries))

        if mailbox.index is None:
            return self._run(page, mailbox.mbox, mailbox.summaries).addCallback(summarized)
        return self._run(page, mailbox.mbox, _Everything()).addCallback(
            fromIndex).addCallback(summarized)

    def listEntries(self):
        return listEntries(self)

    def fetchMessage(self, msgid):
        return self._run(self._mailbox.mbox.readById, msgid).addCallback(
            lambda found: found[1])

    def fetchMessages(self, msgids):
        return self._run(self._mailbox.mbox.readByIds, list(msgids))

    def _changedSummaries(self, entries):
        mailbox = self._mailbox

        def rows(mbox):
            with mbox.locked() as handle:
                return [(e.msgid, e.key,
                         None if (e.msgid, e.key) in mailbox.summaries else mbox.read(handle, e),
                         e.uid, e.flags) for e in entries]

        return self._run(rows, mailbox.mbox).addCallback(
            lambda found: _summaries(mailbox, found, self.folder))

    def summary(self, msgid):
        mailbox = self._mailbox

        def row(mbox, cached):
            # One look-up by id; the record is read only when not cached.
            with mbox.locked() as handle:
                e = mbox.liveEntry(msgid)
                record = None if (e.msgid, e.key) in cached else mbox.read(handle, e)
                return [(e.msgid, e.key, record, e.uid, e.flags)]

        def fromIndex(rows):
            # As listMessages: the search index may hold the summary.
            if rows[0][:2] in mailbox.summaries:
                return rows

            def fill(found):
                mailbox.summaries.update(found)
                if rows[0][:2] in mailbox.summaries:
                    return rows
                return self._run(row, mailbox.mbox, mailbox.summaries)

            return mailbox.index.summaries([msgid]).addCallback(fill)

        if mailbox.index is None:
            d = self._run(row, mailbox.mbox, mailbox.summaries)
        else:
            d = self._run(row, mailbox.mbox, _Everything()).addCallback(fromIndex)
        d.addCallback(lambda rows: _summaries(mailbox, rows, self.folder))
        return d.addCallback(lambda summaries: summaries[0])

    def flagsOf(self, msgid):
        def flags(mbox):
            with mbox.locked():
                return frozenset(mbox.liveEntry(msgid).flags)

        return self._run(flags, self._mailbox.mbox)

    def setFlags(self, msgids, add=(), remove=()):
        try:
            add, remove = checkFlags(add), checkFlags(remove)
        except errors.MailError as e:
            return defer.fail(e)
        mbox = self._mailbox.mbox

        def job():
            keywordsAfter(mbox.keywords, add)
            return mbox.setFlags(list(msgids), add, remove)

        def changed(entries):
            self._store._touched(self.userid)
            self._store._journalWritten()
            return self._changedSummaries(entries) if entries else []

        return self._run(job).addCallback(changed)

    def markSeen(self, msgids):
        mailbox = self._mailbox
        if mailbox.seen is None:
            mailbox.seen = PendingSeen(mailbox, self.userid)
        if mailbox.mbox.wal is None:
            self._lazy = True
        mailbox.seen.add(msgids)
        # Every job on the mailbox from now on applies them first: every
        # door sees them at once.
        return defer.succeed(None)

    def _target(self, folder):
        try:
            folder = normalizeFolderName(folder)
        except errors.MailError as e:
            return defer.fail(e)
        return self._store._resolve(self.userid, folder)

    def moveMessages(self, msgids, folder):
        return self._transfer(msgids, folder, move=True)

    def copyMessages(self, msgids, folder):
        return self._transfer(msgids, folder, move=False)

    def _transfer(self, msgids, folder, move):
        source = self._mailbox
        store = self._store
        folders = store._userFolders(self.userid)

        def job(target):
            found = source.mbox.records(list(msgids))
            if not found:
                return []
            if target is source:
                return [(entry.msgid, entry.uid) for entry, _ in found]
            records, flags = [], []
            for entry, record in found:
                records.append(recordForCopy(record, entry.msgid if move else newMessageId()))
                flags.append(entry.flags)
            if source.mbox.wal is not None:
                written = journalledTransfer(source.mbox, target.mbox, records, flags, move)
                if isinstance(written, Staged):
                    return written.then(lambda written: written if isinstance(
                        written, Failure) else [(e.msgid, e.uid) for e in written])
                return [(entry.msgid, entry.uid) for entry in written]
            if move:
                folders.beginMove(_fileName(source), _fileName(target),
                                  [entry.msgid for entry, _ in found])
            written = target.mbox.append(records, flags)
            if move:
                source.mbox.markDeletedIds([entry.msgid for entry, _ in found])
                folders.endMove()
            return [(entry.msgid, entry.uid) for entry in written]

        def run(target):
            return _runBoth(source, target, job, target)

        def done(pairs):
            if move and pairs:
                self._deletedHere = True
            store._touched(self.userid)
            store._journalWritten()
            return pairs

        return self._target(folder).addCallback(run).addCallback(done)

    def deleteMessages(self, msgids):
        def deleted(ids):
            if ids:
                self._deletedHere = True
                self._store._touched(self.userid)
                self._store._journalWritten()
            return ids

        return self._run(self._mailbox.mbox.markDeletedIds, list(msgids)).addCallback(
            deleted)

    def close(self):
        mbox = self._mailbox.mbox
        lazy, self._lazy = self._lazy, False
        # Expunge our deletes, and any left by a view that never ended
        # (a crash): marks are durable, so this is only housekeeping.
        pending = self._deletedHere or mbox.live != len(mbox.entries)
        # Reads' \Seen held in memory: written at the view's end too.
        unwritten = bool(self._mailbox.seen or mbox.seenToApply or mbox.seenUnwritten)
        if self._closed or not (pending or lazy or unwritten):
            self._closed = True
            return defer.succeed(None)
        self._closed = True

        def failed(f):
            # The marks are durable: the next view's end expunges them.
            log.failure("mailbox {user}: expunge failed", f, user=self.userid)

        def finish(mbox):
            if mbox.seenToApply or mbox.seenUnwritten:
                mbox.writeSeen()
            if pending:
                mbox.expunge()
            elif lazy:
                mbox.sync()

        return self._mailbox.run(finish, mbox).addCallback(lambda _: None).addErrback(
            failed)


def _fileName(mailbox):
    return None if getattr(mailbox, "owner", None) is None else mailbox.mbox.userid


def _runBoth(first, second, f, *args):
    """
    Run C{f(*args)} in the mailbox thread pool holding the job locks of two
    mailboxes (taken in a fixed order, so two moves can't wait on each
    other).
    """
    locks = sorted({id(m): m for m in (first, second)}.values(), key=id)
    held = []

    def acquireNext(_=None):
        if len(held) < len(locks):
            lock = locks[len(held)]._lock
            return lock.acquire().addCallback(lambda _: held.append(lock)).addCallback(
                acquireNext)
        return runApplyingSeen(locks, f, *args)

    def release(result):
        for lock in reversed(held):
            lock.release()
        return result

    return acquireNext().addBoth(release)


class PendingSeen:
    """
    The C{\\Seen} marks of reads (C{markSeen}) of one mailbox: handed to
    the mailbox's next job, which marks them in memory first thing, in its
    own lock (L{FolderFile._applySeen}), so every door of this process sees
    them at once and a read costs no job of its own; written into the file
    in batches, L{DELAY} seconds after the first (and at the view's end or
    the store's close), unsynced, with unsynced C{F} records in the journal
    (docs/journal.rst).  Other processes sharing the spool see them once
    written.

    @cvar DELAY: seconds from a read to the batch write.
    """

    DELAY = 0.5

    def __init__(self, mailbox, userid):
        self._mailbox = mailbox
        self._userid = userid
        self._ids = []
        self._call = None

    def __bool__(self):
        return bool(self._ids)

    def add(self, msgids):
        """
        Mark C{msgids} C{\\Seen}.
        """
        self._ids.extend(msgids)
        if self._call is None:
            store = self._mailbox._store
            self._call = store._reactor.callLater(self.DELAY, self._write)

    def _write(self):
        self._call = None

        def failed(f):
            log.failure("mailbox {user}: \\Seen not kept", f, user=self._userid)

        store = self._mailbox._store
        self._mailbox.run(self._mailbox.mbox.writeSeen).addCallback(
            lambda written: store._journalWritten() if written else None).addErrback(failed)

    def take(self):
        """
        The marks to hand to the next job.
        """
        ids, self._ids = self._ids, []
        return ids

    def applyNow(self):
        """
        Write the marks in the caller's thread (the store is closing, after
        the last mailbox job).
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        mbox = self._mailbox.mbox
        mbox.seenToApply = list(mbox.seenToApply) + self.take()
        try:
            mbox.writeSeen()
        except Exception:
            log.failure("mailbox {user}: \\Seen not kept", user=self._userid)

    def runWith(self, f, *args):
        """
        Run the mailbox job C{f(*args)} (the mailbox's job lock held),
        handing it the marks.
        """
        return runApplyingSeen([self._mailbox], f, *args)


def runApplyingSeen(mailboxes, f, *args):
    """
    Run a job in the mailbox thread (the job locks of C{mailboxes} held),
    handing it their pending C{\\Seen} marks (L{PendingSeen}): its first
    locked access of each file marks them in memory.
    """
    store = mailboxes[0]._store
    marks = []
    for mailbox in mailboxes:
        if mailbox.seen:
            marks.append((mailbox, mailbox.seen.take()))
    if not marks:
        return store._inMailboxThread(f, *args)
    applied = []

    def job():
        for mailbox, ids in marks:
            mbox = mailbox.mbox
            mbox.seenToApply = list(mbox.seenToApply) + ids
        try:
            return f(*args)
        finally:
            for mailbox, _ in marks:
                if mailbox.mbox.seenApplied:
                    applied.append(mailbox)
                    mailbox.mbox.seenApplied = ()

    def done(result):
        for mailbox in applied:
            store._touched(mailbox.seen._userid)
        return result

    return store._inMailboxThread(job).addBoth(done)


_SEEN = frozenset([SEEN])


def _nothing():
    pass
