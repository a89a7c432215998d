"""
A message as rows of the spool's search index
(L{twisted_mail.stores.spool.index}): what L{prepareRow} makes of its
summary and search document, where the parsing is done (a parsing process,
during a large build), the summary read back from its row, and the rowids
that are the index's newest-first order (L{orderKey}, L{_OrderKeys}).
"""

import datetime
import json

from twisted_mail.mail import query as Q
from twisted_mail.mail.mime import MessageSummary
from twisted_mail.stores.spool.indexquery import (
    _EXTRA_FIELDS,
    _SHORT_FIELDS,
    _WORD_FIELDS,
    fieldMark,
    fieldWord,
    gramText,
)

#: L{orderKey}: the arrival time is shifted by this many bits, leaving room
#: for that many messages of one second (65,536; more go after the rest,
#: see L{_OrderKeys}); arrival times are clamped to +/- 2 ** _ARRIVED_BITS
#: seconds (some 4,000 years around 1970).  Not more: FTS5 keeps each
#: list's rowids as varint differences, and minutes apart at 24 bits were
#: 5 bytes where 16 bits make 4 (schema 7; measured at 20,000 messages:
#: index -5 %, FTS5 insert -15 %, an AND's walk -10 %).
_SEQUENCE_BITS = 16
_ARRIVED_BITS = 37

#: The fields of C{text} (the others, L{_EXTRA_FIELDS}, are C{extra}'s), in
#: its column order.  The body first: FTS5 marks each position list's
#: column but the first's, and most of the index is body words (schema 7;
#: measured at 20,000 messages: index -8 %, FTS5 insert -15 %).
_TEXT_FIELDS = ("body", "from", "to", "cc", "subject", "attachment")


#: The fields of a summary kept as its JSON list, in order (uid, flags and
#: folder are columns of their own).
_STORED = tuple(f for f in MessageSummary.FIELDS if f not in ("uid", "flags", "folder"))
assert MessageSummary.FIELDS[:len(_STORED)] == _STORED == (
    "id", "size", "arrived", "sender", "to", "subject", "date", "snippet", "attachments")


def _summaryText(summary):
    """
    A summary as the index keeps it (but its UID, flags and folder): its
    fields after a NUL, separated by NULs (read back by a split, a
    fifth of a JSON parse's cost: a search reads one per result), or a
    JSON list when a field would not come back the same that way.
    """
    values = [getattr(summary, k) for k in _STORED]
    if all(type(v) is _STORED_TYPES[i] and (type(v) is int or "\x00" not in v)
           for i, v in enumerate(values)):
        return "\x00" + "\x00".join(map(str, values))
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


#: The types of L{_STORED}'s fields that L{_summaryText} separates by NULs.
_STORED_TYPES = tuple(int if f in ("size", "arrived", "attachments") else str for f in _STORED)


def prepareRow(summary, doc):
    """
    What L{SearchDatabase.update} stores of a message's summary and
    L{SearchDocument} but its UID, flags and folder: C{(arrived day, sent
    day, attachments, summary text, headers JSON, the words of the fields
    C{words} keeps (one string, a word as often as the message has it),
    the token text of each of L{_TEXT_FIELDS} and the marked words of
    L{_SHORT_FIELDS} (C{marks}), and of L{_EXTRA_FIELDS}, and its C{grams}
    tokens (L{gramText}))}.  (Made where the message is parsed: a parsing
    process, during a large build, sends it back as it is: pickle
    remembers every string it writes, so a set of a message's 260 or so
    words cost 64 microseconds there and back, one string 2.)
    """
    fields = doc.fields
    texts = [fields[f] for f in _TEXT_FIELDS]
    # Each short field's words with its mark (C{marks}) and as
    # L{fieldWord}s (C{words}): one replace each, no Python step a word (a
    # token text's words are one space apart, L{Q.tokenText}).
    marks, words = [], [fields[f] for f in _WORD_FIELDS]
    for field, mark, wordPrefix in _SHORT:
        text = fields[field]
        if text:
            marks.append(mark + text.replace(" ", " " + mark))
            words.append(wordPrefix + text.replace(" ", " " + wordPrefix))
    return (
        _ordinal(Q.arrivedDay(summary.arrived)),
        _ordinal(doc.sentDay or datetime.date.fromisoformat(summary.date[:10])),
        doc.attachments,
        _summaryText(summary),
        json.dumps(doc.headers, ensure_ascii=False),
        " ".join(words),
        tuple(texts) + (" ".join(marks),),
        tuple([fields[f] for f in _EXTRA_FIELDS]),
        gramText(texts))


#: Each of L{_SHORT_FIELDS} with its L{fieldMark} and L{fieldWord}'s
#: prefix.
_SHORT = tuple((f, fieldMark(f), fieldWord(f, "")) for f in _SHORT_FIELDS)


def summaryFromRow(text, uid, flags, folder):
    """
    The L{MessageSummary} of what L{_summaryText} made and its UID, flags
    (their text, or a set) and folder.
    """
    if type(flags) is str:
        flags = flags.split()
    if text[:1] == "\x00":
        msgid, size, arrived, sender, to, subject, date, snippet, attachments = \
            text[1:].split("\x00")
        return MessageSummary(msgid, int(size), int(arrived), sender, to, subject, date,
                              snippet, int(attachments), uid, flags, folder)
    return MessageSummary(*json.loads(text), uid, flags, folder)


def _flagsText(flags):
    return " " + " ".join(sorted(flags)) + " "


def _ordinal(day):
    return day.toordinal() if day is not None else 0


def orderKey(arrived, sequence=0):
    """
    The rowid of a message arrived at C{arrived} (POSIX seconds), the
    C{sequence}th indexed of that second: ascending rowids are the newest
    first order (FTS5 walks its lists forwards faster than backwards).
    """
    limit = 2 ** _ARRIVED_BITS
    arrived = min(max(int(arrived), -limit), limit - 1)
    return ((limit - 1 - arrived) << _SEQUENCE_BITS) + (1 << _SEQUENCE_BITS) - 1 - sequence


class _OrderKeys:
    """
    Hands out the rowids (L{orderKey}) of the messages indexed in one
    transaction.
    """

    def __init__(self, db):
        self._db = db
        self._next = {}
        self._overflow = None
        self._lowest = 2 ** 62

    def sameSecond(self, rowid, arrived):
        return rowid >> _SEQUENCE_BITS == orderKey(arrived) >> _SEQUENCE_BITS

    def next(self, arrived):
        # A second's first message takes the top of its range, each next
        # one the key below.
        base = orderKey(arrived)
        n = self._next.get(base)
        if n is None:
            (bottom,) = self._db.execute(
                "SELECT min(rowid) FROM msg WHERE rowid BETWEEN ? AND ?",
                (base - (1 << _SEQUENCE_BITS) + 1, base)).fetchone()
            n = base if bottom is None else bottom - 1
        if n >> _SEQUENCE_BITS != base >> _SEQUENCE_BITS:
            # 65,536 messages of one second: newer than all the others.
            if self._overflow is None:
                (bottom,) = self._db.execute("SELECT min(rowid) FROM msg").fetchone()
                self._overflow = min(self._lowest if bottom is None else bottom, self._lowest)
            self._overflow -= 1
            return self._overflow
        self._next[base] = n - 1
        self._lowest = min(self._lowest, n)
        return n


def _first(row):
    return row[0]
