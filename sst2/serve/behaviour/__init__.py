"""Behaviour beyond accuracy: what a model answers when a text changes in ways that must
not change its answer, or must move it one way (a typo, a name, an identity term, a
negation), tested on an export as clients load it."""
