"""
The old import path of the client protocol; it lives in L{twisted_mail.console.client} now.
"""

from twisted_mail.console.client import MailClientProtocol, ServerConnectionLost  # noqa: F401
