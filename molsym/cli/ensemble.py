"""``molsym ensemble``: one committee deploy file from models trained separately.

    molsym ensemble a/model.pt b/model.pt c/model.pt -o committee.pt

The members must agree on cutoff, elements and outputs (refused with a one-line error
otherwise). The committee predicts the members' mean and their spread (``energy_std``,
``forces_std``, ...; :mod:`molsym.models.ensemble`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molsym.errors import MolsymError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="molsym ensemble",
        description="Combine trained molsym models into one committee deploy file (mean "
        "prediction and the members' spread as uncertainty).")
    p.add_argument("models", nargs="+", help="deploy files (model.pt) or pretrained names")
    p.add_argument("-o", "--output", required=True, type=Path, help="committee file to write")
    return p


def combine_files(paths: list[str], output: Path) -> Path:
    """Write the committee of the deploy files ``paths`` to ``output``; returns ``output``."""
    from molsym.deploy.model_file import load_model, read_model_file, save_model
    from molsym.models.ensemble import EnsembleModel
    from molsym.pretrained import resolve_model_path

    files = [resolve_model_path(p) for p in paths]
    if any(f.resolve() == output.resolve() for f in files):
        raise MolsymError(f"output {output} is one of the inputs; choose another file")
    models, metadata = [], []
    for f in files:
        model = load_model(f)
        if isinstance(model, EnsembleModel):
            models.extend(model.members)
        else:
            models.append(model)
        metadata.append({"file": str(f), "metadata": read_model_file(f).get("metadata", {})})
    committee = EnsembleModel.from_models(models)
    units = read_model_file(files[0]).get("units")
    return save_model(committee, output, metadata={"members": metadata}, units=units)


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym ensemble``; 0 on success, 2 on a usage or input error."""
    args = build_parser().parse_args(argv)
    try:
        path = combine_files(args.models, args.output)
    except MolsymError as err:
        print(f"molsym ensemble: error: {err}", file=sys.stderr)
        return 2
    from molsym.deploy.model_file import read_model_file

    size = len(read_model_file(path)["config"]["members"])
    print(f"wrote a committee of {size} members to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
