"""Optional authentication: OAuth 2.0 bearer tokens (RFC 6750) checked as JWTs (RFC 7519/8725).

On when ``ORDERS_AUTH_ISSUER`` is set. ``jwks`` owns the identity provider's keys, ``tokens``
the verification of one token, ``web`` the verdict on a request's Authorization header and the
RFC 6750 challenges.
"""

from __future__ import annotations
