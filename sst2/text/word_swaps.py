"""Words of a text swapped for others of their group: the behaviour tests' perturbations
and training's counterfactual identity terms share these word lists and this matching.

`load_words` reads the package's word lists (`sst2/resources/behaviour/words.json`);
`identity_groups` are its identity terms by category, less those that also mean
something else in running text ("old", "white", "straight"); `occurrences` finds
a group's words whole, in any case; `replaced` writes a new word in the case the
text wrote the old one; `identity_counterfactuals` are a text's variants with one
identity term replaced by each other term of its category.

Example:
    >>> groups = identity_groups(load_words())
    >>> variants = identity_counterfactuals("an american comedy , and a french one .", groups)
    >>> len(variants), variants[0]
    (18, 'a mexican comedy , and a french one .')
    >>> identity_counterfactuals("a comedy about nothing .", groups)
    []
"""

import functools
import json
import os
import re

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "behaviour")


def load_words() -> dict:
    """`words.json`: the word lists templates are filled from and texts' words swapped for."""
    with open(os.path.join(RESOURCES, "words.json"), encoding="utf-8") as f:
        return json.load(f)


def identity_groups(words: dict) -> list[list[str]]:
    """The identity terms of each category that are swapped inside running text: without
    `identity_not_swapped_in_texts` (words with other meanings, "an old story")."""
    ambiguous = set(words["identity_not_swapped_in_texts"])
    return [[term for term in terms if term not in ambiguous]
            for terms in words["identity"].values()]


def occurrences(text: str, group: list[str]) -> list[re.Match]:
    """Every whole-word (or whole-phrase) occurrence of `group`'s words in `text`, in any
    case ("Chinese" in "chinese food"; not "old" in "bold" or "well-old"); where two
    overlap, the longer ("Native American", not its "American")."""
    return list(_pattern(tuple(group)).finditer(text))


@functools.lru_cache(maxsize=64)
def _pattern(group: tuple) -> re.Pattern:
    words = sorted(group, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, words)) + r")(?![\w-])",
                      re.IGNORECASE)


def replaced(old: str, new: str) -> str:
    """`new` in the case `old` was written in: lower case stays lower (SST-2's texts), a
    capitalised first letter stays capitalised; otherwise as the list writes it."""
    if old.islower():
        return new.lower()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def identity_counterfactuals(text: str, groups: list[list[str]]) -> list[str]:
    """`text` with each identity term it holds replaced, everywhere it occurs, by each
    other term of its category: one variant per (term, other term). A text with no
    term has none; the other terms of a text are left as they are."""
    variants = []
    for group in groups:
        found = occurrences(text, group)
        for term in sorted({m.group().lower() for m in found}):
            matches = [m for m in found if m.group().lower() == term]
            for other in group:
                if other.lower() == term:
                    continue
                pieces, end = [], 0
                for match in matches:
                    new = replaced(match.group(), other)
                    pieces += [_article_for(text[end:match.start()], new), new]
                    end = match.end()
                variants.append("".join(pieces) + text[end:])
    return variants


def _article_for(before: str, word: str) -> str:
    """`before` with a final "a" or "an" made the one `word` takes ("an asian", "a
    french"), in the case it was written in."""
    match = re.search(r"(?<!\w)([Aa])(n?)(\s+)$", before)
    if not match:
        return before
    article = match.group(1) + ("n" if word[:1].lower() in "aeiou" else "")
    return before[:match.start()] + article + match.group(3)
