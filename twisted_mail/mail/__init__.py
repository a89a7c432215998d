"""
Messages: the one reader (mime) and the one builder (message).
"""
