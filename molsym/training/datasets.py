"""Old home of :mod:`molsym.data.recipes`: the ``config.yaml`` of runs trained before the move
names its recipes (``_target_: molsym.training.datasets.rmd17``), and resuming such a run
rebuilds its data module from that file."""

from molsym.data.recipes import bundled_or_file, rmd17

__all__ = ["bundled_or_file", "rmd17"]
