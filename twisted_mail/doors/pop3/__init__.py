"""
The POP3 door (RFC 1939) over the mailbox view.
"""
