"""
The old import path of the mbox spool store; it lives in L{twisted_mail.stores.spool.store} now.
"""

from twisted_mail.stores.spool.store import SpoolStore, mailboxThreadPool  # noqa: F401
