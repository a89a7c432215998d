"""
State that every server on one database shares, besides the mail: the
login throttle's counts (L{DatabaseCounts}) and the web's login sessions
(L{DatabaseSessions}).  Their tables are made with the schema
(L{ensureSharedTables}, called by L{twisted_mail.stores.postgres.sql.ensureSchema}).

Both run their statements in the store's database thread pool
(L{PostgresStore.inDatabase}): never on the reactor.
"""

import hashlib
import secrets

from twisted.internet import defer

#: The tables, made if missing (they hold nothing that must survive an
#: upgrade: counts forgotten and sessions ended are harmless).
SHARED_TABLES = [
    """CREATE TABLE IF NOT EXISTS login_counts (
        key text PRIMARY KEY,
        keep_until double precision NOT NULL,
        score double precision NOT NULL,
        updated double precision NOT NULL,
        last_failure double precision NOT NULL,
        mark double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS login_counts_keep ON login_counts (keep_until)",
    """CREATE TABLE IF NOT EXISTS web_sessions (
        name text PRIMARY KEY,
        userid text NOT NULL,
        last_used double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS web_sessions_used ON web_sessions (last_used)",
]


def ensureSharedTables(conn):
    """
    Make the shared tables if missing (inside the schema's transaction).
    """
    for statement in SHARED_TABLES:
        conn.execute(statement)


class DatabaseCounts:
    """
    The login throttle's counts (an
    L{twisted_mail.logins.throttle.ISharedCounts}) in the table
    C{login_counts}, shared by every server and worker on the database.

    Each update is one transaction that locks the rows of its keys
    (C{SELECT ... FOR UPDATE}), so two servers never both take the same
    address's one check a second.

    @param store: the L{PostgresStore}.
    @param limit: the most rows kept; past it the rows keeping soonest go.
    @param sweepEvery: forget expired rows every this many updates.
    """

    def __init__(self, store, limit=100000, sweepEvery=500):
        self._store = store
        self._limit = limit
        self._sweepEvery = sweepEvery
        self._updates = 0

    def update(self, keys, now, change):
        self._updates += 1
        sweep = self._updates % self._sweepEvery == 0
        # In one order everywhere: two servers never lock each other's keys crosswise.
        return self._store.inDatabase(self._update, sorted(keys), now, change, sweep)

    def _update(self, conn, keys, now, change, sweep):
        with conn.transaction():
            # Rows that do not exist cannot be locked: make them first
            # (expiring at once), so that FOR UPDATE locks every key.
            conn.execute(
                "INSERT INTO login_counts (key, keep_until, score, updated, last_failure,"
                " mark) SELECT k, %s, 0, %s, -1e18, -1e18 FROM unnest(%s::text[]) AS k"
                " ON CONFLICT DO NOTHING", [now - 1, now, keys])
            found = conn.execute(
                "SELECT key, keep_until, score, updated, last_failure, mark"
                " FROM login_counts WHERE key = ANY(%s) ORDER BY key FOR UPDATE",
                [keys]).fetchall()
            # A row just made reads as a key never seen.
            before = {row[0]: tuple(row[1:]) for row in found}
            rows = {key: before.get(key) for key in keys}
            result = change(rows)
            for key, row in rows.items():
                if row is not None and tuple(row) != before.get(key):
                    conn.execute(
                        "UPDATE login_counts SET keep_until = %s, score = %s, updated = %s,"
                        " last_failure = %s, mark = %s WHERE key = %s",
                        list(row) + [key])
            if sweep:
                conn.execute("DELETE FROM login_counts WHERE keep_until < %s", [now])
                conn.execute(
                    "DELETE FROM login_counts WHERE key IN (SELECT key FROM login_counts"
                    " ORDER BY keep_until DESC OFFSET %s)", [self._limit])
        return result


class DatabaseSessions:
    """
    Web login sessions in the table C{web_sessions}: a login on one server
    is honoured by every server on the database, and a logout ends it
    everywhere.  The same contract as
    L{twisted_mail.doors.web.site.Sessions}, but each method returns a
    L{Deferred}.

    A row is named by the SHA-256 of its token (256 random bits): the
    database never holds a token.

    @param store: the L{PostgresStore}.
    @param clock: an L{IReactorTime}.
    @param idle: seconds a session lives unused.
    @param limit: the most sessions kept (the least recently used go).
    """

    #: Forget idle sessions every this many new sessions.
    sweepEvery = 100

    def __init__(self, store, clock, idle, limit):
        self._store = store
        self._clock = clock
        self._idle = idle
        self._limit = limit
        self._created = 0

    @staticmethod
    def _name(token):
        if not isinstance(token, bytes) or not token:
            return None
        return hashlib.sha256(token).hexdigest()

    def create(self, userid):
        self._created += 1
        sweep = (self._created - 1) % self.sweepEvery == 0
        token = secrets.token_urlsafe(32).encode("ascii")
        now = self._clock.seconds()

        def create(conn):
            with conn.transaction():
                if sweep:
                    conn.execute("DELETE FROM web_sessions WHERE last_used <= %s",
                                 [now - self._idle])
                    conn.execute(
                        "DELETE FROM web_sessions WHERE name IN (SELECT name FROM"
                        " web_sessions ORDER BY last_used DESC OFFSET %s)",
                        [max(0, self._limit - 1)])
                conn.execute(
                    "INSERT INTO web_sessions (name, userid, last_used) VALUES (%s, %s, %s)",
                    [self._name(token), userid, now])
            return token

        return self._store.inDatabase(create)

    def user(self, token):
        name = self._name(token)
        if name is None:
            return defer.succeed(None)
        now = self._clock.seconds()

        def use(conn):
            row = conn.execute(
                "UPDATE web_sessions SET last_used = %s WHERE name = %s"
                " AND last_used > %s RETURNING userid",
                [now, name, now - self._idle]).fetchone()
            return None if row is None else row[0]

        return self._store.inDatabase(use)

    def end(self, token):
        name = self._name(token)
        if name is None:
            return defer.succeed(None)

        def end(conn):
            conn.execute("DELETE FROM web_sessions WHERE name = %s", [name])

        return self._store.inDatabase(end)
