"""
Search through every store (the contract mixin in L{tests.searchcontract}).
"""

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.memory import MemoryStore

from tests.searchcontract import SearchContractMixin
from tests.test_store import makeSpoolStore


class MemorySearchTests(SearchContractMixin, SynchronousTestCase):
    """
    The search contract on the memory store (a scan with the evaluator).
    """

    def makeStore(self, **kwargs):
        return MemoryStore(**kwargs)


class SpoolSearchTests(SearchContractMixin, SynchronousTestCase):
    """
    The search contract on the spool store (its SQLite index).
    """

    def makeStore(self, **kwargs):
        return makeSpoolStore(self, **kwargs)
