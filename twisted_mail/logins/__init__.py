"""
Logins: the portal, the password file and the login throttle.
"""
