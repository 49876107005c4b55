"""Data pipeline: readers (molecules -> ase.Atoms with labels), graphs, datasets."""
