"""``molsym export``: a trained model as an artifact that runs with plain torch.

    molsym export --model runs/x/model.pt -o model.pt2                  # torch.export program
    molsym export --model qm9 -o qm9_cuda.pt2 --format aoti --device cuda  # AOTInductor

The calling convention of the artifact is described in docs/export.md and
:mod:`molsym.deploy.export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molsym.errors import MolsymError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="molsym export",
        description="Export a trained molsym model (energy and forces in one graph) to a .pt2 "
        "file that runs with plain torch, without molsym; metadata (cutoff, elements, units, "
        "inputs) goes into the file and into OUT.json.",
    )
    p.add_argument("--model", "-m", required=True,
                   help="deploy file (model.pt) or the name of a bundled pretrained model")
    p.add_argument("--output", "-o", required=True, type=Path, help="artifact to write (.pt2)")
    p.add_argument("--format", "-f", choices=["export", "aoti"], default="export",
                   help="export: torch.export program, portable, quick to make (default); "
                   "aoti: AOTInductor-compiled package for --device (needs a C++ compiler, "
                   "takes minutes)")
    p.add_argument("--device", default="cpu", help="device the artifact runs on (cpu, cuda)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="floating dtype of the artifact (default: the model's)")
    p.add_argument("--no-check", action="store_true",
                   help="skip reloading the artifact and comparing it with the Python model")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym export``; returns the exit status (0 ok, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    from molsym.deploy import load_model
    from molsym.deploy.export import export_model
    from molsym.dtypes import resolve_dtype

    try:
        model = load_model(args.model)
        dtype = resolve_dtype(args.dtype) if args.dtype else None
        meta = export_model(model, args.output, format=args.format, device=args.device,
                            dtype=dtype, check=not args.no_check)
    except (MolsymError, OSError) as err:
        parser.print_usage(sys.stderr)
        print(f"molsym export: error: {err}", file=sys.stderr)
        return 2
    symbols = meta["elements"]
    print(f"wrote {args.output} ({meta['format']}, {meta['device']}, {meta['dtype']}; "
          f"cutoff {meta['cutoff']} Angstrom, elements {symbols}, outputs "
          f"{', '.join(meta['outputs'])})")
    if "check_max_rel_deviation" in meta:
        print(f"checked against the Python model: max relative deviation "
              f"{meta['check_max_rel_deviation']:.2e}")
    print(f"metadata: {args.output}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
