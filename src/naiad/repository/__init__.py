"""Model repositories on disk: finding models and their version directories."""
