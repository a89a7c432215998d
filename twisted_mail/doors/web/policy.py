"""
The web door's fixed policy: the security headers of its answers, the
session cookie's name and how long and how many sessions are kept.  Shared
by the site, the API and the session stores.
"""

#: Every page and answer (ACCESS.md): nothing inline, nothing from another
#: host, never framed.
CSP = (
    b"default-src 'self'; script-src 'self'; object-src 'none'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: The answer that fills the sandboxed message frame: inline styles and
#: data: images only, no script, nothing remote, framed by the page only.
FRAME_CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    b"frame-ancestors 'self'; sandbox"
)
#: Raw messages and attachments: never rendered as anything that runs.
DOWNLOAD_CSP = b"default-src 'none'; frame-ancestors 'none'; sandbox"

#: The name of the session cookie.
COOKIE = b"simplemail_session"

#: Room for JSON quoting and the other fields, above the message size.
JSON_ALLOWANCE = 64 * 1024

#: A session ends after this long without use, in seconds.
SESSION_IDLE = 8 * 3600
#: The most sessions kept at once (the oldest are dropped first).
MAX_SESSIONS = 10000


def normaliseOrigin(url):
    """
    A browser's C{Origin} for C{url} (C{--web-origin}): C{scheme://host} or
    C{scheme://host:port}, lower-case, the scheme's default port left out,
    as browsers send it.

    @type url: L{str}
    @rtype: L{str}
    @raise ValueError: C{url} is not an http or https origin (a path,
        query or user part is refused, so that a typo is not silently
        ignored).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError("{!r} is not a URL: {}".format(url, e))
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("{!r} is not an http:// or https:// URL".format(url))
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(
            "{!r} is not an origin: give only scheme, host and port".format(url))
    host = parts.hostname.lower()
    if ":" in host:
        host = "[" + host + "]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host += ":{}".format(port)
    return scheme + "://" + host


def originHost(origin):
    """
    The host name (no port, no brackets) of a normalised origin.
    """
    rest = origin.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[1:].partition("]")[0]
    return rest.rpartition(":")[0] if ":" in rest else rest
