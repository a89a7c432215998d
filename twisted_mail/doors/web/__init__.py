"""
The web inbox and JSON API (docs/web.rst): a L{twisted.web} site serving
the inbox page (C{static/}) at C{/} and the JSON API at C{/api/v1/}, over
the same store as every other door.

L{makeWebFactory} builds the factory that C{twistd simplemail --web
ENDPOINT} listens with.
"""

from twisted_mail.doors.web.site import makeWebFactory

__all__ = ["makeWebFactory"]
