"""The local stack: a Key Vault emulator and friends, so the whole renewal flow runs on one machine without Azure.

Excluded from the deployed package by ``.funcignore``. Start it with ``python -m devstack keyvault --help``.
"""
