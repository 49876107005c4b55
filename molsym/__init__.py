"""molsym: symmetry-aware neural networks for molecular energies, forces and properties."""

__version__ = "0.1.0"
