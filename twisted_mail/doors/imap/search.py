"""
SEARCH (RFC 3501 6.4.4): RFC 3501's search keys compiled to the one query
tree of L{twisted_mail.mail.query}, run by the store's search engine
(L{IMailStore.search}) when a key looks at the text, or over the session's
summaries when every key is about flags, sizes, dates and numbers (which
the session knows already, as it shows them).
"""

import datetime

from twisted.internet import defer

from twisted_mail import errors
from twisted_mail.mail import query as Q
from twisted_mail.mail.mime import parseMessage
from twisted_mail.doors.imap.parser import (
    Atom, BadCommand, SequenceSet, astring, date, number)

#: NOT and OR nested deeper than this are refused (BAD).
MAX_DEPTH = 100

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}
_TEXT_KEYS = {"BCC": "bcc", "BODY": "body", "CC": "cc", "FROM": "from",
              "SUBJECT": "subject", "TO": "to"}
_DATE_KEYS = {"BEFORE": ("arrived", "before"), "ON": ("arrived", "on"),
              "SINCE": ("arrived", "since"), "SENTBEFORE": ("sent", "before"),
              "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since")}
_CHARSETS = frozenset(["UTF-8", "US-ASCII"])


class UnknownCharset(Exception):
    """
    SEARCH CHARSET names a charset not served: NO [BADCHARSET].
    """


def _text(token):
    return astring(token).decode("utf-8", "replace")


class _Compiler:
    def __init__(self, view, uid):
        self.view = view
        self.uid = uid

    def program(self, tokens):
        tokens = list(tokens)
        if len(tokens) >= 2 and isinstance(tokens[0], Atom) and tokens[0].upper() == b"CHARSET":
            charset = astring(tokens[1]).upper().decode("ascii", "replace")
            if charset not in _CHARSETS:
                raise UnknownCharset(charset)
            tokens = tokens[2:]
        if not tokens:
            raise BadCommand("missing search keys")
        terms = []
        stream = iter(tokens)
        for token in stream:
            terms.append(self.key(token, stream, 0))
        return terms[0] if len(terms) == 1 else Q.And(terms)

    def _next(self, stream):
        try:
            return next(stream)
        except StopIteration:
            raise BadCommand("missing search argument")

    def key(self, token, stream, depth):
        if depth > MAX_DEPTH:
            raise BadCommand("search keys nested too deep")
        if isinstance(token, list):
            if not token:
                raise BadCommand("empty search key list")
            inner = iter(token)
            terms = [self.key(t, inner, depth + 1) for t in inner]
            return terms[0] if len(terms) == 1 else Q.And(terms)
        if not isinstance(token, Atom):
            raise BadCommand("bad search key")
        name = token.upper().decode("ascii", "replace")
        if name[:1].isdigit() or name[:1] == "*":
            return self._ids(SequenceSet.parse(token), uid=False)
        if name == "ALL":
            return Q.All()
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return Q.Flag(flag) if present else Q.Not(Q.Flag(flag))
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = astring(self._next(stream)).decode("ascii", "replace")
            node = Q.Flag(keyword)
            return node if name == "KEYWORD" else Q.Not(node)
        if name in ("NEW", "RECENT", "OLD"):
            recent = Q.Ids(frozenset(self.view.recentIds()))
            if name == "NEW":
                return Q.And([recent, Q.Not(Q.Flag("\\Seen"))])
            return recent if name == "RECENT" else Q.Not(recent)
        if name in _TEXT_KEYS:
            return Q.Text(_TEXT_KEYS[name], _text(self._next(stream)), substring=True)
        if name == "TEXT":
            # The header and the body: its text and its attachments' file
            # names (Dovecot finds those in the parts' headers).
            text = _text(self._next(stream))
            return Q.Or([Q.Text("headers", text, substring=True),
                         Q.Text("body", text, substring=True),
                         Q.Text("attachment", text, substring=True)])
        if name == "HEADER":
            field = _text(self._next(stream)).lower()
            return Q.Header(field, _text(self._next(stream)))
        if name in _DATE_KEYS:
            field, op = _DATE_KEYS[name]
            return Q.Date(field, op, datetime.date(*date(self._next(stream))))
        if name in ("LARGER", "SMALLER"):
            return Q.Size(name.lower(), number(self._next(stream)))
        if name == "UID":
            return self._ids(SequenceSet.parse(self._next(stream)), uid=True)
        if name == "NOT":
            return Q.Not(self.key(self._next(stream), stream, depth + 1))
        if name == "OR":
            first = self.key(self._next(stream), stream, depth + 1)
            second = self.key(self._next(stream), stream, depth + 1)
            return Q.Or([first, second])
        raise BadCommand("unknown search key: {}".format(name[:40]))

    def _ids(self, sequenceSet, uid):
        positions = (self.view.uidPositions(sequenceSet) if uid
                     else self.view.seqPositions(sequenceSet, strict=False))
        summaries = self.view.summaries
        return Q.Ids(frozenset(summaries[p].id for p in positions))


def compileSearch(tokens, view, uid=False):
    """
    The query tree of a SEARCH command's arguments.

    @param view: the L{SelectedMailbox} (sequence numbers, UIDs, \\Recent).
    @raise BadCommand: for keys that do not parse.
    @raise UnknownCharset: for a CHARSET other than UTF-8 and US-ASCII.
    """
    return _Compiler(view, uid).program(tokens)


_TEXT_NODES = (Q.Text, Q.Header, Q.HasAttachment)

# What a summary-only query is evaluated with: it never looks.
_NO_TEXT = Q.SearchDocument({}, [], None, 0)


def needsText(node):
    """
    Whether a query looks at a message's text (not only its summary).
    """
    kind = type(node)
    if kind in (Q.And, Q.Or):
        return any(needsText(t) for t in node.terms)
    if kind is Q.Not:
        return needsText(node.term)
    if kind is Q.Date:
        return node.field == "sent"
    return kind in _TEXT_NODES


def runSearch(store, view, tree):
    """
    The positions (from 0) in C{view} of the messages matching C{tree}.

    @return: a L{Deferred} firing with a sorted L{list} of positions.
    """
    summaries = view.summaries
    if not needsText(tree):
        # Flags as this session shows them; sizes, dates and ids are fixed.
        return defer.succeed([
            i for i in range(len(summaries)) if Q.matches(tree, view.shown(i), _NO_TEXT)])
    d = defer.maybeDeferred(store.search, view.userid, tree, view.name)

    def found(listing):
        wanted = set()
        for summary in listing.messages:
            position = view.positionOfUid(summary.uid)
            if position is not None:
                wanted.add(position)
        return sorted(wanted)

    def unsupported(failure):
        failure.trap(NotImplementedError, AttributeError, errors.TemporaryFailure)
        return scan(view, tree)

    return d.addCallbacks(found, unsupported)


@defer.inlineCallbacks
def scan(view, tree):
    """
    Search by reading each message (a store without a search engine).
    """
    found = []
    for i in range(len(view.summaries)):
        summary = view.shown(i)
        try:
            text = yield view.folder.fetchMessage(summary.id)
        except errors.NoSuchMessage:
            continue
        if Q.matches(tree, summary, parseMessage(text)):
            found.append(i)
    return found
