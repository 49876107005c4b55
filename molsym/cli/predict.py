"""``molsym predict``: properties of SMILES strings and structure files with a trained model.

    molsym predict --model qm9 "CCO" "c1ccccc1" molecules.smi frames.extxyz -o out.csv

One table row per input molecule/frame, in input order (see :mod:`molsym.predict` for the
columns). Exit status: 0 when every molecule was predicted, 1 when some failed (their rows
carry the error; the table is still written), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from molsym.atomic import atomic_output
from molsym.errors import ConfigError, InputError, MolsymError

#: File suffixes read as files (anything else that is not an existing file is a SMILES).
FILE_SUFFIXES = (".smi", ".csv", ".xyz", ".extxyz", ".sdf", ".mol", ".db", ".npz")
#: Show a progress bar (when stderr is a terminal) from this many molecules on.
PROGRESS_MIN = 200


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="molsym predict",
        description="Predict molecular properties with a trained molsym model.",
        epilog="Exit status: 0 all predicted, 1 some molecules failed (rows still written), "
               "2 usage error.",
    )
    p.add_argument("--model", "-m", required=True,
                   help="deploy file (model.pt) or the name of a bundled pretrained model "
                        "(e.g. qm9)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="SMILES strings and/or files: .smi, .csv (smiles column), .xyz/.extxyz "
                        "(multi-frame), .sdf")
    p.add_argument("-o", "--output", type=Path, help="CSV file for the table (default: stdout)")
    p.add_argument("--forces", type=Path, metavar="OUT.extxyz",
                   help="write the geometries used, with predicted energies and forces, here")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="compute dtype (default: the model's)")
    p.add_argument("--batch-atoms", type=_positive_int, default=4096, metavar="N",
                   help="at most N atoms per batch (default 4096)")
    p.add_argument("--jobs", "-j", type=_positive_int, default=min(8, os.cpu_count() or 1),
                   help="processes for SMILES embedding (default: CPU count, at most 8)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: the first batch compiles (tens "
                        "of seconds on a CPU), later ones run faster; worth it for long "
                        "inputs, not for a handful of molecules")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help=f"progress bar on stderr (auto: on a terminal, >= {PROGRESS_MIN} "
                        f"molecules)")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def gather(inputs: Sequence[str], n_jobs: int = 1) -> list:
    """Entries of every input, in order: files are read (bad records become error entries),
    other arguments are SMILES (input ``"cli"``, index = 0-based position among them)."""
    from molsym.predict import Entry, embed_smiles

    entries: list = []
    smiles = [a for a in inputs if not _is_file_arg(a)]
    embedded = iter(embed_smiles(smiles, "cli", n_jobs)) if smiles else iter(())
    for arg in inputs:
        if not _is_file_arg(arg):
            entries.append(next(embedded))
        elif not _exists(arg):
            entries.append(Entry(arg, None, id=arg, error="file not found"))
        else:
            entries.extend(read_input(arg, n_jobs))
    return entries


def _is_file_arg(arg: str) -> bool:
    try:
        return Path(arg).is_file() or Path(arg).suffix.lower() in FILE_SUFFIXES
    except (OSError, ValueError):  # e.g. a SMILES longer than a file name may be
        return False


def _exists(arg: str) -> bool:
    try:
        return Path(arg).is_file()
    except (OSError, ValueError):
        return False


def read_input(path: str, n_jobs: int = 1) -> list:
    """Entries of one file, records in file order, failed records as error entries
    (SMILES files are embedded in ``n_jobs`` processes)."""
    from molsym.data.readers import read_file
    from molsym.predict import Entry, merge_in_order

    errors: list = []
    options = {"num_workers": n_jobs} if Path(path).suffix.lower() in (".smi", ".csv") else {}
    try:
        atoms = read_file(path, on_error="skip", errors=errors, **options)
    except (InputError, OSError, ValueError) as err:  # the whole file is unreadable
        return [Entry.from_error(err, path)]
    return merge_in_order(atoms, errors, path)


def write_forces(entries: Sequence, path: Path) -> None:
    """extxyz of every predicted structure with its energy and forces (atomically)."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for e in entries:
        if e.error or e.atoms is None or e.forces is None:
            continue
        atoms = e.atoms.copy()
        atoms.info = {k: v for k, v in e.atoms.info.items() if isinstance(v, (str, int, float))}
        energy = e.values.get("energy_eV")
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=e.forces)
        frames.append(atoms)
    with atomic_output(path) as fh:
        ase.io.write(fh, frames, format="extxyz")


def _progress(total: int, mode: str) -> tuple[Callable[[int], None] | None, Callable]:
    show = mode == "always" or (mode == "auto" and sys.stderr.isatty() and total >= PROGRESS_MIN)
    if not show:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="mol", file=sys.stderr, desc="predict")
    return bar.update, bar.close


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym predict``; returns the exit status (0 ok, 1 some failed, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on a usage error
    from molsym.predict import Predictor

    try:
        predictor = Predictor(args.model, device=args.device, dtype=args.dtype,
                              batch_atoms=args.batch_atoms, compile=args.compile)
    except (ConfigError, MolsymError, OSError) as err:
        parser.print_usage(sys.stderr)
        print(f"molsym predict: error: {err}", file=sys.stderr)
        return 2
    if args.forces is not None and "forces" not in predictor.outputs:
        parser.print_usage(sys.stderr)
        print(f"molsym predict: error: --forces: the model predicts no forces (outputs: "
              f"{', '.join(predictor.outputs)})", file=sys.stderr)
        return 2
    entries = gather(args.inputs, n_jobs=args.jobs)
    update, close = _progress(len(entries), args.progress)
    try:
        predictor.run(entries, forces=args.forces is not None, progress=update)
    finally:
        close()
    table = predictor.table(entries)
    if args.output is None:
        table.to_csv(sys.stdout, index=False)
    else:
        with atomic_output(args.output) as fh:
            table.to_csv(fh, index=False)
    if args.forces is not None:
        write_forces(entries, args.forces)
    failed = int((table["error"] != "").sum())
    if failed:
        print(f"molsym predict: {failed} of {len(table)} molecule(s) failed; see the error "
              f"column", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
