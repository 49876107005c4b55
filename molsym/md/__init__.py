"""``molsym md``: molecular dynamics with a deploy file through ASE (NVE, NVT, NPT).

:mod:`~molsym.md.dynamics` builds the integrator, :mod:`~molsym.md.watch` stops a run whose
structure falls apart, :mod:`~molsym.md.trajectory` appends frames so that a killed run leaves
a readable file, :mod:`~molsym.md.run` drives the loop, :mod:`~molsym.md.plots` draws it.
"""

from molsym.md.run import MDRecord, MDResult, run_md

__all__ = ["MDRecord", "MDResult", "run_md"]
