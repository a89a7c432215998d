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
