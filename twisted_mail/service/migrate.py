"""
C{simplemail-migrate --spool DIR --database URL to-database|to-spool}: copy
every mailbox between an mbox spool directory and a PostgreSQL database, so
that mail moves between the two stores without losing a message.

  - C{to-database} copies each spool file's messages (those not deleted)
    into the database, creating the users; C{to-spool} copies each user's
    messages from the database into the spool, creating the spool files.
    Nothing is removed from the source.
  - Each message keeps its stable id (the spool's C{X-Simplemail-Id} line,
    or the id the spool derives for another program's message; the
    database's row id), its envelope sender and its arrival time (the mbox
    C{From } line), so a round trip spool -> database -> spool gives the
    same files, byte for byte.  A C{From } line in another form than the
    server writes is kept as it was.
  - Folders go with their messages (INBOX to INBOX), and each message
    keeps its flags and its UID; a folder new to the target takes the
    source's UIDVALIDITY, so mail programs keep their caches.
  - A message whose id the target mailbox already holds is skipped: running
    it again copies only what is new, and an interrupted run can simply be
    run again.
  - Stop the servers of the target first: the spool side takes the mail
    tools' locks, but a message copied into a mailbox being read by a
    running session may appear out of its order.
"""

import os
import sys

from twisted.python import usage

from twisted_mail import errors
from twisted_mail.mail.message import (
    ID_HEADER,
    idHeaderLine,
    quoteFrom,
    separatorLine,
)
from twisted_mail.mail.dates import arrivalTime
from twisted_mail.mail.model import INBOX
from twisted_mail.stores.spool.flags import readerText, recordForCopy

#: How many bytes of messages go in one transaction or one append.
BATCH_BYTES = 8 * 1024 * 1024


class Options(usage.Options):
    synopsis = ("Usage: simplemail-migrate --spool DIR --database URL "
                "to-database|to-spool")
    longdesc = (
        "Copy every mailbox, with its folders, from the spool directory into "
        "the PostgreSQL database (to-database) or back (to-spool), keeping "
        "each message's bytes, id, UID, flags, sender and arrival time and "
        "each folder's UIDVALIDITY; messages the target already "
        "has (by id) are skipped, so it can be run again. Stop the servers "
        "of the target first."
    )
    optParameters = [
        ["spool", "s", None, "The spool directory (as twistd simplemail --spool)."],
        ["database", None, None, "The PostgreSQL URL (as twistd simplemail --database)."],
        ["domain", "d", "localhost", "The mail domain (for summaries only)."],
    ]

    def parseArgs(self, direction):
        if direction not in ("to-database", "to-spool"):
            raise usage.UsageError(
                "say to-database or to-spool, not {!r}".format(direction))
        self["direction"] = direction

    def postOptions(self):
        if not self["spool"]:
            raise usage.UsageError("--spool DIR is required")
        if not self["database"]:
            raise usage.UsageError("--database URL is required")
        if self["direction"] == "to-database" and not os.path.isdir(self["spool"]):
            raise usage.UsageError("no spool directory {!r}".format(self["spool"]))


class _Report:
    def __init__(self, out):
        self.out = out
        self.copied = 0
        self.skipped = 0
        self.inexact = 0

    def user(self, userid, copied, skipped, inexact=0):
        self.copied += copied
        self.skipped += skipped
        self.inexact += inexact
        line = "{}: {} copied, {} already there".format(userid, copied, skipped)
        if inexact:
            line += ", {} not in the server's own form (copied, not byte for byte)".format(
                inexact)
        self.out.write(line + "\n")


def _spoolStore(path):
    from twisted_mail.stores.spool.store import SpoolStore

    class _NoReactor:
        def getThreadPool(self):
            raise RuntimeError("simplemail-migrate runs the spool synchronously")

    return SpoolStore(path, reactor=_NoReactor())


def splitRecord(record):
    """
    The parts of one spool record that the database keeps.

    @return: C{(head, envelope, arrived, text)}: the bytes before the
        message (the C{From } line and the id line, if any), the envelope
        sender and arrival time read from the C{From } line, and the
        message as C{READM} gives it.
    """
    newline = record.find(b"\n")
    head = record[: newline + 1]
    if record.startswith(ID_HEADER, newline + 1):
        after = record.find(b"\n", newline + 1)
        head = record[: after + 1]
    separator = record[:newline]
    words = separator.split(b" ")
    envelope = words[1].decode("utf-8", "replace") if len(words) > 1 else ""
    return head, envelope, arrivalTime(separator), readerText(record)


def defaultHead(envelope, arrived, msgid):
    """
    The bytes before a message in the spool record C{to-spool} writes when
    the database kept no head of its own: the server's C{From } line and
    the id line.
    """
    return (separatorLine(envelope.encode("utf-8", "replace"), arrived) + b"\n"
            + idHeaderLine(msgid))


def toDatabase(spool, url, out):
    """
    Copy every spool mailbox, with its folders, into the database.
    """
    from twisted_mail.stores.postgres import sql as pgsql

    pgsql.checkDatabase(url)
    store = _spoolStore(spool)
    conn = pgsql.connect(url, "simplemail-migrate")
    report = _Report(out)
    try:
        for userid in store._listUsers():
            conn.execute("INSERT INTO users (userid) VALUES (%s) ON CONFLICT DO NOTHING",
                         [userid])
            copied = skipped = inexact = 0
            folders = store._userFolders(userid)
            boxes = [(INBOX, store._mailbox(userid).mbox)]
            for name, (filename, _) in sorted(folders.scan().items()):
                boxes.append((name, store._folderFile(userid, filename).mbox))
            for name, mbox in boxes:
                with mbox.locked() as handle:
                    folder = _databaseFolder(conn, userid, name, mbox)
                    batch, size = [], 0
                    for entry in mbox.entries:
                        if entry.deleted:
                            continue
                        record = os.pread(handle.fd, entry.end - entry.start, entry.start)
                        head, envelope, arrived, text = splitRecord(record)
                        if head + quoteFrom(text) + b"\n" != b"".join(
                                recordForCopy(record, entry.msgid)):
                            inexact += 1
                        if head == defaultHead(envelope, arrived, entry.msgid):
                            head = None
                        batch.append((entry.msgid, arrived, envelope, head, text, folder,
                                      entry.uid, sorted(entry.flags)))
                        size += len(record)
                        if size >= BATCH_BYTES:
                            done = _insertMigrated(conn, userid, batch)
                            copied += done
                            skipped += len(batch) - done
                            batch, size = [], 0
                    if batch:
                        done = _insertMigrated(conn, userid, batch)
                        copied += done
                        skipped += len(batch) - done
            report.user(userid, copied, skipped, inexact)
    finally:
        conn.close()
        store.close()
    return report


def _databaseFolder(conn, userid, name, mbox):
    """
    The database's row id of folder C{name} (L{None} for INBOX), made if
    missing; a folder without messages there takes the spool's UIDVALIDITY.
    """
    if name == INBOX:
        row = None
        empty = conn.execute("SELECT count = 0 FROM users WHERE userid = %s",
                             [userid]).fetchone()[0]
        if empty and mbox.uidValidity:
            conn.execute("UPDATE users SET uidvalidity = %s WHERE userid = %s",
                         [mbox.uidValidity, userid])
        return row
    conn.execute("INSERT INTO folders (userid, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 [userid, name])
    row = conn.execute("SELECT id FROM folders WHERE userid = %s AND name = %s",
                       [userid, name]).fetchone()[0]
    empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM messages WHERE folder = %s)",
                         [row]).fetchone()[0]
    if empty and mbox.uidValidity:
        conn.execute("UPDATE folders SET uidvalidity = %s WHERE id = %s",
                     [mbox.uidValidity, row])
    return row


def _insertMigrated(conn, userid, items):
    """
    Store migrated messages of C{userid} in one transaction, skipping those
    whose id the mailbox has.  A message with an id of the database's own
    form (it came from this database) gets that row id back when the
    sequence gave it out and no row holds it; any other a new one.

    @param items: C{(msgid, arrived, envelope, head, text, folder, uid,
        flags)} tuples (the folder's row id, L{None} for INBOX).
    @return: how many were stored.
    """
    from twisted_mail.stores.postgres import sql as pgsql

    with conn.transaction():
        conn.execute("SELECT 1 FROM users WHERE userid = %s FOR NO KEY UPDATE", [userid])
        native = [int(m) for m, *_ in items if pgsql.isNativeId(m)]
        other = [m for m, *_ in items if not pgsql.isNativeId(m)]
        taken = {r for (r,) in conn.execute(
            "SELECT pubid FROM messages WHERE userid = %s AND pubid = ANY(%s)",
            [userid, other])}
        rows = {r: u for r, u in conn.execute(
            "SELECT id, userid FROM messages WHERE id = ANY(%s)", [native])}
        issued = conn.execute("SELECT last_value FROM messages_id_seq").fetchone()[0]
        plain, numbered = [], []
        inbox = 0
        for msgid, arrived, envelope, head, text, folder, uid, flags in items:
            serial = None
            pubid = msgid
            if pgsql.isNativeId(msgid):
                pubid = None
                number = int(msgid)
                if rows.get(number) == userid:
                    continue
                if number not in rows and number <= issued:
                    serial = number
            elif msgid in taken:
                continue
            row = pgsql.prepareRow(
                pgsql._Delivery(userid, envelope, arrived, [text], pubid, head),
                maxMessageSize=1 << 62) + (folder, uid or None, flags)
            inbox += folder is None
            if serial is None:
                plain.append(row)
            else:
                numbered.append((serial,) + row)
        cur = conn.cursor()
        if plain:
            cur.executemany(_INSERT, plain)
        if numbered:
            cur.executemany(_INSERT.replace("(userid,", "(id, userid,", 1)
                            .replace("VALUES (%s,", "VALUES (%s, %s,", 1), numbered)
        stored = len(plain) + len(numbered)
        conn.execute("UPDATE users SET count = count + %s WHERE userid = %s",
                     [inbox, userid])
    return stored


#: A migrated message's row: as a delivery's, with its folder, UID (kept:
#: the database's UID trigger raises the folder's UIDNEXT past it) and
#: flags.
_INSERT = (
    "INSERT INTO messages (userid, pubid, arrived, envelope, spoolhead, body, size,"
    " sender, recipient, subject, date, snippet, attachments, folder, uid, flags)"
    " VALUES (%s, %s, %s, %s, %b, %b, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def toSpool(spool, url, out):
    """
    Copy every user's messages, with their folders, from the database into
    the spool.
    """
    from twisted_mail.stores.postgres import sql as pgsql

    pgsql.checkDatabase(url)
    store = _spoolStore(spool)
    conn = pgsql.connect(url, "simplemail-migrate")
    report = _Report(out)
    try:
        users = sorted(r for (r,) in conn.execute("SELECT userid FROM users"))
        for userid in users:
            try:
                store._addUser(userid)
            except errors.UserExists:
                pass
            folders = store._userFolders(userid)
            validity = conn.execute("SELECT uidvalidity FROM users WHERE userid = %s",
                                    [userid]).fetchone()[0]
            boxes = [(None, store._mailbox(userid).mbox, validity)]
            for row, name, validity in conn.execute(
                    "SELECT id, name, uidvalidity FROM folders WHERE userid = %s"
                    " ORDER BY name", [userid]).fetchall():
                found = folders.scan().get(name)
                filename = found[0] if found else folders._create(name)
                boxes.append((row, store._folderFile(userid, filename).mbox, validity))
            # Ids are unique per user across folders: skip those anywhere.
            have = set()
            for _, mbox, _ in boxes:
                with mbox.locked():
                    have.update(entry.msgid for entry in mbox.entries)
            copied = skipped = 0
            for row, mbox, validity in boxes:
                done, passed = _copyFolder(conn, userid, row, mbox, validity, have)
                copied += done
                skipped += passed
            report.user(userid, copied, skipped)
    finally:
        conn.close()
        store.close()
    return report


def _copyFolder(conn, userid, folder, mbox, validity, have):
    """
    Copy one folder's messages (in UID order, with their flags) from the
    database to its spool file: an empty file takes the database's
    UIDVALIDITY and the messages their UIDs; in a file with mail they get
    the file's next UIDs.

    @return: how many were copied, and how many were there already.
    """
    from twisted_mail.stores.postgres import sql as pgsql

    with mbox.locked():
        # The database's UIDs hold only under its UIDVALIDITY: in a file that
        # has mail (and its own UIDVALIDITY) the messages get the next UIDs,
        # in order, or they would be taken for another program's copies.
        keepUids = not mbox.entries
        if keepUids and mbox.uidValidity != validity:
            mbox.uidValidity = validity
            mbox.uidNext = 1
            mbox._saveUids(sync=True)
    copied = skipped = 0
    where, params = pgsql.inFolder(folder)
    last = 0
    cur = conn.cursor(binary=True)
    while True:
        rows = cur.execute(
            "SELECT id, pubid, arrived, envelope, spoolhead, body, uid, flags"
            " FROM messages WHERE userid = %s AND " + where + " AND uid > %s"
            " ORDER BY uid LIMIT 500", [userid] + params + [last]).fetchall()
        if not rows:
            break
        records, flags, uids, size = [], [], [], 0
        for serial, pubid, arrived, envelope, head, body, uid, found in rows:
            last = uid
            msgid = pgsql.publicId(serial, pubid)
            if msgid in have:
                skipped += 1
                continue
            if head is None:
                head = defaultHead(envelope, arrived, msgid)
            records.append([bytes(head), quoteFrom(bytes(body)), b"\n"])
            flags.append(frozenset(found))
            uids.append(uid)
            size += len(body)
            if size >= BATCH_BYTES:
                mbox.append(records, flags, uids if keepUids else None)
                copied += len(records)
                records, flags, uids, size = [], [], [], 0
        if records:
            mbox.append(records, flags, uids if keepUids else None)
            copied += len(records)
    return copied, skipped


def main(argv=None, stdout=sys.stdout, stderr=sys.stderr):
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        stderr.write("{}\nsimplemail-migrate: {}\n".format(options.synopsis, e))
        return 2
    from twisted_mail.stores.postgres import sql as pgsql

    if pgsql.psycopg is None:
        stderr.write("simplemail-migrate: needs psycopg: pip install -e '.[postgresql]'\n")
        return 1
    move = toDatabase if options["direction"] == "to-database" else toSpool
    try:
        report = move(options["spool"], options["database"], stdout)
    except pgsql.DatabaseUnavailable as e:
        stderr.write("simplemail-migrate: cannot use database: {}\n".format(e))
        return 1
    except pgsql.psycopg.Error as e:
        stderr.write("simplemail-migrate: database error: {}\n".format(pgsql._oneLine(e)))
        return 1
    except (OSError, errors.MailError) as e:
        stderr.write("simplemail-migrate: {}\n".format(
            getattr(e, "strerror", None) or e))
        return 1
    stdout.write("{} messages copied, {} already there{}\n".format(
        report.copied, report.skipped,
        ", {} not byte for byte".format(report.inexact) if report.inexact else ""))
    return 0


def run():
    sys.exit(main())

