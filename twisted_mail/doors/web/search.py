"""
Search through the web API: C{GET .../messages?q=QUERY} (MAILBOX.md,
"Search").  The query is parsed here, the store searches; a malformed query
is a 400 with the parser's one-line reason.
"""

from twisted_mail import errors
from twisted_mail.mail.model import normalizeFolderName
from twisted_mail.mail.query import highlightWords, parseQuery


def queryArg(request):
    """
    The parsed C{q} parameter of a request, or L{None} when it has none (or
    a blank one).

    @raise errors.InvalidQuery: it does not parse (a 400).
    """
    values = request.args.get(b"q")
    if not values:
        return None
    try:
        text = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidQuery("the query is not UTF-8")
    if not text.strip():
        return None
    return parseQuery(text)


def folderArg(request):
    """
    The C{folder} parameter of a request, canonical, or L{None}.

    @raise errors.InvalidFolderName: a bad name (a 400).
    """
    values = request.args.get(b"folder")
    if not values:
        return None
    try:
        name = values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidFolderName("the folder name is not UTF-8")
    return normalizeFolderName(name)


def searchMessages(store, request, userid, start, limit):
    """
    The answer to C{GET .../messages} with a C{q}: the page of matches,
    newest first, from every folder unless C{folder} names one; C{total}
    counts the matches, C{matched} gives the words looked for (folded: no
    case, no accents), for showing them.

    @return: L{None} when the request has no query, else a L{Deferred}
        firing with C{(listing, extra)}: the L{Listing} and the fields to
        add to the answer.
    """
    query = queryArg(request)
    if query is None:
        return None
    folder = folderArg(request)
    d = store.search(userid, query, folder, start, limit)
    return d.addCallback(lambda listing: (listing, {"matched": highlightWords(query)}))
