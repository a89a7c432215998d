"""
The terminal client: the client protocol (L{client}), the typed commands
(L{commands}), the stdio console (L{stdio}), line editing (L{terminal}),
rendering (L{render}) and the program around them (L{program}).

C{twisted_mail.console.run} stays the C{simplemail} command's entry point.
"""

from twisted_mail.console.program import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Options,
    endpointFromOptions,
    main,
    run,
)
from twisted_mail.console.stdio import MailConsole

__all__ = [
    "DEFAULT_HOST", "DEFAULT_PORT", "MailConsole", "Options", "endpointFromOptions",
    "main", "run",
]
