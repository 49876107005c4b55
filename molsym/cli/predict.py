"""``molsym predict``: properties of SMILES strings and structure files with a trained model.

    molsym predict --model qm9 "CCO" "c1ccccc1" molecules.smi frames.extxyz -o out.csv

One table row per input molecule/frame, in input order (see
:mod:`molsym.inference.predictor` for the columns). Exit status: 0 when every molecule was
predicted, 1 when some failed (their rows carry the error; the table is still written), 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from molsym.atomic import atomic_output
from molsym.data.readers.smiles import (
    DEFAULT_EMBED_TIMEOUT,
    DEFAULT_MAX_HEAVY_ATOMS,
    FRAGMENTS,
    max_smiles_length,
)
from molsym.errors import ConfigError, MolsymError
from molsym.inference.inputs import FILE_SUFFIXES, gather, path_kind, read_input
from molsym.memory import MEMORY_REFUSAL

__all__ = ["FILE_SUFFIXES", "build_parser", "gather", "main", "read_input", "write_forces"]

#: ``info`` keys of the input copied to the ``--forces`` file (metadata, never labels).
KEPT_INFO = ("id", "source", "record", "smiles", "name", "total_charge")
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
    p.add_argument("--fragments", choices=FRAGMENTS, default="separate",
                   help="SMILES of several fragments (salts, hydrates: 'CCO.O'): embed each "
                        "and place them apart (separate, default) or keep only the largest; "
                        "the warning column says which")
    p.add_argument("--max-heavy-atoms", type=_positive_int, default=DEFAULT_MAX_HEAVY_ATOMS,
                   metavar="N", help=f"refuse SMILES with more heavy atoms (default "
                                     f"{DEFAULT_MAX_HEAVY_ATOMS}; longer than "
                                     f"{max_smiles_length(DEFAULT_MAX_HEAVY_ATOMS)} "
                                     f"characters: refused unparsed)")
    p.add_argument("--embed-timeout", type=_nonnegative_float, default=DEFAULT_EMBED_TIMEOUT,
                   metavar="S", help=f"seconds one SMILES may take to embed, else an error row "
                                     f"(default {DEFAULT_EMBED_TIMEOUT:g}; 0: no limit)")
    p.add_argument("--compile", action="store_const", const=True, default="auto",
                   help="run the model through torch.compile for every batch: the first "
                        "batch compiles (tens of seconds on a CPU), later ones run faster; "
                        "worth it for long inputs, not for a handful of molecules (default: "
                        "only batches of large structures, 2^18 edges and more, compile)")
    p.add_argument("--no-compile", dest="compile", action="store_const", const=False,
                   help="never compile (not even large structures)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: fastest on a shared machine, see "
                        "docs/cluster.md; 0: torch's default, one per core)")
    p.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="memory one structure may use, e.g. 16GB (default: the "
                        "MOLSYM_MEMORY_LIMIT variable, else what the system has available); a "
                        "structure estimated to need more is refused with a message saying how "
                        "many atoms fit")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help=f"progress bar on stderr (auto: on a terminal, >= {PROGRESS_MIN} "
                        f"molecules)")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def output_problem(path: Path, inputs: Sequence[str]) -> str:
    """Why ``path`` cannot take an output file ('' when it can): a folder, under something
    that is not a folder, not writable, or one of the ``inputs`` (it would be destroyed)."""
    target = path.expanduser().absolute()
    if target.is_dir():
        return "is a directory"
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a directory"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot write in {parent}"
            break
    for arg in inputs:
        if path_kind(arg) != "file":
            continue
        same = Path(arg).resolve() == target.resolve()
        if same or (target.exists() and os.path.samefile(arg, target)):
            return "is also an input; refusing to overwrite it"
    return ""


def check_outputs(args: argparse.Namespace) -> str:
    """The first problem with ``-o``/``--forces`` as a one-line message ('' if none)."""
    named = [(flag, p) for flag, p in (("-o", args.output), ("--forces", args.forces))
             if p is not None]
    for flag, path in named:
        problem = output_problem(path, args.inputs)
        if problem:
            return f"{flag} {path}: {problem}"
    if len(named) == 2 and named[0][1].absolute().resolve() == named[1][1].absolute().resolve():
        return f"-o and --forces name the same file {args.output}"
    return ""


def write_forces(entries: Sequence, path: Path) -> None:
    """extxyz of every predicted structure with its predicted energy and forces (atomically);
    labels the input carried (its own energy, forces, ...) are not copied."""
    import ase
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for e in entries:
        if e.error or e.atoms is None or e.forces is None:
            continue
        src = e.atoms
        atoms = ase.Atoms(numbers=src.numbers, positions=src.positions, cell=src.cell,
                          pbc=src.pbc)  # the input's own labels (energy, forces) stay behind
        atoms.info = {k: v for k, v in src.info.items()
                      if k in KEPT_INFO and isinstance(v, (str, int, float))}
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


def _fail(message: str) -> int:
    print(f"molsym predict: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym predict``; returns the exit status (0 ok, 1 some failed, 2 usage,
    130 interrupted)."""
    args = build_parser().parse_args(argv)  # exits with status 2 on a usage error
    written: list[Path] = []
    try:
        return _run(args, written)
    except KeyboardInterrupt:
        done = f"only {', '.join(map(str, written))} written" if written else "nothing written"
        print(f"molsym predict: interrupted; {done}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, written: list[Path]) -> int:
    import torch

    threads = torch.get_num_threads()
    try:
        return _run_with_threads(args, written)
    finally:
        torch.set_num_threads(threads)


def _run_with_threads(args: argparse.Namespace, written: list[Path]) -> int:
    import torch

    from molsym.inference.predictor import Predictor

    problem = check_outputs(args)  # before any work: a bad path must not waste the run
    if problem:
        return _fail(problem)
    if args.threads < 0:
        return _fail(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        predictor = Predictor(args.model, device=args.device, dtype=args.dtype,
                              batch_atoms=args.batch_atoms, compile=args.compile,
                              memory_limit=args.memory_limit)
    except (ConfigError, MolsymError, OSError) as err:
        return _fail(str(err))
    if args.forces is not None and "forces" not in predictor.outputs:
        return _fail(f"--forces: the model predicts no forces (outputs: "
                     f"{', '.join(predictor.outputs)})")
    embed = {"fragments": args.fragments, "max_heavy_atoms": args.max_heavy_atoms,
             "embed_timeout": args.embed_timeout or None}
    entries = gather(args.inputs, n_jobs=args.jobs, **embed)
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
        written.append(args.output)
    if args.forces is not None:
        write_forces(entries, args.forces)
        written.append(args.forces)
    failed = int((table["error"] != "").sum())
    if failed:
        print(f"molsym predict: {failed} of {len(table)} molecule(s) failed; see the error "
              f"column", file=sys.stderr)
        refused = [e.error for e in entries if MEMORY_REFUSAL in e.error]
        if refused:
            print(f"molsym predict: {refused[0]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
