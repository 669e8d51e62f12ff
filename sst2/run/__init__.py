"""A run: its options, its folder and its files."""
