"""
C{python -m twisted_mail}: the simplemail console (see
L{twisted_mail.console}).
"""

from twisted_mail.console import run

if __name__ == "__main__":
    run()
