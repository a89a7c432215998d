"""
The stores behind the one store contract: the spool, PostgreSQL and memory.
"""
