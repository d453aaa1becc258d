"""Mint a user token locally: `python -m tools.tokens demo`.

Prints a JWT for the user, signed with JWT_SECRET from the environment or
`.env`, for curl and the test room. It refuses to run without a JWT_SECRET:
the server would otherwise invent one at start-up and no printed token
would ever work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.accounts.auth import mint_user_token


class _Secret(BaseSettings):
    """Only JWT_SECRET: minting must not depend on the rest of the configuration being complete."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
    jwt_secret: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.tokens", description=__doc__.splitlines()[0])
    parser.add_argument("user_id", help="the user the token speaks for (e.g. demo)")
    parser.add_argument("--days", type=float, default=30.0, help="lifetime in days (default 30)")
    args = parser.parse_args(argv)
    secret = _Secret().jwt_secret
    if not secret:
        print("JWT_SECRET is not set (environment or .env); the server and this helper must share it.",
              file=sys.stderr)
        return 2
    if args.days <= 0:
        print("--days must be positive", file=sys.stderr)
        return 2
    print(mint_user_token(args.user_id, secret, ttl=dt.timedelta(days=args.days)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
