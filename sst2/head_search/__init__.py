"""The head search: many heads over the cached features, trained together, the best exported."""
