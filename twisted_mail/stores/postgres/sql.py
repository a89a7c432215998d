"""
The database side of the PostgreSQL store: the schema and its versions,
connecting, and the statements a delivery, a migration and a delete run.
Synchronous, on psycopg 3: everything here runs in a worker thread (or in
C{simplemail-migrate}); L{twisted_mail.stores.postgres.store} schedules it.
"""

import re

from twisted.logger import Logger

from twisted_mail import errors
from twisted_mail.mail.message import normaliseBody
from twisted_mail.mail.mime import MessageSummary, parseMessage, popSize
from twisted_mail.stores.postgres.search import SCHEMA as searchSchema

try:
    import psycopg
except ImportError:  # pragma: no cover - checked by tap.py with a clear message
    psycopg = None

log = Logger()

#: The channel of new-mail notifications.
CHANNEL = "simplemail"

#: The schema version this code writes; L{SCHEMA} upgrades to it.
SCHEMA_VERSION = 4

#: The channel of the mailbox model's changes (flags, expunges, folders).
CHANGES_CHANNEL = "simplemail_changes"

#: The statements that bring a schema from version C{n - 1} to C{n}.
SCHEMA = {
    1: [
        """CREATE TABLE users (
            userid text PRIMARY KEY,
            count bigint NOT NULL DEFAULT 0,
            created timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE messages (
            id bigserial PRIMARY KEY,
            userid text NOT NULL REFERENCES users,
            pubid text,
            arrived bigint NOT NULL,
            envelope text NOT NULL DEFAULT '',
            spoolhead bytea,
            body bytea NOT NULL,
            size bigint NOT NULL,
            sender text NOT NULL DEFAULT '',
            recipient text NOT NULL DEFAULT '',
            subject text NOT NULL DEFAULT '',
            date text NOT NULL DEFAULT '',
            snippet text NOT NULL DEFAULT '',
            attachments integer NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX messages_mailbox ON messages (userid, id)",
        "CREATE UNIQUE INDEX messages_pubid ON messages (userid, pubid)"
        " WHERE pubid IS NOT NULL",
    ],
    # The mailbox model (MAILBOX.md): folders, UIDs, flags.  INBOX is the
    # messages whose folder is NULL, its UID state in users; other folders
    # are rows of folders.  A trigger gives each message added to a folder
    # (inserted, or moved there) its folder's next UID.
    2: [
        "CREATE SEQUENCE uidvalidities",
        "SELECT setval('uidvalidities', extract(epoch FROM now())::bigint)",
        "ALTER TABLE users ADD COLUMN uidvalidity bigint,"
        " ADD COLUMN uidnext bigint NOT NULL DEFAULT 1",
        "UPDATE users SET uidvalidity = nextval('uidvalidities')",
        "ALTER TABLE users ALTER COLUMN uidvalidity SET DEFAULT nextval('uidvalidities'),"
        " ALTER COLUMN uidvalidity SET NOT NULL",
        """CREATE TABLE folders (
            id bigserial PRIMARY KEY,
            userid text NOT NULL REFERENCES users,
            name text NOT NULL,
            uidvalidity bigint NOT NULL DEFAULT nextval('uidvalidities'),
            uidnext bigint NOT NULL DEFAULT 1,
            UNIQUE (userid, name)
        )""",
        "ALTER TABLE messages ADD COLUMN folder bigint REFERENCES folders ON DELETE CASCADE,"
        " ADD COLUMN uid bigint, ADD COLUMN flags text[] NOT NULL DEFAULT '{}'",
        "UPDATE messages m SET uid = n.rn FROM (SELECT id, row_number() OVER"
        " (PARTITION BY userid ORDER BY id) AS rn FROM messages) n WHERE m.id = n.id",
        "UPDATE users u SET uidnext = coalesce((SELECT max(uid) FROM messages"
        " WHERE userid = u.userid), 0) + 1",
        """CREATE FUNCTION simplemail_uid() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NEW.folder IS NOT DISTINCT FROM OLD.folder THEN
                RETURN NEW;
            END IF;
            IF TG_OP = 'INSERT' AND NEW.uid IS NOT NULL THEN
                -- Given (a migration): the folder's next UID stays above it.
                IF NEW.folder IS NULL THEN
                    UPDATE users SET uidnext = greatest(uidnext, NEW.uid + 1)
                     WHERE userid = NEW.userid;
                ELSE
                    UPDATE folders SET uidnext = greatest(uidnext, NEW.uid + 1)
                     WHERE id = NEW.folder;
                END IF;
                RETURN NEW;
            END IF;
            IF NEW.folder IS NULL THEN
                UPDATE users SET uidnext = uidnext + 1 WHERE userid = NEW.userid
                    RETURNING uidnext - 1 INTO NEW.uid;
            ELSE
                UPDATE folders SET uidnext = uidnext + 1 WHERE id = NEW.folder
                    RETURNING uidnext - 1 INTO NEW.uid;
            END IF;
            RETURN NEW;
        END
        $$ LANGUAGE plpgsql""",
        "CREATE TRIGGER messages_uid BEFORE INSERT OR UPDATE OF folder ON messages"
        " FOR EACH ROW EXECUTE FUNCTION simplemail_uid()",
        "ALTER TABLE messages ALTER COLUMN uid SET NOT NULL",
        "CREATE INDEX messages_folder ON messages (userid, folder, uid)",
    ],
    # Search (docs/search.rst): stores/postgres/search.py.
    3: searchSchema,
    # The change log (L{notifyChanges}): what a listener whose connection
    # was lost reads when it is back.
    4: [
        """CREATE TABLE changes (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            payload text NOT NULL
        )""",
        # BRIN: the rows come in time order, and it costs an insert nearly nothing.
        "CREATE INDEX changes_at ON changes USING brin (at)",
    ],
}

#: How long the change log keeps a change: a server whose notification
#: connection was lost for longer misses what changed before.
CHANGES_KEPT = "1 day"

#: A summary's columns, in the order L{_summary} reads them.
_SUMMARY_COLUMNS = ("id, pubid, size, arrived, sender, recipient, subject, date,"
                    " snippet, attachments, uid, flags")

#: The public id of a message stored here is its row id in decimal; a
#: message migrated from a spool keeps the id it had there (C{pubid}),
#: unless that looks like one of ours.
_NATIVE_ID = re.compile(r"\A[1-9][0-9]{0,18}\Z")
_PUBLIC_ID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")

#: NOTIFY payloads stay under PostgreSQL's 8000-byte limit.
_PAYLOAD_LIMIT = 7000

def publicId(serial, pubid=None):
    """
    The public (stable) id of the message with row id C{serial}.
    """
    return pubid if pubid is not None else str(serial)


def isNativeId(msgid):
    """
    Whether C{msgid} has the form of the ids this store makes.
    """
    return bool(_NATIVE_ID.match(msgid))


def _summary(row, folder="INBOX"):
    (serial, pubid, size, arrived, sender, recipient, subject, date, snippet,
     attachments, uid, flags) = row
    return MessageSummary(publicId(serial, pubid), size, arrived, sender, recipient,
                          subject, date, snippet, attachments, uid, flags, folder)


def _oneLine(e):
    """
    The first line of an exception's text, for a log line or an error.
    """
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class DatabaseUnavailable(Exception):
    """
    The database could not be reached or used at start; the text says why,
    in one line.
    """


def connect(url, applicationName="simplemail"):
    """
    A new autocommit connection to C{url} with synchronous commit on.

    @raise DatabaseUnavailable: when psycopg is missing or the database
        cannot be reached.
    """
    if psycopg is None:
        raise DatabaseUnavailable(
            "the PostgreSQL store needs psycopg: pip install -e '.[postgresql]'")
    try:
        # TCP keepalives and a user timeout: a database host that vanishes
        # without a word (a cut network) fails the calls waiting on it within
        # about a minute, instead of the kernel's two hours.
        return psycopg.connect(
            url, autocommit=True, connect_timeout=10,
            application_name=applicationName,
            keepalives=1, keepalives_idle=30, keepalives_interval=10,
            keepalives_count=3, tcp_user_timeout=60000,
            options="-c synchronous_commit=on")
    except psycopg.Error as e:
        raise DatabaseUnavailable(_oneLine(e))
    except Exception as e:
        # A malformed URL: ProgrammingError or ValueError from the parser.
        raise DatabaseUnavailable(_oneLine(e))


def ensureSchema(conn):
    """
    Create the schema, or upgrade it to L{SCHEMA_VERSION}, in one
    transaction, under an advisory lock so that servers starting together
    do it once.

    @return: the version found before (0 for a new database).
    @raise DatabaseUnavailable: when the database holds a newer schema.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7347226151)")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                     " version integer NOT NULL,"
                     " upgraded timestamptz NOT NULL DEFAULT now())")
        found = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if found > SCHEMA_VERSION:
            raise DatabaseUnavailable(
                "the database's schema is version {}, newer than this simplemail's "
                "({}): upgrade simplemail".format(found, SCHEMA_VERSION))
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in SCHEMA[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", [version])
        # Outside the versions: tables made if missing, never upgraded.
        from twisted_mail.stores.postgres.shared import ensureSharedTables

        ensureSharedTables(conn)
    return found


def checkDatabase(url):
    """
    Connect to C{url} and create or upgrade the schema (blocking): for
    start-up, before any client is served.

    @raise DatabaseUnavailable: with a one-line reason.
    """
    conn = connect(url)
    try:
        found = ensureSchema(conn)
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    except psycopg.Error as e:
        raise DatabaseUnavailable(_oneLine(e))
    finally:
        conn.close()
    if found < SCHEMA_VERSION:
        log.info("database schema {old} -> {new}", old=found, new=SCHEMA_VERSION)
    if fsync != "on":
        log.warn("the database runs with fsync={fsync}: a crash of its machine "
                 "can lose acknowledged mail", fsync=fsync)


class _Delivery:
    """
    One message queued for the next group commit.
    """

    __slots__ = ("receiver", "envelope", "arrived", "parts", "pubid", "spoolhead",
                 "deferred")

    def __init__(self, receiver, envelope, arrived, parts, pubid=None, spoolhead=None):
        self.receiver = receiver
        self.envelope = envelope
        self.arrived = arrived
        self.parts = parts
        self.pubid = pubid
        self.spoolhead = spoolhead
        self.deferred = None


def prepareRow(delivery, maxMessageSize):
    """
    In a worker thread: the row of one delivery (its text joined and
    normalised, its size and summary fields read), or the exception that
    refuses it.
    """
    parts = delivery.parts
    text = parts[0] if len(parts) == 1 else b"".join(parts)
    text = normaliseBody(bytes(text))
    if len(text) > maxMessageSize:
        return errors.MessageTooLarge(maxMessageSize)
    fields = parseMessage(text).summaryFields()
    return (delivery.receiver, delivery.pubid, int(delivery.arrived), delivery.envelope,
            delivery.spoolhead, text, popSize(text), fields["sender"], fields["to"],
            fields["subject"], fields["date"], fields["snippet"], fields["attachments"])


_INSERT = (
    "INSERT INTO messages (userid, pubid, arrived, envelope, spoolhead, body, size,"
    " sender, recipient, subject, date, snippet, attachments)"
    " VALUES (%s, %s, %s, %s, %b, %b, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)


_INSERT_MANY = (
    "INSERT INTO messages (userid, pubid, arrived, envelope, spoolhead, body, size,"
    " sender, recipient, subject, date, snippet, attachments)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[],"
    " %b::bytea[], %b::bytea[], %s::bigint[], %s::text[], %s::text[], %s::text[],"
    " %s::text[], %s::text[], %s::int[]) RETURNING id, uid"
)


def insertRows(conn, rows, notify=True, origin="", uidsOut=None):
    """
    In a worker thread, inside a transaction: lock the receivers' user rows
    (in a fixed order, so two servers never deadlock), store C{rows} (from
    L{prepareRow}), count them in C{users} and announce them.

    @param uidsOut: a L{dict} to fill with each new row id's UID.
    @return: for each row, its new row id; L{None} for a row whose user does
        not exist, or whose migrated public id the mailbox already has.
    """
    uids = {}
    receivers = sorted({row[0] for row in rows})
    cur = conn.cursor()
    found = {r for (r,) in cur.execute(
        "SELECT userid FROM users WHERE userid = ANY(%s) ORDER BY userid"
        " FOR NO KEY UPDATE", [receivers])}
    keep = [row for row in rows if row[0] in found]
    taken = set()
    pubids = [(row[0], row[1]) for row in keep if row[1] is not None]
    if pubids:
        taken = set(cur.execute(
            "SELECT userid, pubid FROM messages WHERE (userid, pubid) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            [[u for u, _ in pubids], [p for _, p in pubids]]).fetchall())
        keep = [row for row in keep if (row[0], row[1]) not in taken]
    ids = {}
    if keep:
        # One statement for the batch.  Its rows take their ids from the
        # sequence one after the other, in the order unnest gives them: the
        # ids, sorted, are the rows' in order.
        found = sorted(cur.execute(_INSERT_MANY, [list(c) for c in zip(*keep)]).fetchall())
        serials = [serial for serial, _ in found]
        counts = {}
        for row, (serial, uid) in zip(keep, found):
            ids[id(row)] = serial
            uids[serial] = uid
            counts[row[0]] = counts.get(row[0], 0) + 1
        cur.execute(
            "UPDATE users SET count = users.count + c.n FROM"
            " unnest(%s::text[], %s::bigint[]) AS c(userid, n)"
            " WHERE users.userid = c.userid",
            [list(counts), list(counts.values())])
        if notify:
            pairs = ["{} {}".format(row[0], serial) for row, serial in zip(keep, serials)]
            for payload in _payloads(origin, pairs):
                cur.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
    if uidsOut is not None:
        uidsOut.update(uids)
    return [ids.get(id(row)) for row in rows]


def _payloads(origin, pairs):
    """
    NOTIFY payloads: the origin, then C{user id} pairs, one a line, each
    payload under the size limit.
    """
    payload = [origin]
    size = len(origin)
    for pair in pairs:
        if size + len(pair) + 1 > _PAYLOAD_LIMIT and len(payload) > 1:
            yield "\n".join(payload)
            payload = [origin]
            size = len(origin)
        payload.append(pair)
        size += len(pair) + 1
    if len(payload) > 1:
        yield "\n".join(payload)


def _parsePayload(payload):
    """
    The origin and the C{(user, row id)} pairs of a NOTIFY payload.
    """
    lines = payload.split("\n")
    pairs = []
    for line in lines[1:]:
        user, _, serial = line.partition(" ")
        try:
            pairs.append((user, int(serial)))
        except ValueError:
            continue
    return lines[0], pairs


def inFolder(folder):
    """
    The SQL condition, and its parameters, of a message being in folder
    C{folder} (a folder row id; L{None} for INBOX).
    """
    if folder is None:
        return "folder IS NULL", []
    return "folder = %s", [folder]


def _deleteRows(conn, userid, serials, pubids, byRow=False, folder=None, origin=""):
    """
    In a worker thread: delete the messages of C{userid} in C{folder} (row
    id, L{None} for INBOX) with these row ids (of native ids; any row id
    with C{byRow}) or public ids, count them off (INBOX), and announce the
    expunges, in one statement.

    @return: the public ids deleted, in mailbox order.
    """
    conditions = []
    params = []
    if serials:
        conditions.append("id = ANY(%s)" if byRow else "(id = ANY(%s) AND pubid IS NULL)")
        params.append(serials)
    if pubids:
        conditions.append("pubid = ANY(%s)")
        params.append(pubids)
    if not conditions:
        return []
    where, folderParams = inFolder(folder)
    counted = "count - (SELECT count(*) FROM gone)" if folder is None else "count"
    rows = conn.execute(
        "WITH gone AS (DELETE FROM messages WHERE userid = %s AND " + where + " AND ("
        + " OR ".join(conditions) + ") RETURNING id, pubid, uid),"
        " counted AS (UPDATE users SET count = " + counted +
        " WHERE userid = %s AND EXISTS (SELECT 1 FROM gone))"
        " SELECT id, pubid, uid FROM gone ORDER BY id",
        [userid] + folderParams + params + [userid]).fetchall()
    if rows:
        notifyChanges(conn, origin, [
            {"u": userid, "k": "expunge", "f": folder, "m": publicId(serial, pubid),
             "uid": uid} for serial, pubid, uid in rows])
    return [publicId(serial, pubid) for serial, pubid, _ in rows]


def notifyChanges(conn, origin, changes):
    """
    Announce changes of the mailbox model to every process (C{pg_notify} on
    L{CHANGES_CHANNEL}, sent at commit): each a L{dict} with the user
    (C{u}), the kind (C{k}), the folder row id (C{f}, L{None} for INBOX or
    a folder change) and the message's id and UID (C{m}, C{uid}).
    """
    import json

    lines = [json.dumps(change, separators=(",", ":")) for change in changes]
    for payload in _payloads(origin, lines):
        # Logged in the same transaction, for a listener that was away
        # (L{changesSince}); the notification leads with the log's row id.
        # One statement: a round trip as before.
        conn.execute("WITH logged AS (INSERT INTO changes (payload) VALUES (%s) RETURNING id)"
                     " SELECT pg_notify(%s, id || E'\\n' || %s) FROM logged",
                     [payload, CHANGES_CHANNEL, payload])


def splitChange(notification):
    """
    The change log's row id and the payload (origin, then changes) of a
    L{CHANGES_CHANNEL} notification; the id is L{None} if it has none.
    """
    first, _, payload = notification.partition("\n")
    try:
        return int(first), payload
    except ValueError:
        return None, notification


def changesSince(conn, serial):
    """
    The change log's rows after row id C{serial}, as C{(id, payload)}, in
    order.
    """
    return conn.execute("SELECT id, payload FROM changes WHERE id > %s ORDER BY id",
                        [serial]).fetchall()


def trimChanges(conn):
    """
    Forget the change log's rows older than L{CHANGES_KEPT}.
    """
    conn.execute("DELETE FROM changes WHERE at < now() - %s::interval", [CHANGES_KEPT])
