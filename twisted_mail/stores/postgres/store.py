"""
The PostgreSQL store: many servers, on one machine or many, share the mail.

C{twistd simplemail --database URL} keeps users and messages in a
PostgreSQL database (psycopg 3, the C{postgresql} extra).  Every blocking
call runs in a small thread pool of the store's own, each thread with its
own connection; the reactor never waits on the database.

Tables (the schema is versioned in C{schema_version}, created or upgraded
at start; see L{twisted_mail.stores.postgres.sql}):

  - C{users}: the user ids, and how many messages each mailbox holds (kept
    in the same transactions as deliveries and deletes, so that C{USER}
    costs the same on a mailbox of 20 or 20,000 messages);
  - C{messages}: one row per message: a C{bigserial} id (the mailbox order
    and the basis of the public id; a sequence never gives a number twice),
    the receiver, the arrival time, the envelope sender, the RFC 5322 text
    as C{READM} gives it (LF line ends), its POP3 size, and the summary
    fields that L{twisted_mail.mail.mime} reads from it at delivery (off the
    reactor), so that listings never parse.  A delete deletes the row.

Guarantees:

  - A delivery or a delete is answered only after its transaction commits,
    with C{synchronous_commit=on} (set on every connection).  Deliveries
    queued while a commit runs go together in the next transaction (group
    commit).
  - A lost connection or a database restart fails the call with
    L{TemporaryFailure} (C{-ERR temporary failure}, SMTP 451, HTTP 503),
    and the next call reconnects.  When a connection is lost during a
    delivery's C{COMMIT}, the store reconnects and looks: if the rows are
    there, the delivery is acknowledged, so a retry never stores it twice.
  - Deliveries to one mailbox lock its user row until they commit, so ids
    commit in order: a session's cursor (the last id it read) never skips a
    message committed later with a smaller id, on any server.
  - New mail is announced to this process's subscribers after the commit,
    and to every other process's with C{NOTIFY simplemail} (payload: the
    origin, then C{user id} pairs), within a fraction of a second.
"""

import collections
import os
import threading
import time

from twisted.application import service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_mail import errors
from twisted_mail.interfaces import IMailboxSession, IMailStore
from twisted_mail.mail.message import buildHeaders
from twisted_mail.mail.mime import Listing, MessageSummary
from twisted_mail.mail.model import INBOX, MailEvent, normalizeFolderName
from twisted_mail.stores.base import (
    CursorSession,
    Listeners,
    receiverArgument,
    userIdArgument,
)
from twisted_mail.stores.postgres.folders import (
    PostgresFolders,
    PostgresFolderView,
    _checkUser,
    folderId,
)
from twisted_mail.stores.postgres.listener import listen
from twisted_mail.stores.postgres.search import indexPending, search as searchIn

from twisted_mail.stores.postgres.sql import (
    _SUMMARY_COLUMNS,
    DatabaseUnavailable,
    _deleteRows,
    _Delivery,
    _oneLine,
    _summary,
    checkDatabase,
    connect,
    insertRows,
    prepareRow,
    psycopg,
    publicId,
)

log = Logger()

#: How many delivery transactions one store runs at once (each on the
#: deliveries to its share of the users); see L{PostgresStore._queue}.
#: Measured on 2 shared cores with 50 clients (benchmarks/pgload.py): one
#: lane 2,469 msgs/s, two 1,797, three 1,295 -- the machine is CPU-bound,
#: and one transaction at a time makes the largest batches, the least CPU
#: per message.  More lanes may pay where the database has cores of its own
#: and a slow disk.
DELIVERY_LANES = 1

#: The most messages, and about the most bytes, one delivery transaction
#: takes (the rest wait for the next).
BATCH_MESSAGES = 1000
BATCH_BYTES = 32 * 1024 * 1024

#: How many of its latest deliveries a store remembers, not to announce
#: them twice after its notification connection was lost.
_OWN_REMEMBERED = 100000


class _Outcome:
    """
    What became of one queued delivery: its summary, or the exception that
    refused it.
    """

    __slots__ = ("userid", "summary", "error", "serial")

    def __init__(self, userid, summary=None, error=None):
        self.userid = userid
        self.summary = summary
        self.error = error
        self.serial = None


class _Lane:
    """
    The deliveries waiting for the next transaction of one lane, and
    whether one of its transactions is running.
    """

    __slots__ = ("pending", "flushing")

    def __init__(self):
        self.pending = []
        self.flushing = False


@implementer(IMailStore)
class PostgresStore(PostgresFolders):
    """
    The L{IMailStore} of a PostgreSQL database.

    @param url: the database, as a libpq conninfo string or URL
        (C{postgresql://user@host/dbname}).
    @param threadpool: the pool for database work (one connection per
        thread); see L{databaseThreadPool}.
    @param lanes: how many delivery transactions may run at once.  Tests pass a reactor whose
        C{getThreadPool} runs work at once.
    """

    def __init__(self, url, domain="localhost", maxMessageSize=10 * 1024 * 1024,
                 reactor=None, threadpool=None, clock=time.time, lanes=DELIVERY_LANES):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url
        self.domain = domain
        self.maxMessageSize = maxMessageSize
        self._reactor = reactor
        self._threadpool = threadpool
        self._clock = clock
        self._local = threading.local()
        self._connectionsLock = threading.Lock()
        self._connections = set()
        self._known = set()
        # Group commit: deliveries queued while a commit runs, in lanes by
        # receiver: the lanes' transactions lock different users' rows, so
        # they commit side by side (and PostgreSQL flushes their commits
        # together) instead of one after the other.
        self._lanes = [_Lane() for _ in range(max(1, lanes))]
        # Subscribers: user -> listeners; the set of users is read by the
        # notification thread (replaced whole, never changed in place).
        self._listeners = Listeners(first=self._subscribersChanged, last=self._subscribersChanged)
        self._watchers = Listeners(first=self._subscribersChanged, last=self._subscribersChanged)
        self._subscribed = frozenset()
        self.origin = "{}-{}".format(os.getpid(), os.urandom(4).hex())
        # The row ids of the latest deliveries through this store (announced
        # here already), for the notification thread's catch-up.
        self._ownLock = threading.Lock()
        self._ownSet = set()
        self._ownOrder = collections.deque()
        self._listenThread = None
        self._stopListening = threading.Event()
        #: Set once the notification thread listens (for tests and tools).
        self.listening = threading.Event()
        self._closed = False
        # Users whose new messages wait to be indexed for search, and
        # the indexing job running now (see _indexSoon).
        self._indexWanted = set()
        self._indexJob = None

    # -- connections and threads

    def checkNow(self):
        """
        Connect, and create or upgrade the schema, at once (blocking): for
        start-up, before any client is served.

        @raise DatabaseUnavailable: with a one-line reason.
        """
        checkDatabase(self.url)

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            self._drop(conn)
        try:
            conn = connect(self.url)
        except DatabaseUnavailable as e:
            log.warn("database unavailable: {why}", why=str(e))
            raise errors.TemporaryFailure("database unavailable")
        with self._connectionsLock:
            self._connections.add(conn)
        self._local.conn = conn
        return conn

    def _drop(self, conn):
        with self._connectionsLock:
            self._connections.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        try:
            conn.close()
        except Exception:
            pass

    def _call(self, f, *args):
        """
        In a worker thread: C{f(connection, *args)}, a lost connection or
        an unusable database turned into L{TemporaryFailure}.
        """
        conn = self._connection()
        try:
            return f(conn, *args)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            log.warn("database connection lost: {why}", why=_oneLine(e))
            self._drop(conn)
            raise errors.TemporaryFailure("database unavailable")

    def _run(self, f, *args):
        """
        Run C{f(connection, *args)} in the database thread pool.
        """
        pool = self._threadpool
        if pool is None:
            pool = self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, self._call, f, *args)

    def inDatabase(self, f, *args):
        """
        Run C{f(connection, *args)} in the database thread pool (for the
        state servers share besides the mail: L{shared}); a lost connection
        is a L{TemporaryFailure}.
        """
        return self._run(f, *args)

    def close(self):
        """
        Stop listening for notifications and close every connection (after
        the thread pool has stopped).
        """
        self._closed = True
        self.stopListening()
        with self._connectionsLock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            try:
                conn.close()
            except Exception:
                pass
        self._local = threading.local()

    # -- users

    def listUsers(self):
        def users(conn):
            return sorted(r for (r,) in conn.execute("SELECT userid FROM users"))

        return self._run(users)

    @userIdArgument
    def addUser(self, userid):
        def add(conn):
            row = conn.execute(
                "INSERT INTO users (userid) VALUES (%s) ON CONFLICT DO NOTHING"
                " RETURNING userid", [userid]).fetchone()
            if row is None:
                raise errors.UserExists(userid)
            return userid

        return self._run(add).addCallback(self._remember)

    def _remember(self, userid):
        self._known.add(userid)
        return userid

    @userIdArgument
    def hasUser(self, userid):
        if userid in self._known:
            return defer.succeed(userid)
        return self._run(self._count, userid).addCallback(lambda _: self._remember(userid))

    @staticmethod
    def _count(conn, userid):
        row = conn.execute("SELECT count FROM users WHERE userid = %s", [userid]).fetchone()
        if row is None:
            raise errors.NoSuchUser(userid)
        return row[0]

    @staticmethod
    def _countAndValidity(conn, userid):
        row = conn.execute("SELECT count, uidvalidity FROM users WHERE userid = %s",
                           [userid]).fetchone()
        if row is None:
            raise errors.NoSuchUser(userid)
        return row

    @userIdArgument
    def openMailbox(self, userid):
        return self._run(self._countAndValidity, userid).addCallback(
            lambda row: _PostgresSession(self, self._remember(userid), row[0], row[1]))

    # -- deliveries

    @userIdArgument
    def search(self, userid, query, folder=None, start=0, limit=None):
        """
        Search through the database's full-text index (stores/postgres/search.py),
        every folder unless C{folder} names one.
        """
        if folder is not None:
            try:
                folder = normalizeFolderName(folder)
            except errors.MailError as e:
                return defer.fail(e)

        def run(conn):
            _checkUser(conn, userid)
            row = False if folder is None else folderId(conn, userid, folder)
            return searchIn(conn, userid, query, row, start, limit, _summary,
                            _SUMMARY_COLUMNS)

        return self._run(run).addCallback(lambda result: Listing(*result))

    @receiverArgument
    def deliver(self, sender, receiver, body):
        when = self._clock()
        headers = buildHeaders(sender, receiver, self.domain, when)
        if isinstance(body, (bytes, bytearray)):
            body = [body]
        parts = [headers] + list(body)
        envelope = "{}@{}".format(sender, self.domain)
        return self._queue(_Delivery(receiver, envelope, when, parts))

    @receiverArgument
    def deliverMessage(self, envelopeSender, receiver, message):
        if isinstance(message, (bytes, bytearray)):
            message = [message]
        return self._queue(_Delivery(receiver, envelopeSender, self._clock(), list(message)))

    def _queue(self, delivery):
        if sum(len(part) for part in delivery.parts) > self.maxMessageSize + 4096:
            # Normalising only shortens (but for one last line end): far over
            # the limit is refused now.
            return defer.fail(errors.MessageTooLarge(self.maxMessageSize))
        delivery.deferred = defer.Deferred()
        lane = self._lanes[hash(delivery.receiver) % len(self._lanes)]
        lane.pending.append(delivery)
        if not lane.flushing:
            self._flush(lane)
        return delivery.deferred

    def _flush(self, lane):
        """
        Store every delivery queued in C{lane} in one transaction; when it
        is done, store what was queued meanwhile.
        """
        pending = lane.pending
        size = 0
        for n, delivery in enumerate(pending):
            size += sum(len(part) for part in delivery.parts)
            if n and (n >= BATCH_MESSAGES or size > BATCH_BYTES):
                break
        else:
            n = len(pending)
        batch, lane.pending = pending[:n], pending[n:]
        lane.flushing = True

        def done(result):
            lane.flushing = False
            self._answer(batch, result)
            if lane.pending:
                self._flush(lane)

        self._run(self._store, batch).addBoth(done)

    def _store(self, conn, batch):
        """
        In a worker thread: prepare the rows, check unknown receivers, and
        commit them all in one transaction.

        @return: one L{_Outcome} per delivery of C{batch}.
        """
        outcomes = []
        rows = []
        for delivery in batch:
            row = prepareRow(delivery, self.maxMessageSize)
            if isinstance(row, Exception):
                outcomes.append(_Outcome(delivery.receiver, error=row))
            else:
                outcomes.append(_Outcome(delivery.receiver))
                rows.append((row, outcomes[-1]))
        if not rows:
            return outcomes
        serials = []
        uids = {}
        try:
            with conn.transaction():
                serials = insertRows(conn, [row for row, _ in rows], origin=self.origin,
                                     uidsOut=uids)
                # Leaving the block commits; a connection lost now leaves
                # the outcome in doubt (see below).
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            serials = self._resolveDoubt(conn, serials, e)
        for (row, outcome), serial in zip(rows, serials):
            if serial is None:
                outcome.error = errors.NoSuchUser(row[0])
            else:
                outcome.serial = serial
                outcome.summary = MessageSummary(
                    publicId(serial, row[1]), row[6], row[2], *row[7:],
                    uid=uids.get(serial, 0))
        return outcomes

    def _resolveDoubt(self, conn, serials, e):
        """
        In a worker thread: the connection was lost inside a delivery
        transaction.  If it was lost before the rows were inserted, or the
        rows are not in the database, nothing was stored: raise
        L{TemporaryFailure}.  If it was lost during C{COMMIT} and a new
        connection finds the rows, they were stored: return their ids.
        """
        self._drop(conn)
        log.warn("database connection lost in a delivery: {why}", why=_oneLine(e))
        wanted = [s for s in serials if s is not None]
        if not wanted:
            raise errors.TemporaryFailure("database unavailable")
        try:
            again = self._connection()
            found = again.execute("SELECT count(*) FROM messages WHERE id = ANY(%s)",
                                  [wanted]).fetchone()[0]
        except (psycopg.Error, errors.TemporaryFailure):
            log.error("deliveries in doubt (their commit was cut off): {ids}",
                      ids=wanted)
            raise errors.TemporaryFailure("database unavailable")
        if found != len(wanted):
            raise errors.TemporaryFailure("database unavailable")
        log.info("the commit cut off went through: {n} deliveries kept", n=found)
        return serials

    def _answer(self, batch, result):
        """
        On the reactor thread: answer each delivery of a batch, and announce
        the stored ones to this process's subscribers.
        """
        if not isinstance(result, list):
            f = result
            if not f.check(errors.MailError):
                log.failure("delivery failed", f)
                f = Failure(errors.TemporaryFailure("the message could not be stored"))
            for delivery in batch:
                delivery.deferred.errback(f)
            return
        # Committed: subscribers hear of it by the time the sender does.
        for outcome in result:
            if outcome.summary is not None:
                self._known.add(outcome.userid)
                self._rememberOwn(outcome.serial)
                self._announce(outcome.userid, [outcome.summary])
                self._announceEvents(outcome.userid, [
                    MailEvent("message", INBOX, summary=outcome.summary)])
        for delivery, outcome in zip(batch, result):
            if outcome.error is not None:
                delivery.deferred.errback(outcome.error)
            else:
                delivery.deferred.callback(outcome.summary.id)
        self._indexSoon(o.userid for o in result if o.summary is not None)

    def _indexSoon(self, userids):
        """
        Right after a delivery transaction commits (and is acknowledged):
        index the new messages of C{userids} for search, in the database
        thread pool, one job at a time, users queued meanwhile in the next.
        A search indexes what is still pending itself (search.py), so this
        only takes that work off the first search after new mail; a failure
        is logged and left to that search.
        """
        self._indexWanted.update(userids)
        if self._indexJob is not None or not self._indexWanted or self._closed:
            return
        users, self._indexWanted = sorted(self._indexWanted), set()

        def index(conn):
            for userid in users:
                indexPending(conn, userid)

        def failed(f):
            log.warn("indexing new mail for search failed (the next search will):"
                     " {why}", why=_oneLine(f.value))

        def done(_):
            self._indexJob = None
            self._indexSoon(())

        job = self._indexJob = defer.Deferred()
        self._run(index).addErrback(failed).chainDeferred(job)
        job.addCallback(done)

    # -- new-mail announcements

    def _rememberOwn(self, serial):
        with self._ownLock:
            self._ownSet.add(serial)
            self._ownOrder.append(serial)
            if len(self._ownOrder) > _OWN_REMEMBERED:
                self._ownSet.discard(self._ownOrder.popleft())

    def subscribe(self, userid, listener):
        return self._listeners.subscribe(userid, listener)

    def _subscribersChanged(self, userid):
        self._subscribed = self._listeners.users() | self._watchers.users()

    def _announce(self, userid, summaries):
        self._listeners.announce(userid, summaries)

    def _announceEvents(self, userid, events):
        self._watchers.announce(userid, events)

    def startListening(self):
        """
        Start the thread that waits for other processes' notifications.
        """
        if self._listenThread is not None:
            return
        self._stopListening.clear()
        self._listenThread = threading.Thread(
            target=listen, args=(self,), name="simplemail-notifications", daemon=True)
        self._listenThread.start()

    def stopListening(self, timeout=5.0):
        """
        Stop the notification thread (waits for it, briefly).
        """
        thread, self._listenThread = self._listenThread, None
        if thread is not None:
            self._stopListening.set()
            thread.join(timeout)

@implementer(IMailboxSession)
class _PostgresSession(CursorSession, PostgresFolderView):
    """
    One session on a mailbox in the database: the cursor is the row id of
    the last message read (ids follow delivery order), the current message
    the row id of the message last read.  Deletes delete the row at once,
    so every session on every server stops seeing it; there is nothing to
    expunge at the end.
    """

    def __init__(self, store, userid, count, uidValidity=None):
        PostgresFolderView.__init__(self, store, userid, INBOX, None)
        self.uidValidity = uidValidity
        self.count = count
        # The cursor is the UID of the message last read (INBOX is in UID
        # order: a message moved in comes last); the current message its
        # row id.
        self._startCursor()

    def readMessage(self):
        userid = self.userid

        def read(conn, after):
            cur = conn.cursor(binary=True)
            return cur.execute(
                "SELECT id, body, uid, pubid FROM messages WHERE userid = %s AND folder IS NULL"
                " AND uid > %s ORDER BY uid LIMIT 1", [userid, after]).fetchone()

        def got(row):
            if row is None:
                raise errors.NoMoreMail()
            self._current, self._cursor = row[0], row[2]
            self._currentId = row[3] if row[3] is not None else str(row[0])
            return row[1]

        return self._store._run(read, self._cursor).addCallback(got)

    def deleteMessage(self):
        if self._current is None:
            return defer.fail(errors.NoCurrentMessage())
        serial = self._current

        def deleted(gone):
            if self._current == serial:
                self._current = None
            if not gone:
                raise errors.NoCurrentMessage()

        return self._store._run(_deleteRows, self.userid, [serial], [], True, None,
                                self._store.origin).addCallback(deleted)

    def selectMessage(self, msgid):
        def got(row):
            if row is None:
                raise errors.NoSuchMessage()
            self._current, self._cursor = row[0], row[2]
            self._currentId = str(msgid)
            return row[1]

        return self._store._run(self._byId, str(msgid)).addCallback(got)


def databaseThreadPool(size=4):
    """
    A thread pool for a L{PostgresStore}: each thread holds one connection,
    so this is also how many connections a server opens (plus one that
    listens for notifications).

    @rtype: L{twisted.python.threadpool.ThreadPool}
    """
    from twisted.python.threadpool import ThreadPool

    return ThreadPool(minthreads=1, maxthreads=size, name="simplemail-database")


class DatabaseService(service.Service):
    """
    Runs a L{PostgresStore} with the server: starts its thread pool and its
    notification thread; when the server stops, ends the open sessions (of
    the line protocol and of C{sessionFactories}, such as POP3's), stops the
    pool after its pending jobs, and closes the connections.
    """

    def __init__(self, store, pool, mailFactory, sessionFactories=()):
        self.store = store
        self.pool = pool
        self.mailFactory = mailFactory
        self.sessionFactories = list(sessionFactories)

    def startService(self):
        service.Service.startService(self)
        self.pool.start()
        self.store.startListening()

    def stopService(self):
        service.Service.stopService(self)
        d = defer.DeferredList(
            [f.endSessions() for f in [self.mailFactory] + self.sessionFactories],
            consumeErrors=True,
        )
        d.addBoth(lambda _: self.pool.stop())
        d.addBoth(lambda _: self.store.close())
        return d
