"""
The IMAP door (RFC 3501 with IDLE, UIDPLUS, MOVE, SPECIAL-USE, NAMESPACE,
ID, ENABLE, UNSELECT, LITERAL+, CHILDREN, STARTTLS, AUTH=PLAIN) over the
mailbox model; see docs/imap.rst.
"""
