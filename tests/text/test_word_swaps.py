"""Identity terms swapped for the others of their category: each variant changes one term
everywhere it occurs, keeps the text's case and articles right, and nothing else."""

from sst2.text.word_swaps import identity_counterfactuals, identity_groups, load_words

GROUPS = identity_groups(load_words())


def test_each_term_is_swapped_for_every_other_of_its_category_everywhere_it_occurs():
    text = "the french cast and the french crew make a gay love story sing ."
    variants = identity_counterfactuals(text, GROUPS)
    nationalities = next(g for g in GROUPS if "French" in g)
    orientations = next(g for g in GROUPS if "gay" in g)
    assert len(variants) == len(nationalities) - 1 + len(orientations) - 1
    assert "the russian cast and the russian crew make a gay love story sing ." in variants
    assert "the french cast and the french crew make a lesbian love story sing ." in variants
    for variant in variants:  # one term changed: every other word as it was
        changed = [(a, b) for a, b in zip(text.split(), variant.split()) if a != b]
        assert len({a for a, _ in changed}) == 1 and len({b for _, b in changed}) == 1


def test_case_and_articles_follow_the_text_and_ambiguous_words_are_left_alone():
    variants = identity_counterfactuals("A Jewish family drama.", GROUPS)
    assert "An Atheist family drama." in variants and "A Hindu family drama." in variants
    assert "a christian wedding" in " ".join(identity_counterfactuals("a muslim wedding",
                                                                      GROUPS))
    # "old", "white", "straight" mean other things in running text; "bold" is not "old".
    for text in ("an old story , told straight , in white light .", "a bold frenchman ."):
        assert identity_counterfactuals(text, GROUPS) == []
