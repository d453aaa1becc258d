"""Secrets stay out of the logs: the media-stream token in a WebSocket URL is redacted.

Uvicorn writes the path and query of every request and WebSocket to its loggers;
the media URL's `token=` is a credential (for a few minutes), so it is replaced
before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _TOKEN.sub(r"\1<redacted>", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN.sub(r"\1<redacted>", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_tokens_in_server_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
