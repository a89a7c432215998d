"""
Search in the PostgreSQL store (docs/search.rst): a C{tsvector} per
message with a GIN index, in table C{search_docs} beside C{messages}, and
the query tree of L{twisted_mail.mail.query} compiled to SQL.

Every word of a message is a lexeme of its field, C{'body:meeting'},
C{'from:alice'}: the text is folded and cut into words in Python
(L{twisted_mail.mail.query.tokenText}) exactly as the spool's index and
the reference evaluator do, so the three agree; C{tsquery} prefixes
(C{:*}) and phrases (C{<->}) do the matching.  Why C{tsvector} + GIN rather
than C{pg_trgm}: the language asks for whole words and prefixes, which a
GIN index over lexemes answers exactly and compactly; trigrams answer
substrings (IMAP's "contains"), which are rare and are answered here from
the folded text kept beside (C{fields}), unindexed.

Messages are indexed right after their delivery commits (the store's
C{_indexSoon}), and a search first indexes what is still pending, in the
database thread: a search always equals a scan.  A C{tsvector} holds at most 16,383 positions and 1 MB, so in a
message longer than that the last words lose their positions (a phrase
may match across them) or are left out; each word keeps 255 positions at
most.
"""

import datetime
import json

from twisted_mail.mail import query as Q
from twisted_mail.mail.mime import parseMessage

#: The schema this module adds (sql.SCHEMA's version 3).
SCHEMA = [
    # (A table left by a schema dropped without it would index other rows.)
    "DROP TABLE IF EXISTS search_docs",
    """CREATE TABLE search_docs (
        message bigint PRIMARY KEY REFERENCES messages ON DELETE CASCADE,
        userid text NOT NULL,
        doc tsvector NOT NULL,
        fields jsonb NOT NULL,
        sentday integer NOT NULL
    )""",
    "CREATE INDEX search_docs_doc ON search_docs USING gin (doc)",
    "CREATE INDEX search_docs_user ON search_docs (userid)",
]

#: Messages indexed per transaction.
BATCH = 200

_EPOCH = datetime.date(1970, 1, 1).toordinal()
_MAX_POSITION = 16383
_MAX_POSITIONS = 255
_MAX_LITERAL = 900 * 1024
_FIELDS = ("from", "to", "cc", "bcc", "subject", "body", "attachment", "headers")


def tsvectorLiteral(doc):
    """
    The C{tsvector} of a L{Q.SearchDocument}, as a literal: each word a
    lexeme C{'field:word'} with its positions.
    """
    positions = {}
    pos = 0
    for field in _FIELDS:
        for word in doc.fields[field].split():
            pos = min(pos + 1, _MAX_POSITION)
            found = positions.setdefault(field + ":" + word, [])
            if len(found) < _MAX_POSITIONS and (not found or found[-1] != pos):
                found.append(pos)
        pos = min(pos + 1, _MAX_POSITION)
    out = []
    size = 0
    for lexeme, where in positions.items():
        if len(lexeme.encode("utf-8")) > 2000:
            continue
        piece = "'{}':{}".format(lexeme, ",".join(map(str, where)))
        size += len(piece) + 1
        if size > _MAX_LITERAL:
            break
        out.append(piece)
    return " ".join(out)


def _tsquery(node):
    fields = Q.BARE_FIELDS if node.field == "text" else (node.field,)
    words = node.words
    alternatives = []
    for field in fields:
        lexemes = ["'{}:{}'".format(field, w) for w in words]
        lexemes[-1] += ":*"
        alternatives.append("(" + " <-> ".join(lexemes) + ")")
    return " | ".join(alternatives)


def _epochDay(day):
    return day.toordinal() - _EPOCH


def compileQuery(node, userid):
    """
    A query tree as an SQL condition on C{messages m} joined with
    C{search_docs s}, and its parameters (psycopg's C{%s}).
    """
    kind = type(node)
    if kind is Q.All:
        return "true", []
    if kind in (Q.And, Q.Or):
        if not node.terms:
            return ("true" if kind is Q.And else "false"), []
        parts, params = [], []
        for term in node.terms:
            sql, p = compileQuery(term, userid)
            parts.append("(" + sql + ")")
            params.extend(p)
        return (" AND " if kind is Q.And else " OR ").join(parts), params
    if kind is Q.Not:
        sql, params = compileQuery(node.term, userid)
        return "NOT (" + sql + ")", params
    if kind is Q.Text:
        if not node.words:
            return "true", []
        if not node.substring:
            return "s.doc @@ %s::tsquery", [_tsquery(node)]
        fields = Q.BARE_FIELDS if node.field == "text" else (node.field,)
        needle = " ".join(node.words)
        keys = ["headertext" if f == "headers" else f for f in fields]
        return (" OR ".join("strpos(s.fields->>%s, %s) > 0" for _ in keys),
                [p for key in keys for p in (key, needle)])
    if kind is Q.Header:
        return ("EXISTS (SELECT 1 FROM jsonb_array_elements(s.fields->'headers') h"
                " WHERE h->>0 = %s AND strpos(h->>1, %s) > 0)",
                [node.name, " ".join(Q.tokens(node.text))])
    if kind is Q.Folder:
        if node.name == "INBOX":
            return "m.folder IS NULL", []
        return ("m.folder IS NOT DISTINCT FROM (SELECT id FROM folders"
                " WHERE userid = %s AND name = %s)", [userid, node.name])
    if kind is Q.Flag:
        return "%s = ANY(m.flags)", [node.flag]
    if kind is Q.HasAttachment:
        return "m.attachments > 0", []
    if kind is Q.Date:
        column = "(m.arrived / 86400)" if node.field == "arrived" else "s.sentday"
        op = {"before": "<", "on": "=", "since": ">="}[node.op]
        return "{} {} %s".format(column, op), [_epochDay(node.day)]
    if kind is Q.Size:
        return "m.size {} %s".format(">" if node.op == "larger" else "<"), [
            min(node.octets, 2 ** 62)]
    if kind is Q.Ids:
        ids = sorted(node.ids)
        return ("(m.pubid = ANY(%s) OR (m.pubid IS NULL AND m.id::text = ANY(%s)))",
                [ids, ids])
    raise TypeError("not a query node: {!r}".format(node))


def indexPending(conn, userid):
    """
    Index the user's messages not indexed yet, in batches; deleted ones go
    with their rows.

    @return: how many were indexed.
    """
    done = 0
    while True:
        rows = conn.execute(
            "SELECT m.id, m.body, m.date, m.arrived FROM messages m"
            " LEFT JOIN search_docs s ON s.message = m.id"
            " WHERE m.userid = %s AND s.message IS NULL ORDER BY m.id LIMIT %s",
            (userid, BATCH)).fetchall()
        if not rows:
            return done
        values = []
        for serial, body, date, arrived in rows:
            doc = Q.document(parseMessage(bytes(body)))
            sent = doc.sentDay
            if sent is None:
                sent = Q.arrivedDay(arrived) if not date else datetime.date.fromisoformat(
                    date[:10])
            fields = dict(doc.fields)
            fields["headers"] = [[name, Q.tokenText(value)] for name, value in doc.headers]
            fields["headertext"] = doc.fields["headers"]
            values.append((serial, userid, tsvectorLiteral(doc), json.dumps(fields),
                           _epochDay(sent)))
        with conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO search_docs (message, userid, doc, fields, sentday)"
                    " VALUES (%s, %s, %s::tsvector, %s::jsonb, %s)"
                    " ON CONFLICT (message) DO NOTHING", values)
        done += len(rows)


def search(conn, userid, query, folder, start, limit, summary, columns):
    """
    In the database thread: index what is pending, then the page of
    matches, newest first.

    @param folder: the folder's row id, L{None} for INBOX, or C{False} for
        every folder.
    @param summary: makes a summary of a row of C{columns} and a folder name.
    @return: C{(total, summaries)}
    """
    indexPending(conn, userid)
    where, params = compileQuery(query, userid)
    scope, scopeParams = "", []
    if folder is None:
        scope = " AND m.folder IS NULL"
    elif folder is not False:
        scope, scopeParams = " AND m.folder = %s", [folder]
    base = (" FROM messages m JOIN search_docs s ON s.message = m.id"
            " LEFT JOIN folders f ON f.id = m.folder"
            " WHERE m.userid = %s" + scope + " AND (" + where + ")")
    args = [userid] + scopeParams + params
    total = conn.execute("SELECT count(*)" + base, args).fetchone()[0]
    sql = ("SELECT " + ", ".join("m." + c.strip() for c in columns.split(",")) +
           ", coalesce(f.name, 'INBOX')" + base + " ORDER BY m.arrived DESC, m.id DESC")
    if limit is not None:
        sql += " LIMIT %s"
        args = args + [limit]
    if start:
        sql += " OFFSET %s"
        args = args + [start]
    return total, [summary(row[:-1], row[-1]) for row in conn.execute(sql, args)]
