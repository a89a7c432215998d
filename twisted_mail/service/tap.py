"""
Deploying the server with twistd: C{twistd -n simplemail [options]}.
L{Options} (the command line, L{twisted_mail.service.options}) and
L{makeService}, which builds every door of the doors table
(L{twisted_mail.service.doors}) over one store, or the C{--workers}
supervisor.
"""

import gc
import os

from twisted.application import service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.python import usage

from twisted_mail.doors.line import MailServerFactory
from twisted_mail.logins.portal import PasswordFile, makePortal
from twisted_mail.service.doors import DOORS, ServerParts, doorEndpoints
from twisted_mail.service.listeners import CannotListen, Listeners, listenNow
from twisted_mail.service.options import DEFAULT_LISTEN, Options  # noqa: F401 (twistd's)
from twisted_mail.stores.spool.store import SpoolStore, mailboxThreadPool

log = Logger()

class _ThreadPoolService(service.Service):
    """
    Starts the mailbox thread pool with the server.  When the server stops,
    it first ends the open user sessions (so their deletes are expunged),
    then stops the pool after its pending jobs, then removes the file its
    dot-locks were linked from.
    """

    def __init__(self, pool, mailFactory, store, sessionFactories=()):
        self.pool = pool
        self.mailFactory = mailFactory
        self.store = store
        # Other listeners' factories with sessions to end (POP3).
        self.sessionFactories = list(sessionFactories)

    def startService(self):
        service.Service.startService(self)
        self.pool.start()

    def stopService(self):
        service.Service.stopService(self)
        self.store.stopWatching()
        d = defer.DeferredList(
            [f.endSessions() for f in [self.mailFactory] + self.sessionFactories],
            consumeErrors=True,
        )
        d.addBoth(lambda _: self.pool.stop())
        d.addBoth(lambda _: getattr(self.store, "closeJournal", lambda: None)())
        d.addBoth(lambda _: self.store.removeLockSource())
        return d


class _SpoolRepair(service.Service):
    """
    Before the listeners start, repair what a crash left in the spool (torn
    appends, dead processes' dot-locks), so that neither clients nor other
    mail tools ever meet it.  This blocks start-up briefly: a few system
    calls per mailbox, and reading only the mailboxes that need repair.
    """

    def __init__(self, store):
        self.store = store

    def startService(self):
        service.Service.startService(self)
        try:
            users = self.store.repairNow()
        except Exception:
            log.failure("could not repair the spool at start")
            return
        if users:
            log.info("repaired mailboxes left by a crash: {users}", users=", ".join(users))


#: Seconds between the garbage collector's full collections in a server
#: (L{tuneCollector}).
FULL_COLLECTION_INTERVAL = 60.0


def tuneCollector(reactor):
    """
    Once the server runs, keep the garbage collector's full collections,
    which stop every thread, from the reactor's answers:

      - collect, then set every object the start-up made (modules,
        classes, functions, the doors: about 100,000) aside from the
        collector (C{gc.freeze}, as long-running Python servers do);
        reference counting still frees them when they are dropped;
      - run the full collections on a timer, every
        L{FULL_COLLECTION_INTERVAL} seconds, rather than whenever the
        objects that survived two collections grew by a quarter: with mail
        pouring in, a mailbox's entries grow by a quarter every few
        thousand deliveries, and each full collection walks them all (7 in
        a 10-second run of benchmarks/load.py, up to 17 ms each).  The
        young generations, where nearly all garbage dies, are collected as
        before.

    @return: the L{LoopingCall} of the full collections.
    """
    gc.collect()
    gc.freeze()
    first, second, _ = gc.get_threshold()
    gc.set_threshold(first, second, 2 ** 30)
    collections = task.LoopingCall(gc.collect)
    collections.clock = reactor
    collections.start(FULL_COLLECTION_INTERVAL, now=False)
    return collections


class _CollectorService(service.Service):
    """
    L{tuneCollector} while the server runs (twistd's path); stopping puts
    the collector back as it was.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self._calls = None
        self._thresholds = None

    def startService(self):
        service.Service.startService(self)
        self._thresholds = gc.get_threshold()
        self._calls = tuneCollector(self._reactor)

    def stopService(self):
        service.Service.stopService(self)
        if self._calls is not None and self._calls.running:
            self._calls.stop()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            gc.unfreeze()


def _cannotListen(e):
    """
    The server cannot start: one line for twistd to print, exit status 1.
    """
    return SystemExit("simplemail: {}".format(e))


def _databaseStore(options, reactor):
    """
    The PostgreSQL store of C{--database} and its thread pool (the
    options checked that the database can be reached and made its schema
    ready).
    """
    from twisted_mail.stores.postgres.store import PostgresStore, databaseThreadPool

    pool = databaseThreadPool()
    store = PostgresStore(
        options["database"],
        domain=options["domain"],
        maxMessageSize=options["max-message-size"],
        reactor=reactor,
        threadpool=pool,
    )
    log.info("simplemail: mail in the PostgreSQL database {url}",
             url=_redacted(options["database"]))
    return pool, store


def _loginCounts(options, store, reactor):
    """
    Where the login throttle keeps its counts: in the database with
    C{--database} (every server and worker on it shares them), in the spool
    with C{--workers} (every worker of this server), else in this process's
    memory (L{None}).
    """
    if options.get("database"):
        from twisted_mail.stores.postgres.shared import DatabaseCounts

        return DatabaseCounts(store)
    if options["workers"] > 1:
        from twisted_mail.stores.spool.counts import SpoolCounts

        return SpoolCounts(os.path.join(store.path, SpoolCounts.directoryName), reactor)
    return None


def _redacted(url):
    """
    A database URL or conninfo for the log, without its password.
    """
    import re

    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url)


def makeService(options, reactor=None, listeners=None, secret=None, indexer=None):
    """
    Build the server: a store on the spool directory and one listening
    service per endpoint of each door.

    Listeners are opened now, so that one that cannot be opened stops the
    server with one line (L{SystemExit}) before twistd daemonizes.

    @param listeners: how listeners are opened: a L{Listeners} (the default
        binds them).  A worker passes one that adopts the supervisor's
        sockets.  Without it and with C{--workers} above 1, the service is
        the L{twisted_mail.service.workers.Supervisor} instead.
    @param secret: the server's L{ServerParts.secret} (a worker passes the
        supervisor's; by default a new one).
    @param indexer: a worker's handle on its supervisor's indexing process
        (an L{twisted_mail.stores.spool.indexerprocess.IndexerRelay}); a
        single server starts its own.
    """
    # twistd's path (a test passes its reactor): the collector tuned.
    tune = reactor is None
    if reactor is None:
        from twisted.internet import reactor
    standalone = listeners is None
    if listeners is None:
        if options["workers"] > 1:
            return _makeSupervisor(options, reactor)
        listeners = Listeners(reactor)
    if options.get("database"):
        pool, store = _databaseStore(options, reactor)
    else:
        pool = mailboxThreadPool()
        try:
            store = SpoolStore(
                options["spool"],
                domain=options["domain"],
                maxMessageSize=options["max-message-size"],
                reactor=reactor,
                threadpool=pool,
                journal=not options["no-journal"],
                indexProcess=standalone,
                indexer=indexer,
            )
        except OSError as e:
            raise usage.UsageError(
                "cannot use spool directory {!r}: {}".format(options["spool"], e.strerror)
            )
    portal = passwordFile = None
    if options["passwords"]:
        passwordFile = PasswordFile(options["passwords"])
        portal = makePortal(
            passwordFile, reactor=reactor, store=store,
            counts=_loginCounts(options, store, reactor))
    factory = MailServerFactory(
        store,
        portal=portal,
        passwordFile=passwordFile,
        maxMessageSize=options["max-message-size"],
        idleTimeout=options["idle-timeout"],
        maxConnections=options["max-connections"],
        reactor=reactor,
        signup=not options["no-signup"],
    )
    parts = ServerParts(options, reactor, store, portal, passwordFile, factory, secret)
    # Each door's factory, built before anything listens.
    doors = []
    for door in DOORS:
        descriptions = options.get(door.option) or ()
        if not descriptions:
            continue
        try:
            doors.append((door, descriptions, door.buildFactory(parts)))
        except ValueError as e:
            raise usage.UsageError(str(e))
    top = service.MultiService()
    # Children start in this order and stop in the reverse one: the thread
    # pool outlives the listeners, and finishes its jobs as it stops.
    if options.get("database"):
        from twisted_mail.stores.postgres.store import DatabaseService

        DatabaseService(store, pool, factory, parts.sessionFactories).setServiceParent(top)
    else:
        _ThreadPoolService(pool, factory, store, parts.sessionFactories).setServiceParent(
            top)
        _SpoolRepair(store).setServiceParent(top)
    for door, descriptions, doorFactory in doors:
        for description in descriptions:
            try:
                listener = listeners.listen(door.option, description, doorFactory)
            except CannotListen as e:
                raise _cannotListen(e)
            listener.setServiceParent(top)
    if tune:
        _CollectorService(reactor).setServiceParent(top)
    log.info(
        "simplemail: spool {spool}, domain {domain}, listening on {listen}, "
        "passwords {passwords}",
        spool=getattr(store, "path", None) or "none (database)",
        domain=options["domain"],
        listen=", ".join(options["listen"]),
        passwords=options["passwords"] or "off",
    )
    return top


class _NotServing(protocol.Factory):
    """
    The factory of the supervisor's own copy of a listener: it never
    accepts, the workers do.
    """

    noisy = False


def _makeSupervisor(options, reactor):
    """
    Bind every listener once and return the service running the workers
    on them (C{--workers} above 1).
    """
    from twisted_mail.service.workers import Supervisor

    opened = []
    try:
        for option, description in doorEndpoints(options):
            port = listenNow(reactor, option, description, _NotServing())
            # The workers accept; this process only holds the socket.
            stopReading = getattr(port, "stopReading", None)
            if stopReading is not None:
                stopReading()
            opened.append((option, description, port))
    except CannotListen as e:
        for _, _, port in opened:
            port.stopListening()
        raise _cannotListen(e)
    log.info(
        "simplemail: {workers} workers, mail in {where}, listening on {listen}",
        workers=options["workers"],
        where=(
            _redacted(options["database"])
            if options.get("database")
            else os.path.abspath(options["spool"])
        ),
        listen=", ".join(description for _, description in doorEndpoints(options)),
    )
    indexer = None
    if not options.get("database"):
        # One indexing process for every worker's deliveries.
        from twisted_mail.stores.spool.indexerprocess import IndexerProcess

        indexer = IndexerProcess(
            options["spool"], reactor,
            fallback="the workers' deliveries are indexed by the next search")
    return Supervisor(options["workers"], options.argv, opened, reactor, indexer=indexer)
