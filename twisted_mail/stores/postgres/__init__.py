"""
The PostgreSQL store: the store and its SQL.
"""
