"""Result records: provenance-carrying JSON files written atomically, and reported-paper imports."""
