"""``molsym eval --model MODEL DATA [-o metrics.json]``: MAE/RMSE per target and parity plots.

Prints a table; with ``-o`` writes ``{target: {"mae", "rmse", "unit"}}`` as JSON and one
parity plot per target (PNG) next to it. Exit status: 0 ok, 1 bad data, 2 bad arguments/model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="molsym eval",
        description="Errors of a trained model on a labelled data file (energies in meV, "
                    "forces in meV/Angstrom).",
    )
    parser.add_argument("data", help="labelled structures (.extxyz/.xyz, .npz, .sdf, .db, ...)")
    parser.add_argument("--model", required=True,
                        help="deploy file (model.pt) or the name of a bundled pretrained model")
    parser.add_argument("-o", "--output", help="write metrics JSON here, parity PNGs beside it")
    parser.add_argument("--format", default=None, help="reader format (default: by extension)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="evaluate in this precision (default: the model's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym eval``; returns the exit status."""
    args = build_parser().parse_args(argv)
    from molsym.errors import ConfigError, MolsymError

    try:
        return _run(args)
    except ConfigError as exc:
        print(f"molsym eval: error: {exc}", file=sys.stderr)
        return 2
    except MolsymError as exc:
        print(f"molsym eval: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import torch

    from molsym.atomic import write_text_atomic
    from molsym.data.graph import atoms_to_graph
    from molsym.data.readers import read_file
    from molsym.deploy import load_model
    from molsym.dtypes import model_dtype
    from molsym.elements import not_covered
    from molsym.errors import InputError
    from molsym.training.evaluate import evaluate, parity_plots
    from molsym.training.metrics import format_table

    model = load_model(args.model, dtype=args.dtype)
    dtype = model_dtype(model)
    structures = read_file(args.data, format=args.format)
    graphs = []
    for atoms in structures:
        message = not_covered(atoms.numbers, model.elements)
        if message:
            raise InputError(message, atoms.info.get("source", args.data),
                             atoms.info.get("record"))
        graphs.append(atoms_to_graph(atoms, model.cutoff, dtype=dtype))
    with torch.inference_mode(False):
        metrics, pairs = evaluate(model, graphs, batch_size=args.batch_size)
    print(format_table(metrics, f"{args.data}: {len(graphs)} structures, model {args.model}"))
    report = _calibration(model, graphs, args.batch_size)
    if report is not None:
        metrics = {**metrics, "calibration": report[0]}
    if args.output:
        out = Path(args.output)
        write_text_atomic(out, json.dumps(metrics, indent=2))
        plots = parity_plots(pairs, {k: v for k, v in metrics.items() if k != "calibration"},
                             out.parent, out.stem)
        if report is not None:
            from molsym.training.calibration import calibration_plot

            plots.append(calibration_plot(report[1], report[0],
                                          out.parent / f"{out.stem}_calibration.png"))
        print(f"metrics: {out}; plots: {', '.join(str(p) for p in plots)}")
    return 0


def _calibration(model, graphs, batch_size: int):
    """A committee's calibration report and per-structure values (None for one model)."""
    if not hasattr(model, "members"):
        return None
    import torch

    from molsym.training.calibration import calibration, per_structure

    with torch.inference_mode(False):
        values = per_structure(model, graphs, batch_size)
    report = calibration(values)
    for what, r in report.items():
        print(f"calibration ({what}, per structure): Spearman(error, spread) "
              f"{r['spearman']:.2f}; of the 10% largest errors {r['flagged_top_10pct']:.0%} "
              f"have a spread among the 10% largest ({r['structures']} structures)")
    return report, values
