"""Changes to a text that must not change a classifier's answer, or must move it one way.

Each perturbation takes a text and a seeded `random.Random` and returns the
changed text, or None where it does not apply (a text without a name has no
name to change): a test counts only the texts it changes. Words are matched
whole and case-sensitively where case carries meaning (names), and the rest of
the text is left byte for byte as it was.

Example:
    >>> import random
    >>> from sst2.text.word_swaps import load_words
    >>> words = load_words()
    >>> perturb = perturbation("swap:first_name", words)
    >>> perturb("Maria liked it.", random.Random(0)) != "Maria liked it."
    True
    >>> perturb("Nobody liked it.", random.Random(0)) is None
    True
    >>> perturbation("contractions", words)("It is not bad.", random.Random(0))
    "It isn't bad."
"""

import random
import re
from typing import Callable

from sst2.text.typos import typo
from sst2.text.word_swaps import identity_groups, occurrences, replaced

Perturbation = Callable[[str, random.Random], "str | None"]


def perturbation(spec: str, words: dict) -> Perturbation:
    """The perturbation a test names: `typo`, `punctuation`, `contractions`,
    `url_or_handle`, `number`, `swap:<list>[,<list>...]` (a word of a list replaced by
    another of the same list; `identity` swaps within each category) or
    `append:<list>` (a sentence of the list added at the end)."""
    kind, _, lists = spec.partition(":")
    if kind == "swap":
        groups = [words[name] for name in lists.split(",") if name != "identity"]
        if "identity" in lists.split(","):
            groups += identity_groups(words)
        return lambda text, rng: _swap(text, rng, groups)
    if kind == "append":
        phrases = words[lists]
        return lambda text, rng: f"{text.rstrip()} {rng.choice(phrases)}"
    if kind == "contractions":
        return lambda text, rng: _contract(text, rng, words["contractions"])
    if kind == "url_or_handle":
        extras = words["urls"] + words["handles"]
        return lambda text, rng: f"{text.rstrip()} {rng.choice(extras)}"
    return {"typo": typo, "punctuation": _punctuation, "number": _number}[kind]


def _swap(text: str, rng: random.Random, groups: list[list[str]]) -> str | None:
    """One occurrence of a listed word (or phrase) replaced by another of its group, in
    the case the text writes it in (SST-2's texts are lower-cased)."""
    found = [(m, group) for group in groups for m in occurrences(text, group)]
    if not found:
        return None
    match, group = rng.choice(sorted(found, key=lambda f: (f[0].start(), f[0].group())))
    new = rng.choice([w for w in group if w.lower() != match.group().lower()])
    return text[:match.start()] + replaced(match.group(), new) + text[match.end():]


def _contract(text: str, rng: random.Random, pairs: list[list[str]]) -> str | None:
    """One 'is not' written 'isn't', or one "isn't" written out."""
    found = []
    for long, short in pairs:
        for a, b in ((long, short), (short, long)):
            found += [(m, b) for m in re.finditer(rf"(?<!\w){re.escape(a)}(?!\w)", text,
                                                  re.IGNORECASE)]
    if not found:
        return None
    match, new = rng.choice(sorted(found, key=lambda f: (f[0].start(), f[1])))
    if match.group()[:1].isupper():
        new = new[:1].upper() + new[1:]
    return text[:match.start()] + new + text[match.end():]


def _punctuation(text: str, rng: random.Random) -> str | None:
    """The final punctuation removed, or a full stop added where the text has none."""
    stripped = text.rstrip()
    if not stripped:
        return None
    if stripped[-1] in ".!?":
        return stripped.rstrip(".!? ") or None
    return stripped + "."


def _number(text: str, rng: random.Random) -> str | None:
    """A whole number of two or more digits replaced by another within a fifth of it."""
    numbers = [m for m in re.finditer(r"(?<![\w.,])\d{2,}(?![\w.,]\d)", text)]
    if not numbers:
        return None
    match = rng.choice(numbers)
    value = int(match.group())
    spread = max(1, value // 5)
    new = value + rng.choice([d for d in range(-spread, spread + 1) if d and value + d > 1])
    return text[:match.start()] + str(new) + text[match.end():]
