"""
Search through every store (the contract mixin in L{tests.searchcontract}).
"""

from twisted.trial.unittest import SynchronousTestCase

from twisted_mail.stores.memory import MemoryStore

from tests.searchcontract import SearchContractMixin
from tests import pgserver
from tests.test_pgstore import makePostgresStore
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


class PostgresSearchTests(SearchContractMixin, SynchronousTestCase):
    """
    The search contract on the PostgreSQL store (tsvector and GIN).
    """

    skip = pgserver.skipReason()

    def setUp(self):
        self.url = pgserver.freshDatabase()
        SearchContractMixin.setUp(self)

    def makeStore(self, **kwargs):
        return makePostgresStore(self, self.url, **kwargs)
