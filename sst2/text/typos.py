"""Typos as a reader makes them: two neighbouring letters of one word swapped.

The behaviour tests check that a typo does not change an answer
(`sst2.serve.behaviour.perturbations`); training adds copies of some texts with
one (`--augment_typos`, `sst2.fit.augmented`), so the head learns the same.

Example:
    >>> import random
    >>> typo("a gripping film", random.Random(0))
    'a gripping flim'
    >>> typo("a an to", random.Random(0)) is None
    True
"""

import random
import re


def typo(text: str, rng: random.Random) -> str | None:
    """Two neighbouring letters of one word (four or more letters) swapped; None where no
    word is that long or its letters are all one."""
    words = [m for m in re.finditer(r"[A-Za-z]{4,}", text)]
    if not words:
        return None
    word = rng.choice(words)
    i = word.start() + rng.randrange(len(word.group()) - 1)
    if text[i] == text[i + 1]:
        i = next((j for j in range(word.start(), word.end() - 1) if text[j] != text[j + 1]),
                 None)
        if i is None:
            return None
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]
