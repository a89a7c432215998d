"""
The old import path of the twistd plugin's options and service; it lives in L{twisted_mail.service.tap} now.
"""

from twisted_mail.service.tap import Options, makeService  # noqa: F401
