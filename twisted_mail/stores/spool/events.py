"""
Events of the spool store (L{IMailStore.watch}): new messages, flag
changes, expunges and folder changes of one user, through this process or
any other sharing the spool.

A L{NewMailWatch} announces a mailbox's new messages to the store's
subscribers (L{IMailStore.subscribe}).

A L{UserWatch} keeps, per folder, what it last saw (each message's UID,
flags and content key) and compares: after each change made through this
process at once, and when the store's poll (once a second) sees a folder's
file or UID record change, or the folder list change.
"""

import os

from twisted.internet import defer
from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.mail.model import INBOX, MailEvent
from twisted_mail.stores.spool.locks import _O_FLAGS

log = Logger()


def _stamp(dirfd, name):
    """
    What the poll compares for one folder file: its inode, size and
    modification time, and its UID record's first line (whose generation
    counts flag changes made in place, which may keep the time).
    """
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError:
        return None
    try:
        fd = os.open("." + name + ".uids", os.O_RDONLY | _O_FLAGS, dir_fd=dirfd)
        try:
            record = os.pread(fd, 64, 0)
        finally:
            os.close(fd)
    except OSError:
        record = b""
    return (st.st_ino, st.st_size, st.st_mtime_ns, record)


class _OneCheckAtATime:
    """
    A check that runs one at a time: asked for while one runs, it runs once
    more when that one ends, however many times it was asked for.  A
    subclass gives L{_once} (a L{Deferred}), L{_wanted} and its log text.
    """

    _running = False
    _again = False
    _failureText = ""

    def _once(self):
        raise NotImplementedError

    def _wanted(self):
        return True

    def _userid(self):
        raise NotImplementedError

    def check(self):
        if self._running:
            self._again = True
            return
        self._running = True
        d = self._once()

        def failed(f):
            if not f.check(errors.MailError):
                log.failure(self._failureText, f, user=self._userid())

        def finished(_):
            self._running = False
            if self._again and self._wanted():
                self._again = False
                self.check()

        d.addErrback(failed).addBoth(finished)


class UserWatch(_OneCheckAtATime):
    """
    The watch of one user's mail.
    """

    _failureText = "mailbox {user}: change check failed"

    def __init__(self, store, userid):
        self.store = store
        self.userid = userid
        # folder name -> {msgid: (uid, flags, key)}; folder name -> stamp
        self._seen = {}
        self._stamps = {}
        self._folders = None
        self._stopped = False
        self.check()

    def stop(self):
        self._stopped = True

    def check(self):
        """
        Compare every folder with what was last seen, and announce the
        differences.
        """
        if not self._stopped:
            _OneCheckAtATime.check(self)

    def _once(self):
        return self._check()

    def _wanted(self):
        return not self._stopped

    def _userid(self):
        return self.userid

    def poll(self):
        """
        In a worker thread: whether anything changed since the last poll.
        """
        store = self.store
        folders = store._userFolders(self.userid)
        stamps = {INBOX: _stamp(store._dirfd, self.userid)}
        try:
            found = folders.scan()
        except OSError:
            found = {}
        for name, (filename, _) in found.items():
            stamps[name] = _stamp(folders.dirfd, filename)
        names = {name: value for name, value in found.items()}
        return stamps, names

    def polled(self, result):
        stamps, names = result
        if stamps != self._stamps or names != self._folders:
            self.check()

    @defer.inlineCallbacks
    def _check(self):
        store = self.store
        stamps, names = yield store._inThread(self.poll)
        self._stamps = stamps
        first = self._folders is None
        if not first and names != self._folders:
            store._watchers.announce(self.userid, [MailEvent("folders")])
        self._folders = names
        for name in list(self._seen):
            if name != INBOX and name not in names:
                del self._seen[name]
        for name in [INBOX] + sorted(names):
            try:
                mailbox = yield store._resolve(self.userid, name)
            except errors.MailError:
                continue
            previous = self._seen.get(name)
            if previous is None and not first:
                previous = {}  # a folder made since: all its mail is new
            try:
                now, records = yield mailbox.run(mailbox.mbox.snapshot, previous,
                                                 mailbox.summaries)
            except errors.MailError:
                continue
            self._seen[name] = now
            if previous is None or self._stopped:
                continue
            events = []
            for msgid, (uid, _, _) in previous.items():
                if msgid not in now:
                    events.append(MailEvent("expunge", name, msgid=msgid, uid=uid))
            if records:
                summaries = yield mailbox.summarized(records)
                # A change made through this process since this look began
                # (it asked for another check) may be newer than the flags
                # seen here, and a session was told of it already: flag
                # changes wait for that check, which compares with the
                # flags last announced.
                stale = self._again
                for (msgid, _, _), summary in zip(records, summaries):
                    uid, flags, key = now[msgid]
                    summary = summary.replace(uid=uid, flags=flags, folder=name)
                    kind = "message" if msgid not in previous else "flags"
                    if kind == "flags":
                        if previous[msgid][1] == flags:
                            continue
                        if stale:
                            now[msgid] = (uid, previous[msgid][1], key)
                            continue
                    events.append(MailEvent(kind, name, summary=summary))
            store._watchers.announce(self.userid, events)


class NewMailWatch(_OneCheckAtATime):
    """
    New-mail announcements for one mailbox: the listeners, and the highest
    serial announced.  Checked after each delivery through this process,
    and when the store's poll sees the file change (another process).
    """

    _failureText = "mailbox {user}: new-mail check failed"

    def __init__(self, mailbox, listeners):
        self.mailbox = mailbox
        self.listeners = listeners
        self.seen = None
        self.stamp = None
        # The first check only notes where the mailbox ends.
        self.check()

    def check(self):
        """
        Announce the messages that arrived since the last check.
        """
        _OneCheckAtATime.check(self)

    def _once(self):
        def found(result):
            top, records = result
            baseline = self.seen is None
            self.seen = top
            if baseline or not records:
                return None
            return self.mailbox.summarized(records).addCallback(self._announce)

        return self.mailbox.run(self.mailbox.mbox.newSince, self.seen).addCallback(found)

    def _wanted(self):
        return self._userid() in self.listeners

    def _userid(self):
        return self.mailbox.mbox.userid

    def _announce(self, summaries):
        self.listeners.announce(self.mailbox.mbox.userid, summaries)
