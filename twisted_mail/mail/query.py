"""
Search queries: the one query language of MAILBOX.md ("Search"), its parser
and the tree every store's engine (and IMAP SEARCH) works on, with a pure
reference evaluator.  Pure values and functions; no Twisted.

The language
============

A query is words and clauses separated by white space, all of which must
match::

    word   "a phrase"   from:alice   to:bob   cc:carol   subject:lunch
    body:agenda   folder:Archive/2026   is:unread  is:read  is:flagged
    is:answered   has:attachment   before:2026-12-01   after:2026-11-30
    on:2026-12-04   larger:10k   smaller:2M   -word   -from:spam

A clause's value may be quoted (C{subject:"weekly report"},
C{folder:"My Mail"}); a leading C{-} negates a word, phrase or clause.
Words match decoded text (RFC 2047 headers, quoted-printable and base64
bodies, HTML as text, attachment file names), case- and
accent-insensitively, as whole words or prefixes: C{meet} finds
"Meeting".  A bare word or phrase looks in From, To, Cc, Subject, the body
and attachment names.  Text is cut into words at anything that is not a
letter or digit, so C{e-mail} and C{10:30} are the phrases
C{"e mail"} and C{"10 30"}; a phrase matches its words in a row, the last
one as a prefix.  Dates are days in UTC of the arrival time (IMAP's
INTERNALDATE): C{before:D} is before that day, C{after:D} after it (not on
it), C{on:D} that day.  Sizes count octets with CRLF line ends (POP3's and
IMAP's RFC822.SIZE); C{k} is 1024, C{M} 1024*1024; C{larger} and
C{smaller} are strict, as in IMAP.  A blank query matches every message.

Malformed queries raise L{errors.InvalidQuery} with a one-line reason:
more than L{MAX_QUERY_LENGTH} characters or L{MAX_TERMS} terms, unbalanced
quotes, a word with no letter or digit (C{*}, C{^}, a lone C{-}), an unknown
or empty key (C{foo:bar}, C{from:}), a date that is not a day
(C{2026-02-30}), a size that is not a count (C{larger:1e999}), a folder
name outside the rules.  FTS5's operators have no power here: C{NEAR},
C{AND}, C{OR}, C{NOT} are ordinary words.

The tree (what the IMAP door builds from RFC 3501 SEARCH keys)
==============================================================

Immutable, hashable nodes that compare by value:

  - L{All}: every message (IMAP C{ALL}; a blank query).
  - L{And}C{(terms)}, L{Or}C{(terms)}, L{Not}C{(term)}: the logic (IMAP's
    implicit AND, C{OR a b}, C{NOT a}).
  - L{Text}C{(field, text, substring=False)}: words of C{text} in a field.
    C{field} is one of L{TEXT_FIELDS}: C{"text"} (From, To, Cc, Subject,
    body, attachment names: the bare word), C{"from"}, C{"to"}, C{"cc"},
    C{"bcc"}, C{"subject"}, C{"body"}, C{"attachment"} (file names),
    C{"headers"} (every header, names and values: with C{"body"}, IMAP
    C{TEXT}).  Word matching as above; with C{substring=True}, C{text}'s
    words in a row anywhere, inside words too (RFC 3501's "contains":
    C{BODY ello} finds "hello"), still case- and accent-insensitive.
  - L{Header}C{(name, text)}: IMAP C{HEADER name text}: the decoded value of
    a header of that name contains C{text} (as C{substring=True}); an empty
    C{text} matches any message that has the header.
  - L{Folder}C{(name)}: the message is in that folder (canonical name).
  - L{Flag}C{(flag)}: it carries a flag or keyword (C{"\\Seen"},
    C{"$Forwarded"}; IMAP C{SEEN}, C{KEYWORD k}...; C{UNSEEN} is
    C{Not(Flag("\\Seen"))}).  C{\\Recent} is a session's: the IMAP door
    turns C{RECENT}/C{NEW}/C{OLD} into L{Ids}.
  - L{HasAttachment}C{()}: it has at least one attachment.
  - L{Date}C{(field, op, day)}: C{field} C{"arrived"} (IMAP C{BEFORE},
    C{ON}, C{SINCE}) or C{"sent"} (the Date header's own day: C{SENTBEFORE},
    C{SENTON}, C{SENTSINCE}); C{op} C{"before"} (strictly before C{day}),
    C{"on"} or C{"since"} (on or after C{day}); C{day} a
    L{datetime.date}.  C{after:D} is C{Date("arrived", "since", D + 1)}.
  - L{Size}C{(op, octets)}: C{"larger"} or C{"smaller"} than C{octets}.
  - L{Ids}C{(ids)}: the message's id is in a frozenset of ids (sequence and
    UID sets, resolved by the IMAP door).

L{matches} is the reference evaluator: what a scan of the mailbox finds.
The memory store searches with it, and every store's search must equal it.
"""

import datetime
import re
import unicodedata

from twisted_mail import errors
from twisted_mail.mail import model
from twisted_mail.mail.dates import parseDate
from twisted_mail.wire import escapeControls

#: The longest query, in characters.
MAX_QUERY_LENGTH = 2000

#: The most words and clauses in one query.
MAX_TERMS = 50

#: The fields a L{Text} node may name.
TEXT_FIELDS = frozenset(
    ["text", "from", "to", "cc", "bcc", "subject", "body", "attachment", "headers"])

#: The fields a bare word looks in.
BARE_FIELDS = ("from", "to", "cc", "subject", "body", "attachment")

_TOKEN = re.compile(r"[^\W_]+")
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_SIZE = re.compile(r"(\d{1,15})([kKmM]?)\Z")
_KEY = re.compile(r"([A-Za-z]+):")


# -- normalising text: what both the evaluator and the indexes compare


def fold(text):
    """
    C{text} with case and accents removed (NFKD, combining marks dropped,
    case folded): C{"Ré"} and C{"RE"} are both C{"re"}.
    """
    if text.isascii():
        return text.lower()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).casefold()


def _combiningMarks():
    # A character class of the combining marks of the Basic Multilingual
    # Plane (where the accents of the world's scripts live), made once.
    ranges = []
    for code in range(0x300, 0x10000):
        if unicodedata.combining(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return re.compile("[{}]+".format("".join(
        "{}-{}".format(re.escape(chr(a)), re.escape(chr(b))) for a, b in ranges)))


_COMBINING = _combiningMarks()


def tokens(text):
    """
    The words of C{text}, folded: runs of letters and digits.

    @rtype: L{list} of L{str}
    """
    return _TOKEN.findall(fold(text))


def tokenText(text):
    """
    The words of C{text}, folded, joined by single spaces: the form every
    index stores and L{Text} nodes are matched against.
    """
    # The same as " ".join(tokens(text)), in about half the time (a
    # message's body is most of an index's build): ASCII punctuation made
    # spaces by a table, split at white space (never a letter or digit),
    # and only a piece holding other punctuation cut by the expression.
    if not text:
        return ""
    folded = fold(text)
    if folded.isascii():
        return b" ".join(folded.encode("ascii").translate(_ASCII_SPACES).split()).decode("ascii")
    words = folded.translate(_PUNCTUATION_SPACES).split()
    for word in words:
        if not word.isalnum():
            return " ".join([piece for w in words for piece in (
                (w,) if w.isalnum() else _TOKEN.findall(w))])
    return " ".join(words)


_ASCII_SPACES = bytes(c if c < 128 and chr(c).isalnum() else 32 for c in range(256))
_PUNCTUATION_SPACES = {c: " " for c in range(128) if not chr(c).isalnum()}


# -- the tree


class Query:
    """
    A node of a query tree (see the module docstring).
    """

    __slots__ = ()

    def _key(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__,) + self._key())

    def __repr__(self):
        return "{}({})".format(
            type(self).__name__, ", ".join(repr(v) for v in self._key()))

    def __setattr__(self, name, value):
        raise AttributeError("query nodes are immutable")

    def _set(self, **values):
        for name, value in values.items():
            object.__setattr__(self, name, value)


class All(Query):
    """
    Every message.
    """

    __slots__ = ()


class And(Query):
    """
    Every term matches.
    """

    __slots__ = ("terms",)

    def __init__(self, terms):
        self._set(terms=tuple(terms))


class Or(Query):
    """
    Some term matches.
    """

    __slots__ = ("terms",)

    def __init__(self, terms):
        self._set(terms=tuple(terms))


class Not(Query):
    """
    The term does not match.
    """

    __slots__ = ("term",)

    def __init__(self, term):
        self._set(term=term)


class Text(Query):
    """
    Words of C{text} in C{field}; C{words} is C{text} as L{tokens}.
    """

    __slots__ = ("field", "text", "substring")

    def __init__(self, field, text, substring=False):
        if field not in TEXT_FIELDS:
            raise ValueError("unknown text field {!r}".format(field))
        self._set(field=field, text=text, substring=bool(substring))

    @property
    def words(self):
        return tokens(self.text)


class Header(Query):
    """
    A header named C{name} whose decoded value contains C{text}.
    """

    __slots__ = ("name", "text")

    def __init__(self, name, text):
        self._set(name=name.lower(), text=text)


class Folder(Query):
    """
    In folder C{name} (canonical).
    """

    __slots__ = ("name",)

    def __init__(self, name):
        self._set(name=model.normalizeFolderName(name))


class Flag(Query):
    """
    Carries C{flag}.
    """

    __slots__ = ("flag",)

    def __init__(self, flag):
        self._set(flag=flag)


class HasAttachment(Query):
    """
    Has an attachment.
    """

    __slots__ = ()


class Date(Query):
    """
    C{field} (C{"arrived"} or C{"sent"}) is C{op} (C{"before"}, C{"on"},
    C{"since"}) C{day}.
    """

    __slots__ = ("field", "op", "day")

    def __init__(self, field, op, day):
        if field not in ("arrived", "sent") or op not in ("before", "on", "since"):
            raise ValueError("bad date test {!r} {!r}".format(field, op))
        self._set(field=field, op=op, day=day)


class Size(Query):
    """
    Larger or smaller than C{octets}.
    """

    __slots__ = ("op", "octets")

    def __init__(self, op, octets):
        if op not in ("larger", "smaller"):
            raise ValueError("bad size test {!r}".format(op))
        self._set(op=op, octets=int(octets))


class Ids(Query):
    """
    The message's id is one of C{ids}.
    """

    __slots__ = ("ids",)

    def __init__(self, ids):
        self._set(ids=frozenset(ids))


# -- the parser


_FLAGS = {
    "unread": Not(Flag(model.SEEN)),
    "read": Flag(model.SEEN),
    "seen": Flag(model.SEEN),
    "flagged": Flag(model.FLAGGED),
    "answered": Flag(model.ANSWERED),
}

_FIELD_KEYS = ("from", "to", "cc", "bcc", "subject", "body")
_KEYS = _FIELD_KEYS + ("folder", "is", "has", "before", "after", "on", "larger",
                       "smaller")


def _shown(text, limit=40):
    return escapeControls(text, keep="", limit=limit)


def parseQuery(text):
    """
    Parse a query of the language above.

    @type text: L{str}
    @rtype: L{Query} (L{All} for a blank query, the one term of a one-term
        query, else an L{And} of the terms in order).
    @raise errors.InvalidQuery: with a one-line reason.
    """
    if not isinstance(text, str):
        raise errors.InvalidQuery("the query is not text")
    if len(text) > MAX_QUERY_LENGTH:
        raise errors.InvalidQuery(
            "the query is longer than {} characters".format(MAX_QUERY_LENGTH))
    if any(unicodedata.category(c) == "Cc" and not c.isspace() for c in text):
        raise errors.InvalidQuery("the query holds a control character")
    terms = []
    for negated, key, value, quoted in _lex(text):
        if len(terms) == MAX_TERMS:
            raise errors.InvalidQuery(
                "the query has more than {} words and clauses".format(MAX_TERMS))
        term = _term(key, value, quoted)
        terms.append(Not(term) if negated else term)
    if not terms:
        return All()
    if len(terms) == 1:
        return terms[0]
    return And(terms)


def _lex(text):
    """
    Cut a query into C{(negated, key, value, quoted)}, C{key} L{None} for a
    bare word or phrase.
    """
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = False
        if text[i] == "-":
            negated = True
            i += 1
            if i == n or text[i].isspace():
                raise errors.InvalidQuery("a '-' must be followed by a word or clause")
            if text[i] == "-":
                raise errors.InvalidQuery("'--' is not a negation; write one '-'")
        key = None
        match = _KEY.match(text, i)
        if match:
            key = match.group(1).lower()
            if key not in _KEYS:
                raise errors.InvalidQuery("unknown key '{}:' (known: {})".format(
                    _shown(match.group(1)), ", ".join(k + ":" for k in _KEYS)))
            i = match.end()
            if i == n or text[i].isspace():
                raise errors.InvalidQuery("'{}:' needs a value".format(key))
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end == -1:
                raise errors.InvalidQuery("unbalanced quote")
            value = text[i + 1:end]
            i = end + 1
            if i < n and not text[i].isspace():
                raise errors.InvalidQuery("a closing quote must be followed by a space")
            yield negated, key, value, True
            continue
        start = i
        while i < n and not text[i].isspace():
            if text[i] == '"':
                raise errors.InvalidQuery("a quote inside a word: quote whole words")
            i += 1
        yield negated, key, text[start:i], False


def _words(value, what):
    if not tokens(value):
        raise errors.InvalidQuery(
            "{} needs a letter or digit: '{}'".format(what, _shown(value)))


def _term(key, value, quoted):
    if key is None:
        _words(value, "a search word")
        return Text("text", value)
    if key in _FIELD_KEYS:
        _words(value, "'{}:'".format(key))
        return Text(key, value)
    if key == "folder":
        try:
            return Folder(value)
        except errors.InvalidFolderName as e:
            raise errors.InvalidQuery("folder: {}".format(e))
    if key == "is":
        term = _FLAGS.get(value.lower())
        if term is None:
            raise errors.InvalidQuery("is: takes unread, read, flagged or answered, "
                                      "not '{}'".format(_shown(value)))
        return term
    if key == "has":
        if value.lower() not in ("attachment", "attachments"):
            raise errors.InvalidQuery(
                "has: takes attachment, not '{}'".format(_shown(value)))
        return HasAttachment()
    if key in ("before", "after", "on"):
        day = parseDay(value)
        if key == "before":
            return Date("arrived", "before", day)
        if key == "on":
            return Date("arrived", "on", day)
        try:
            return Date("arrived", "since", day + datetime.timedelta(days=1))
        except OverflowError:
            raise errors.InvalidQuery("no day comes after {}".format(value))
    return Size(key, parseSize(value))


def parseDay(value):
    """
    A C{YYYY-MM-DD} day, or L{errors.InvalidQuery}.

    @rtype: L{datetime.date}
    """
    match = _DAY.match(value)
    if match is None:
        raise errors.InvalidQuery(
            "a date is YYYY-MM-DD, not '{}'".format(_shown(value)))
    try:
        return datetime.date(*(int(g) for g in match.groups()))
    except ValueError:
        raise errors.InvalidQuery("no such day: {}".format(_shown(value)))


def parseSize(value):
    """
    A size C{N}, C{Nk} or C{NM} in octets, or L{errors.InvalidQuery}.
    """
    match = _SIZE.match(value)
    if match is None:
        raise errors.InvalidQuery(
            "a size is a number of octets with an optional k or M, not '{}'".format(
                _shown(value)))
    unit = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * unit


# -- what a query's reader needs of a message


class SearchDocument:
    """
    The searchable text of one message, as L{tokenText} forms it: what an
    index stores and what L{matches} compares.

    @ivar fields: a L{dict} from each of C{from, to, cc, bcc, subject, body,
        attachment, headers} to its token text.
    @ivar headers: C{(lower-case name, decoded value)} pairs.
    @ivar sentDay: the Date header's day in its own time zone, a
        L{datetime.date}, or L{None}.
    @ivar attachments: the number of attachments.
    """

    __slots__ = ("fields", "headers", "sentDay", "attachments")

    def __init__(self, fields, headers, sentDay, attachments):
        self.fields = fields
        self.headers = headers
        self.sentDay = sentDay
        self.attachments = attachments


def document(parsed):
    """
    The L{SearchDocument} of a L{twisted_mail.mail.mime.ParsedMessage}.
    """
    values = {}
    headers = [(name.lower(), value) for name, value in parsed.headers]
    bcc = next((value for name, value in headers if name == "bcc"), "")
    # The text a reader sees: the plain part, or the HTML part as text
    # when there is none (multipart/alternative says the same twice).
    body = parsed.text
    values["from"] = tokenText(parsed.sender)
    values["to"] = tokenText(parsed.to)
    values["cc"] = tokenText(parsed.cc)
    values["bcc"] = tokenText(bcc)
    values["subject"] = tokenText(parsed.subject)
    values["body"] = tokenText(body)
    values["attachment"] = tokenText(" ".join(p.filename for p in parsed.parts))
    values["headers"] = tokenText("\n".join(
        name + " " + value for name, value in parsed.headers))
    return SearchDocument(values, headers, sentDay(parsed.date), len(parsed.parts))


def sentDay(value):
    """
    The day of a Date header in its own time zone (RFC 3501's SENTBEFORE
    and friends disregard time and zone), or L{None}.
    """
    if not value:
        return None
    try:
        parsed = parseDate(value)
        if parsed is None:
            return None
        return datetime.date(parsed[0], parsed[1], parsed[2])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def arrivedDay(seconds):
    """
    The UTC day of POSIX seconds.
    """
    try:
        return datetime.datetime.fromtimestamp(
            int(seconds), datetime.timezone.utc).date()
    except (ValueError, OverflowError, OSError, TypeError):
        return datetime.date(1970, 1, 1)


# -- the reference evaluator


def wordsMatch(words, text):
    """
    Whether the folded C{words} appear in a row in the token text C{text},
    all but the last whole, the last as a prefix.
    """
    if not words:
        return True
    have = text.split()
    last = len(words) - 1
    for i in range(len(have) - last):
        if all(have[i + j] == words[j] for j in range(last)) and \
                have[i + last].startswith(words[last]):
            return True
    return False


def substringMatch(words, text):
    """
    Whether the folded C{words}, joined by spaces, appear anywhere in the
    token text C{text}.
    """
    return " ".join(words) in text


def headerContains(headers, name, text):
    """
    Whether a header named C{name} (lower case) among C{headers} (C{(lower
    name, decoded value)} pairs) contains the words of C{text} in a row
    (L{substringMatch}); an empty C{text}: whether there is such a header.
    """
    words = tokens(text)
    return any(n == name and substringMatch(words, tokenText(value))
               for n, value in headers)


def matches(query, summary, parsed):
    """
    Whether a message matches a query: the reference every store's search
    must equal.

    @param summary: its L{twisted_mail.mail.mime.MessageSummary} (id,
        folder, flags, size, arrival time).
    @param parsed: its L{twisted_mail.mail.mime.ParsedMessage}, or the
        L{SearchDocument} made of it (cheaper when asked often).
    """
    if not isinstance(parsed, SearchDocument):
        parsed = document(parsed)
    return _eval(query, summary, parsed)


def _eval(query, summary, doc):
    kind = type(query)
    if kind is And:
        return all(_eval(t, summary, doc) for t in query.terms)
    if kind is Or:
        return any(_eval(t, summary, doc) for t in query.terms)
    if kind is Not:
        return not _eval(query.term, summary, doc)
    if kind is All:
        return True
    if kind is Text:
        words = query.words
        test = substringMatch if query.substring else wordsMatch
        fields = BARE_FIELDS if query.field == "text" else (query.field,)
        return any(test(words, doc.fields[f]) for f in fields)
    if kind is Header:
        return headerContains(doc.headers, query.name, query.text)
    if kind is Folder:
        return summary.folder == query.name
    if kind is Flag:
        return query.flag in summary.flags
    if kind is HasAttachment:
        return doc.attachments > 0
    if kind is Date:
        if query.field == "arrived":
            day = arrivedDay(summary.arrived)
        else:
            day = doc.sentDay
            if day is None:
                day = datetime.date.fromisoformat(summary.date[:10])
        if query.op == "before":
            return day < query.day
        if query.op == "on":
            return day == query.day
        return day >= query.day
    if kind is Size:
        if query.op == "larger":
            return summary.size > query.octets
        return summary.size < query.octets
    if kind is Ids:
        return summary.id in query.ids
    raise TypeError("not a query node: {!r}".format(query))


def highlightWords(query):
    """
    The folded words a query looks for (not those it negates), for showing
    them in a snippet.

    @rtype: L{list} of L{str}
    """
    found = []

    def walk(node, positive):
        kind = type(node)
        if kind in (And, Or):
            for term in node.terms:
                walk(term, positive)
        elif kind is Not:
            walk(node.term, not positive)
        elif kind is Text and positive:
            for word in node.words:
                if word not in found:
                    found.append(word)

    walk(query, True)
    return found
