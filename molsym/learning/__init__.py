"""``molsym learn``: active learning from SMILES to a committee potential.

One file per step: :mod:`.start` (conformers + rattled copies), :mod:`.explore` (committee
MD), :mod:`.explosion`, :mod:`.select`, :mod:`.labelling` (the oracles), :mod:`.retrain`,
:mod:`.validate`, :mod:`.report`; :mod:`.loop` runs them round by round and resumes.
"""

from molsym.learning.loop import Loop
from molsym.learning.settings import LoopSettings

__all__ = ["Loop", "LoopSettings"]
