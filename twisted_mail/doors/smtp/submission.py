"""
SMTP submission (RFC 6409): what a connection of C{--submission} adds to
the ESMTP protocol of L{twisted_mail.doors.smtp.protocol}, which serves ingress
and submission alike (its C{submission} flag).

  - C{AUTH PLAIN} (RFC 4616) and C{AUTH LOGIN}, offered in C{EHLO} and
    accepted only once the connection is protected (after C{STARTTLS}, or
    on an C{ssl:} endpoint), checked through the L{twisted.cred} portal of
    L{twisted_mail.logins.portal} (and so through the one login throttle of
    L{twisted_mail.logins.throttle});
  - C{MAIL} before C{AUTH}: C{530}; a failed C{AUTH}: C{535}; a sender other
    than the authenticated user's own address: C{553} (in
    L{twisted_mail.doors.smtp.delivery.StoreDelivery}); recipients: local users
    only, as on ingress.

This module holds the SASL exchanges, pure: they turn the client's decoded
responses into a user name and password, or a refusal.

Twisted's own C{ESMTP.ext_AUTH} and its challengers (C{PLAINCredentials},
C{LOGINCredentials}) are not used: a malformed C{PLAIN} response raises out
of C{state_AUTH} (the connection would drop), the login's L{Deferred} is not
held while pipelined commands arrive, the credentials carry no client
address, and the avatar must be an C{IMessageDelivery}.
"""

import base64
import binascii

#: The mechanisms offered, in the order offered.
MECHANISMS = (b"PLAIN", b"LOGIN")

#: The reply to C{AUTH} or C{MAIL} on a connection not yet protected.
NEED_TLS = b"Must issue a STARTTLS command first"


class SASLError(Exception):
    """
    The client's response cannot be used: answer C{code} with C{text} and
    end the exchange.
    """

    def __init__(self, code, text):
        Exception.__init__(self, code, text)
        self.code = code
        self.text = text


class _Exchange:
    """
    One SASL exchange.  L{challenge} is the first challenge (sent when the
    client gave no initial response); L{respond} takes each decoded
    response and returns the next challenge (L{bytes}) or, at the end, the
    C{(username, password)} pair (L{bytes}).
    """

    challenge = b""


class PlainExchange(_Exchange):
    """
    RFC 4616 C{PLAIN}: one response, C{authzid NUL authcid NUL password}.
    An authorization identity other than the user's own is refused: nobody
    may act for another user here.
    """

    def respond(self, response):
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise SASLError(501, b"malformed PLAIN response")
        authzid, authcid, password = parts
        if authzid and authzid.lower() != authcid.lower():
            raise SASLError(535, b"authentication failed: you may act only as yourself")
        return authcid, password


class LoginExchange(_Exchange):
    """
    The C{LOGIN} mechanism: the user name, then the password, each asked
    for (C{Username:}, C{Password:} as Outlook, Thunderbird and C{smtplib}
    expect).
    """

    challenge = b"Username:"

    def __init__(self):
        self._username = None

    def respond(self, response):
        if self._username is None:
            if not response:
                raise SASLError(501, b"empty user name")
            self._username = response
            return b"Password:"
        return self._username, response


def startExchange(mechanism):
    """
    The exchange for C{mechanism} (L{bytes}, any case), or L{None} if it is
    not offered.
    """
    mechanism = mechanism.upper()
    if mechanism == b"PLAIN":
        return PlainExchange()
    if mechanism == b"LOGIN":
        return LoginExchange()
    return None


def decodeResponse(line):
    """
    A client's base64 response line, decoded; C{=} is the empty response
    (RFC 4954).

    @raise SASLError: C{501} if it is not base64.
    """
    line = line.strip()
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SASLError(501, b"the response is not base64")


def encodeChallenge(challenge):
    return base64.b64encode(challenge)
