"""Forget means forget: what the user deleted is redacted wherever it was copied.

A fact's value reaches other text: a call summary ("Talked about breaking up
with Jake"), a storyline, the stored transcript, a later extraction of a call
that was live when the user deleted it. Deleting the fact alone would leave the
name to come back in the next prompt (mem0#3695, Cortex#366 are this bug).

So a deletion redacts the value, and every earlier value of the fact, in the
summaries, storylines and transcripts of that relationship, deterministically:
wherever its words appear (case and punctuation aside), they become
`[forgotten]`. No model is asked, so nothing is paraphrased back and nothing is
billed. The value itself is not kept to do this later: only a keyed hash of
its words (`Forgotten`), against which text written afterwards is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

FORGOTTEN = "[forgotten]"
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


@dataclass(frozen=True)
class Forgotten:
    """One forgotten value: the keyed hash of its words, and how many words it has."""

    digest: str
    words: int


class Forgetting:
    """Hashes values to forget and redacts them from text; the key keeps the hashes unguessable offline."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _digest(self, words: list[str]) -> str:
        normal = " ".join(w.casefold() for w in words)
        return hmac.new(self._key, normal.encode(), hashlib.sha256).hexdigest()

    def forgotten(self, values: Iterable[str]) -> list[Forgotten]:
        found = {}
        for value in values:
            words = _WORD.findall(value)
            if words:
                found[self._digest(words)] = Forgotten(self._digest(words), len(words))
        return list(found.values())

    def redact(self, text: str, forgotten: Iterable[Forgotten]) -> str:
        """`text` with every run of words that hashes to a forgotten value replaced by `[forgotten]`."""
        wanted = {f.digest for f in forgotten}
        sizes = sorted({f.words for f in forgotten}, reverse=True)
        if not text or not wanted:
            return text
        tokens = list(_WORD.finditer(text))
        spans: list[tuple[int, int]] = []
        for size in sizes:
            for i in range(len(tokens) - size + 1):
                run = tokens[i:i + size]
                if self._digest([t.group() for t in run]) in wanted:
                    spans.append((run[0].start(), run[-1].end()))
        if not spans:
            return text
        out, last = [], 0
        for start, end in _merged(spans):
            out += [text[last:start], FORGOTTEN]
            last = end
        return "".join(out) + text[last:]

    def redact_all(self, texts: list[str], forgotten: list[Forgotten]) -> list[str]:
        return [self.redact(t, forgotten) for t in texts]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
