"""The last gate before delivery: the fully rebuilt message checked against the contract.

Written apart from the sanitizers on purpose: nothing here imports ``gateway.sanitize`` or
``gateway.mime.defang``/``html``, so one bug cannot both create and approve a live link.
"""
