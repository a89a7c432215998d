"""
Self-service sign-up (C{ADDU} on the line protocol, C{POST /api/v1/users}
on the web), made safe for a server with passwords: L{createAccount}.

  - With C{--no-signup} every door answers L{errors.SignupClosed}, whatever
    the name, and creates nothing (accounts are made with
    C{simplemail-passwd}).
  - With passwords, a sign-up runs through the login throttle as a
    password check of the name from the client's address: a name that
    exists counts as a failed login (so probing names is as slow as
    guessing passwords) and is answered after the failure delay; and an
    address creates at most L{throttle.SIGNUP_BURST} accounts at once, then
    one every L{throttle.SIGNUP_EVERY} seconds (L{errors.SignupLimited}).
"""

from twisted.internet import defer

from twisted_mail import errors


def createAccount(store, userid, password=None, passwordFile=None, inThread=None,
                  portal=None, peer=None, signup=True):
    """
    Create C{userid}'s mailbox (and, with C{passwordFile}, set its
    password), as the door of a client at C{peer} asks.

    @param inThread: C{inThread(f, *args)} runs the password file's
        blocking work, returning a L{Deferred}.
    @param portal: the login portal; its C{throttle} (if any) limits the
        sign-up.
    @param signup: L{False} with C{--no-signup}.
    @return: a L{Deferred} firing with the user id, or failing with
        L{errors.SignupClosed}, L{errors.SignupLimited} or
        L{errors.UserExists}.
    """
    if not signup:
        return defer.fail(errors.SignupClosed())

    def create():
        d = store.addUser(userid)
        if passwordFile is not None:
            d.addCallback(lambda userid: inThread(
                passwordFile.setPassword, userid, password).addCallback(lambda _: userid))
        return d

    throttle = getattr(portal, "throttle", None)
    if throttle is None:
        return create()

    def limited():
        def allowed(allowed):
            if not allowed:
                raise errors.SignupLimited()
            return create()

        return throttle.signup(peer).addCallback(allowed)

    return throttle.guard(peer, userid, limited, (errors.UserExists,))
