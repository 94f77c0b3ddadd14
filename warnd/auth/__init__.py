"""Accounts, roles and identity: users of the console and the API, their sessions and
personal tokens, and the one table of which role may do what (permissions.py)."""
