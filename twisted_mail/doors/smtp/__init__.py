"""
SMTP ingress: an RFC 5321 ESMTP listener that delivers mail for existing
local users into the store, built on L{twisted.mail.smtp}.

The pieces, one module each:

  - L{twisted_mail.doors.smtp.delivery}: L{StoreDelivery} (who may send and
    receive) and L{StoreMessage} (the message of one transaction, stored
    durably for each recipient);
  - L{twisted_mail.doors.smtp.protocol}: L{SMTPServerProtocol}, the ESMTP
    protocol with our framing and replies;
  - L{twisted_mail.doors.smtp.factory}: L{SMTPFactory} and L{makeSMTPFactory},
    what C{twistd simplemail --smtp ENDPOINT} listens with, the TLS files
    and the checks of the SMTP options.
"""

from twisted_mail.doors.smtp.delivery import DELIVERY_CONCURRENCY, StoreDelivery, StoreMessage
from twisted_mail.doors.smtp.factory import (
    SMTPFactory,
    checkSMTPOptions,
    makeSMTPFactory,
    makeSMTPFactoryFromOptions,
)
from twisted_mail.doors.smtp.protocol import (
    MAX_COMMAND_LINE,
    MAX_ERRORS,
    MAX_PATH,
    MAX_RECIPIENTS,
    MAX_TEXT_LINE,
    SMTPServerProtocol,
)

__all__ = [
    "DELIVERY_CONCURRENCY",
    "MAX_COMMAND_LINE",
    "MAX_ERRORS",
    "MAX_PATH",
    "MAX_RECIPIENTS",
    "MAX_TEXT_LINE",
    "SMTPFactory",
    "SMTPServerProtocol",
    "StoreDelivery",
    "StoreMessage",
    "checkSMTPOptions",
    "makeSMTPFactory",
    "makeSMTPFactoryFromOptions",
]
