"""
Messages: the one reader (mime), the one builder (message), the times they
carry (dates), the model of folders and flags (model) and search queries
(query).
"""
