"""
The doors: line protocol, SMTP, POP3 and web, and the connection machinery they share.
"""
