"""
The server's doors over the memory store, in a process of its own: what
end-to-end tests of the IMAP door run against while the spool does not yet
serve folders (not a test module).

    python tests/memoryserver.py [twistd simplemail options]

takes the options of C{twistd simplemail} (C{--listen}, C{--imap}, ...),
builds every door of the doors table over one L{MemoryStore}, and runs
until killed, logging to stdout.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv):
    from twisted.application import strports
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from twisted_mail.doors.line import MailServerFactory
    from twisted_mail.service.doors import DOORS, ServerParts
    from twisted_mail.service.options import Options
    from twisted_mail.stores.memory import MemoryStore

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    options = Options()
    options.parseOptions(argv)
    store = MemoryStore(domain=options["domain"],
                        maxMessageSize=options["max-message-size"])
    lineFactory = MailServerFactory(store, maxMessageSize=options["max-message-size"],
                                    reactor=reactor)
    parts = ServerParts(options, reactor, store, None, None, lineFactory)
    for door in DOORS:
        for description in options.get(door.option) or ():
            strports.service(description, door.buildFactory(parts)).startService()
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
