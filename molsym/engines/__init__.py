"""Bridges from molsym models to molecular-dynamics engines (docs/md_engines.md).

- :mod:`molsym.engines.openmm_potential`: an openmm-ml potential named ``"molsym"`` (an
  ``openmmml.potentials`` entry point), pure ML systems and ML/MM mixed systems.
- :mod:`molsym.engines.ipi`: a client that drives i-PI (path-integral MD) over its socket.

Each module imports its engine only when used, so molsym itself needs none of them.
"""
