"""
Search through every store (the contract mixin in L{tests.searchcontract}).
"""

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.memory import MemoryStore

from tests.searchcontract import SearchContractMixin


class MemorySearchTests(SearchContractMixin, SynchronousTestCase):
    """
    The search contract on the memory store (a scan with the evaluator).
    """

    def makeStore(self, **kwargs):
        return MemoryStore(**kwargs)
