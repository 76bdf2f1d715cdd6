"""Sender authentication (issue 16): shown to the recipient, never trusted blindly.

- ``dkim_check``: DKIM verified by us on the original bytes (dkimpy), DNS bounded;
- ``results``: SPF/DMARC taken from an upstream ``Authentication-Results`` header only when
  its authserv-id is trusted and it sits above the trusted hop's ``Received`` line;
- ``lookalike``: header-From vs envelope-From, and display names that show another address;
- ``verdict``: the combination, its notice lines, subject tag and our own A-R header.
"""
