"""
A query tree (L{twisted_mail.mail.query}) as what the spool's search index
(L{twisted_mail.stores.spool.index}) runs: an FTS5 expression for its
C{text} table and an SQL condition on its C{msg} table, with the same
answer as the reference evaluator, L{twisted_mail.mail.query.matches}.
"""

import json
import re

from twisted_mail.mail import query as Q

_COLUMNS = {
    "from": "from_", "to": "to_", "cc": "cc", "bcc": "bcc", "subject": "subject",
    "body": "body", "attachment": "attachment", "headers": "headers",
}
#: The fields of the C{extra} table (the others are C{text}'s).
_EXTRA_FIELDS = ("bcc", "headers")

#: The fields whose words C{words} keeps: those the query language's words
#: look in (a prefix in another field, which only the query tree can ask
#: for, is searched as a prefix).
_WORD_FIELDS = ("from", "to", "cc", "subject", "body", "attachment")

#: The short fields whose words C{words} also keeps each with its field
#: (L{fieldWord}), so that C{from:ann} stands for the words of From
#: headers only.
_SHORT_FIELDS = ("from", "to", "cc", "subject", "attachment")


#: L{fieldMark}'s letter of each short field.
_MARK_LETTERS = {"from": "f", "to": "t", "cc": "c", "subject": "s", "attachment": "a"}


def fieldMark(field):
    """
    What a word of a short field is prefixed with in C{text}'s C{marks}
    column, which holds every short field's words again so marked: a
    middle dot (U+00B7: a word character to FTS5's C{ascii} tokenizer,
    never one of a token text, so no word or typed prefix is ever a mark),
    then the field's letter.  C{from:ann} then looks up one list of
    exactly the From headers holding C{ann}, not every message with
    C{ann} anywhere checked for its column (measured at 20,000 messages:
    C{from:} + a word, 0.147 ms -> 0.063 ms).
    """
    return "\u00b7" + _MARK_LETTERS[field]


def fieldWord(field, word):
    """
    How C{words} keeps a word of a short field: after a mark no word has,
    so that it sorts before every plain word (and never in a plain
    prefix's range).
    """
    return "\x01" + field + "\x01" + word


#: The words a two-word phrase is looked up by in C{grams} when it starts
#: with one of them: the six commonest of English text (a fifth of its
#: words), whose lists are the longest to read positions in.  Each of them
#: and the word after it, in any field a bare word looks in, is kept as one
#: token, C{the\u00b7project} (Lucene's "common grams"; Dovecot's FTS has
#: no counterpart).  Changing them changes L{gramText}: a new schema.
COMMON_WORDS = ("the", "of", "and", "to", "a", "in")

#: A word of L{COMMON_WORDS} (after a space: the start of a word) and the
#: word after it.
_GRAM = re.compile(" ({})(?= ([^ ]+))".format("|".join(COMMON_WORDS)))


def gramText(texts):
    """
    The C{grams} tokens of a message: C{texts} are the token texts of its
    fields a bare word looks in (L{Q.BARE_FIELDS}, always in the same
    order: FTS5 deletes a message's tokens of C{grams} when told them
    again).  A pair is there as often as the field has it (C{grams} keeps
    a list of messages, not positions): made by the expression and joins
    alone, no Python step a pair (58 -> 45 microseconds a message of
    C{mailgen.py}'s mail, against 65 for a set of distinct pairs).
    """
    pairs = []
    for text in texts:
        if text:
            pairs += _GRAM.findall(" " + text)
    return " ".join(map("\u00b7".join, pairs))


_FTS_ONLY = "msg.rowid IN (SELECT rowid FROM {0} WHERE {0} MATCH ?)"


def _table(node):
    """
    The FTS5 table of a L{Q.Text} node's field.
    """
    return "extra" if node.field in _EXTRA_FIELDS else "text"


def _inText(node):
    """
    Whether a query node is a word term C{text}'s MATCH can answer.
    """
    return type(node) is Q.Text and not node.substring and bool(node.words) and \
        node.field not in _EXTRA_FIELDS and not _inGrams(node)


def _inGrams(node):
    """
    Whether a query node is a phrase C{grams} answers alone: two words in
    any field a bare word looks in, the first one of L{COMMON_WORDS} (the
    second, a prefix, may be any).
    """
    if type(node) is not Q.Text or node.substring or node.field != "text":
        return False
    words = node.words
    return len(words) == 2 and words[0] in COMMON_WORDS


def _matchGrams(node, expand=None):
    """
    The FTS5 expression of a phrase L{_inGrams}: the tokens of C{grams}
    that start with its pair (its last word a prefix, as everywhere); with
    C{expand} (see L{_matchText}), the pairs of the whole words the prefix
    stands for (a prefix's lists are merged into one, at 20,000 messages
    0.46 ms for a pair whose own list is read in 0.05).
    """
    first, last = node.words
    whole = expand(last, "text") if expand is not None else None
    if whole is None:
        return '"{}\u00b7{}"*'.format(first, last)
    if not whole:
        return '"{}\u00b7{}"'.format(first, last)
    return " OR ".join('"{}\u00b7{}"'.format(first, w) for w in whole)


def _phrase(words):
    return '"' + " ".join(words) + '"'


def _matchText(node, expand=None):
    """
    The FTS5 expression of a L{Q.Text} node: its words in a row, the last
    as a prefix, in its columns.  With C{expand} (prefix and field to
    whole words, or L{None}), the prefix becomes the whole words it stands
    for.
    """
    fields = Q.BARE_FIELDS if node.field == "text" else (node.field,)
    mark = ""
    if node.field == "text":
        columns = ""  # every column of C{text}: no filter
    elif node.field in _MARK_LETTERS:
        # The field's marked words (the marks column): no filter either.
        columns = ""
        mark = fieldMark(node.field)
    else:
        columns = "{" + " ".join(_COLUMNS[f] for f in fields) + "} : "
    words = [mark + w for w in node.words]
    whole = None
    if expand is not None and set(fields) <= set(_WORD_FIELDS):
        whole = expand(node.words[-1], node.field)
    if not whole:
        # None: too many; none at all: nothing matches, cheaply either way.
        return "{}{}*".format(columns, _phrase(words))
    return "{}({})".format(columns, " OR ".join(
        _phrase(words[:-1] + [mark + w]) for w in whole))


def _matchOf(terms, expand=None):
    """
    The FTS5 expression of the word terms of an AND (those with words, and
    their negations when at least one is positive), and the other terms.
    """
    positive, negative, rest = [], [], []
    for term in terms:
        if _inText(term):
            positive.append(_matchText(term, expand))
        elif type(term) is Q.Not and _inText(term.term):
            negative.append(term)
        else:
            rest.append(term)
    if len(positive) + len(negative) < 2 or not positive:
        return None, terms
    expression = " AND ".join("(" + p + ")" for p in positive)
    for term in negative:
        expression += " NOT (" + _matchText(term.term, expand) + ")"
    return expression, rest


def renameFolders(node, keys):
    """
    C{node} with each L{Q.Folder} naming the index's key of that folder
    (C{keys}: folder name to key), or a key no message has.
    """
    kind = type(node)
    if kind in (Q.And, Q.Or):
        return kind([renameFolders(t, keys) for t in node.terms])
    if kind is Q.Not:
        return Q.Not(renameFolders(node.term, keys))
    if kind is Q.Folder:
        return Q.Folder(keys.get(node.name, "none:" + node.name))
    return node


def splitQuery(node, expand=None):
    """
    A query tree as an FTS5 table and expression every match satisfies
    (or L{None}) and an SQL condition on C{msg} for the rest, with its
    parameters.

    @rtype: C{(str, str or None, str, list)}
    """
    kind = type(node)
    if _inText(node):
        return "text", _matchText(node, expand), "1", []
    if _inGrams(node):
        return "grams", _matchGrams(node, expand), "1", []
    if kind is Q.And and node.terms:
        table = "text"
        match, rest = _matchOf(node.terms, expand)
        if match is None:
            # One term drives: a word's, or else a common phrase's.
            drivers = [(i, t) for i, t in enumerate(node.terms) if _inText(t)]
            if not drivers:
                table = "grams"
                drivers = [(i, t) for i, t in enumerate(node.terms) if _inGrams(t)]
            if drivers:
                i, term = drivers[0]
                match = (_matchText if table == "text" else _matchGrams)(term, expand)
                rest = node.terms[:i] + node.terms[i + 1:]
        if match is not None:
            where, params = compileQuery(Q.And(rest), expand) if rest else ("1", [])
            return table, match, where, params
    where, params = compileQuery(node, expand)
    return "msg", None, where, params


def compileQuery(node, expand=None):
    """
    A query tree as an SQL condition on C{msg} and its parameters: the
    same answer as L{twisted_mail.mail.query.matches}.

    @param expand: gives the whole words a prefix stands for (see
        L{_matchText}).
    @rtype: C{(str, list)}
    """
    kind = type(node)
    if kind is Q.All:
        return "1", []
    if kind in (Q.And, Q.Or):
        if not node.terms:
            return ("1" if kind is Q.And else "0"), []
        parts, params = [], []
        terms = node.terms
        if kind is Q.And:
            match, terms = _matchOf(terms, expand)
            if match is not None:
                parts.append("(" + _FTS_ONLY.format("text") + ")")
                params.append(match)
        for term in terms:
            sql, p = compileQuery(term, expand)
            parts.append("(" + sql + ")")
            params.extend(p)
        return (" AND " if kind is Q.And else " OR ").join(parts), params
    if kind is Q.Not:
        sql, params = compileQuery(node.term, expand)
        return "NOT (" + sql + ")", params
    if _inGrams(node):
        return _FTS_ONLY.format("grams"), [_matchGrams(node, expand)]
    if kind is Q.Text and not node.substring and node.words:
        return _FTS_ONLY.format(_table(node)), [_matchText(node, expand)]
    if kind is Q.Text:
        fields = Q.BARE_FIELDS if node.field == "text" else (node.field,)
        columns = [_COLUMNS[f] for f in fields]
        words = node.words
        if not words:
            return "1", []
        if node.substring:
            needle = " ".join(words)
            return ("msg.rowid IN (SELECT rowid FROM {} WHERE {})".format(
                _table(node), " OR ".join("instr({}, ?) > 0".format(c) for c in columns)),
                [needle] * len(columns))
        return _FTS_ONLY.format(_table(node)), [_matchText(node, expand)]
    if kind is Q.Header:
        return "hdr(msg.headers, ?, ?)", [node.name, node.text]
    if kind is Q.Folder:
        return "folder = ?", [node.name]
    if kind is Q.Flag:
        return "instr(flags, ?) > 0", [" " + node.flag + " "]
    if kind is Q.HasAttachment:
        return "attachments > 0", []
    if kind is Q.Date:
        column = "arrivedday" if node.field == "arrived" else "sentday"
        op = {"before": "<", "on": "=", "since": ">="}[node.op]
        return "{} {} ?".format(column, op), [node.day.toordinal()]
    if kind is Q.Size:
        return "size {} ?".format(">" if node.op == "larger" else "<"), [
            min(node.octets, 2 ** 62)]
    if kind is Q.Ids:
        return "id IN (SELECT value FROM json_each(?))", [json.dumps(sorted(node.ids))]
    raise TypeError("not a query node: {!r}".format(node))
