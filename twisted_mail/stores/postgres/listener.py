"""
The PostgreSQL store's notification thread (L{listen}): it C{LISTEN}s for
other servers' deliveries (C{NOTIFY simplemail}) and changes (C{NOTIFY
simplemail_changes}), turns those of users someone here subscribed to or
watches into announcements on the reactor thread, and after a lost
connection catches up from the last delivery's id and the change log
(docs/postgresql.rst, "New mail across servers").
"""

import itertools
import time

from twisted.logger import Logger

from twisted_mail.mail.model import INBOX, MailEvent
from twisted_mail.stores.postgres.folders import announceChanges
from twisted_mail.stores.postgres.sql import (
    CHANGES_CHANNEL,
    CHANNEL,
    _SUMMARY_COLUMNS,
    DatabaseUnavailable,
    _oneLine,
    _parsePayload,
    _summary,
    changesSince,
    connect,
    psycopg,
    splitChange,
    trimChanges,
)

log = Logger()

#: How long the notification thread waits for one before looking whether it
#: should stop, in seconds.
_LISTEN_POLL = 0.5

#: How often the notification thread forgets the change log's old rows
#: (L{twisted_mail.stores.postgres.sql.CHANGES_KEPT}), in seconds.
_TRIM_INTERVAL = 3600.0


def listen(store):
    """
    In the notification thread: C{LISTEN}, and turn each notification of
    another process's delivery to a subscribed user into summaries for
    the reactor thread, and each change notification into watchers'
    events.  A lost connection is reconnected; mail stored meanwhile is
    caught up from the last id seen, and changes from the change log
    (C{changes}) after the last one heard of.
    """
    delay = 0.1
    last = None
    # The change log's row id of the last change heard of.
    lastChange = None
    trimmed = float("-inf")  # at the first connection, then hourly
    while not store._stopListening.is_set():
        try:
            conn = connect(store.url, "simplemail-listen")
        except DatabaseUnavailable as e:
            log.warn("notifications: database unavailable: {why}", why=str(e))
            store._stopListening.wait(delay)
            delay = min(delay * 2, 2.0)
            continue
        try:
            conn.execute("LISTEN " + CHANNEL)
            conn.execute("LISTEN " + CHANGES_CHANNEL)
            delay = 0.1
            if last is None:
                last = conn.execute("SELECT coalesce(max(id), 0) FROM messages"
                                    ).fetchone()[0]
            else:
                last = _catchUp(store, conn, last)
            # The changes the catch-up announced: their notifications,
            # sent after LISTEN and before it, are not announced again.
            caughtUp = set()
            if lastChange is None:
                lastChange = conn.execute("SELECT coalesce(max(id), 0) FROM changes"
                                          ).fetchone()[0]
            else:
                # Flag changes, moves, expunges and folder changes
                # notified while we were away (those committed then
                # with a smaller id than one heard of before are not
                # seen: as for deliveries, above).
                missed = changesSince(conn, lastChange)
                if missed:
                    lastChange = missed[-1][0]
                    caughtUp = {serial for serial, _ in missed}
                    announceChanges(store, conn, [payload for _, payload in missed])
            store.listening.set()
            # Rows up to here are announced (or were not wanted): a
            # notification of one of them, sent after LISTEN and before
            # the catch-up, is not announced again.
            floor = last
            while not store._stopListening.is_set():
                wanted = []
                changes = []
                # Wait for a notification, then take what else has come
                # without waiting.  Never leave a notifies() generator
                # early: it would drop the rest of the packet it was
                # reading (notifications sent together arrive together:
                # a flag change, a move and a folder's creation were
                # lost so).  stop_after ends it after the packet.
                for notify in itertools.chain(
                        conn.notifies(timeout=_LISTEN_POLL, stop_after=1),
                        conn.notifies(timeout=0)):
                    if notify.channel == CHANGES_CHANNEL:
                        serial, payload = splitChange(notify.payload)
                        if serial is not None:
                            if serial in caughtUp:
                                continue
                            lastChange = max(lastChange, serial)
                        changes.append(payload)
                        continue
                    origin, pairs = _parsePayload(notify.payload)
                    if origin == store.origin:
                        last = max([last] + [s for _, s in pairs])
                        continue
                    wanted.extend(pairs)
                if changes:
                    announceChanges(store, conn, changes)
                if wanted:
                    last = max([last] + [s for _, s in wanted])
                    subscribed = store._subscribed
                    serials = [s for u, s in wanted if u in subscribed and s > floor]
                    if serials:
                        _fetchAndAnnounce(store, conn, serials)
                if time.monotonic() - trimmed > _TRIM_INTERVAL:
                    trimChanges(conn)
                    trimmed = time.monotonic()
        except psycopg.Error as e:
            if not store._stopListening.is_set():
                log.warn("notifications: connection lost: {why}", why=_oneLine(e))
                store._stopListening.wait(delay)
        except Exception:
            log.failure("notifications: unexpected error")
            store._stopListening.wait(1.0)
        finally:
            try:
                conn.close()
            except Exception:
                pass


def _catchUp(store, conn, last):
    """
    After a reconnection: announce what subscribed users got since row
    id C{last}, which may have been notified while we were away.
    """
    subscribed = sorted(store._subscribed)
    if subscribed:
        rows = conn.execute(
            "SELECT id FROM messages WHERE id > %s AND userid = ANY(%s)",
            [last, subscribed]).fetchall()
        with store._ownLock:
            serials = [r for (r,) in rows if r not in store._ownSet]
        if serials:
            _fetchAndAnnounce(store, conn, serials)
    return conn.execute("SELECT coalesce(max(id), %s) FROM messages",
                        [last]).fetchone()[0]

def _fetchAndAnnounce(store, conn, serials):
    rows = conn.execute(
        "SELECT userid, " + _SUMMARY_COLUMNS + " FROM messages WHERE id = ANY(%s)"
        " ORDER BY id", [serials]).fetchall()
    byUser = {}
    for row in rows:
        byUser.setdefault(row[0], []).append(_summary(row[1:]))
    for userid, summaries in byUser.items():
        store._reactor.callFromThread(store._announce, userid, summaries)
        store._reactor.callFromThread(store._announceEvents, userid, [
            MailEvent("message", INBOX, summary=s) for s in summaries])
