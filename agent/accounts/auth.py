"""Who is calling the API: user tokens (JWT, HS256, `sub` = user id) and the operator token.

Kept out of the web layer because minting is needed outside it too: the
`python -m tools.tokens` helper, operators' tooling and tests all sign tokens
with the same JWT_SECRET the server verifies with.
"""

from __future__ import annotations

import datetime as dt
import hmac

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL = dt.timedelta(days=30)
_LEEWAY_SECS = 30  # clocks of different machines disagree a little


class InvalidToken(Exception):
    """The bearer token is missing, malformed, forged or expired; `str()` says which, for the 401."""


def mint_user_token(user_id: str, secret: str, *, ttl: dt.timedelta = DEFAULT_TTL,
                    now: dt.datetime | None = None) -> str:
    """A signed token for `user_id` that expires after `ttl`."""
    if not secret:
        raise ValueError("JWT_SECRET is empty: set it before minting tokens")
    if not user_id:
        raise ValueError("a token needs a user id")
    issued = now or dt.datetime.now(dt.timezone.utc)
    claims = {"sub": user_id, "iat": int(issued.timestamp()), "exp": int((issued + ttl).timestamp())}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_expiry(token: str) -> dt.datetime:
    """When a token we minted stops working (read without verifying: for display only)."""
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    return dt.datetime.fromtimestamp(exp, dt.timezone.utc)


def verify_user_token(token: str, secret: str) -> str:
    """The user id a valid token speaks for; `InvalidToken` otherwise.

    Only HS256 is accepted (never `none`, never an algorithm named by the token),
    and `sub` and `exp` are required, so a token cannot live forever.
    """
    if not token:
        raise InvalidToken("missing bearer token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], leeway=_LEEWAY_SECS,
                            options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"invalid token ({exc})") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("invalid token (sub must be a user id)")
    return subject


def admin_token_valid(given: str, expected: str) -> bool:
    """Constant-time comparison, so the operator token cannot be guessed byte by byte."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
