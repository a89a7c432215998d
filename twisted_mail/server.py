"""
The old import path of the line protocol door; it lives in L{twisted_mail.doors.line} now.
"""

from twisted_mail.doors.line import MailServerFactory, MailServerProtocol  # noqa: F401
