"""Drive i-PI (path-integral MD, thermostats, replica exchange) with a molsym model.

i-PI is the server: it integrates the beads and asks a client for energies and forces over a
socket. This module is the client: ASE's ``SocketClient`` with ``MolsymCalculator``::

    i-pi input.xml &                               # waits on the socket named in input.xml
    python -m molsym.engines.ipi --model model.pt --init init.xyz --unix molsym

or in Python: ``run_client(model, ase.io.read("init.xyz"), unixsocket="molsym")``.
:func:`input_xml` writes an i-PI input for a molecule or a periodic box (docs/md_engines.md).

i-PI works in atomic units on the wire; ASE's socket code converts (Bohr, Hartree) at the
edge, so the calculator sees Angstrom and returns eV and eV/Angstrom.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import ase
import ase.io
import numpy as np

from molsym.inference.calculator import MolsymCalculator

#: i-PI and ASE put a unix socket named ``name`` at this path prefix + name.
UNIX_SOCKET_PREFIX = "/tmp/ipi_"


def run_client(model: Any, atoms: ase.Atoms, *, unixsocket: str | None = None,
               port: int | None = None, host: str = "localhost", device: str = "cpu",
               dtype: str = "float64", compile: bool | str = "auto",
               timeout: float | None = None, connect_wait_s: float = 60.0) -> int:
    """Serve i-PI's force requests with ``model`` until i-PI sends EXIT; returns the number of
    force evaluations.

    Args:
        model: molsym model, deploy-file path or pretrained name.
        atoms: the system's elements in i-PI's atom order (positions and cell come from
            i-PI with every request); periodic in all three directions -> the virial is sent
            (from the model's stress), else zeros.
        unixsocket: name of i-PI's unix socket (``<address>`` with ``mode="unix"``), or
        port/host: i-PI's inet socket.
        connect_wait_s: how long to retry while i-PI is not listening yet (it creates its
            socket file before it accepts connections, and a busy machine widens the gap).
    """
    atoms = atoms.copy()
    atoms.calc = MolsymCalculator(model, device=device, dtype=dtype, compile=compile)
    client = _connect(host, port, unixsocket, timeout, connect_wait_s)
    calls = 0
    try:
        for _ in client.irun(atoms, use_stress=bool(atoms.pbc.all())):
            calls += 1
    finally:
        client.close()
    return calls


def _connect(host: str, port: int | None, unixsocket: str | None, timeout: float | None,
             wait_s: float):
    """ASE's ``SocketClient`` on i-PI's socket, retried every 0.2 s for ``wait_s`` seconds
    while the connection is refused or the socket file is not there yet."""
    import time

    from ase.calculators.socketio import SocketClient

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return SocketClient(host=host, port=port, unixsocket=unixsocket, timeout=timeout)
        except (ConnectionRefusedError, FileNotFoundError):
            if time.monotonic() >= deadline:
                where = (UNIX_SOCKET_PREFIX + unixsocket if unixsocket is not None
                         else f"{host}:{port}")
                raise ConnectionRefusedError(
                    f"i-PI does not accept connections on {where} after {wait_s:g} s: is it "
                    "running with that <address> in its input?") from None
            time.sleep(0.2)


def write_ipi_xyz(atoms: ase.Atoms, path: str | Path) -> Path:
    """Write ``atoms`` as an i-PI xyz file in Angstrom with its cell in the comment line
    (a 1000 Angstrom box for a molecule: i-PI needs a cell, the model ignores it)."""
    path = Path(path)
    if atoms.pbc.all():
        a, b, c, alpha, beta, gamma = atoms.cell.cellpar()
    else:
        a = b = c = 1000.0
        alpha = beta = gamma = 90.0
    lines = [str(len(atoms)),
             f"# CELL(abcABC): {a:.8f} {b:.8f} {c:.8f} {alpha:.6f} {beta:.6f} {gamma:.6f} "
             "positions{angstrom} cell{angstrom}"]
    for symbol, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True):
        lines.append(f"{symbol} {x:.10f} {y:.10f} {z:.10f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def input_xml(init: str, *, unixsocket: str = "molsym", nbeads: int = 8,
              temperature_K: float = 300.0, timestep_fs: float = 0.5, steps: int = 1000,
              periodic: bool = False, prefix: str = "simulation", seed: int = 31415,
              stride: int = 1, ensemble: str = "nvt") -> str:
    """An i-PI input: path-integral NVT (PILE-L thermostat; ``ensemble="nve"``: none) of the
    structure in the i-PI xyz file ``init`` (see :func:`write_ipi_xyz`), forces from a unix
    socket client.

    Output: ``<prefix>.out`` (step, time, conserved, temperature, potential, kinetic_cv, every
    ``stride`` steps) and ``<prefix>.pos_*.xyz`` bead trajectories (every 10 strides).
    """
    pbc = "true" if periodic else "false"
    if ensemble not in ("nvt", "nve"):
        raise ValueError(f"ensemble must be 'nvt' or 'nve', not {ensemble!r}")
    thermostat = ("""
        <thermostat mode="pile_l">
          <tau units="femtosecond">100</tau>
        </thermostat>""" if ensemble == "nvt" else "")
    return f"""<simulation verbosity="low" safe_stride="{10 * stride}">
  <output prefix="{prefix}">
    <properties stride="{stride}" filename="out" flush="1">
      [ step, time{{picosecond}}, conserved{{electronvolt}}, temperature{{kelvin}},
        potential{{electronvolt}}, kinetic_cv{{electronvolt}} ]
    </properties>
    <trajectory stride="{10 * stride}" filename="pos" format="xyz" cell_units="angstrom">
      positions{{angstrom}}
    </trajectory>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>{seed}</seed></prng>
  <ffsocket name="molsym" mode="unix" pbc="{pbc}">
    <address>{unixsocket}</address>
  </ffsocket>
  <system>
    <initialize nbeads="{nbeads}">
      <file mode="xyz">{init}</file>
      <velocities mode="thermal" units="kelvin">{temperature_K}</velocities>
    </initialize>
    <forces><force forcefield="molsym"/></forces>
    <ensemble><temperature units="kelvin">{temperature_K}</temperature></ensemble>
    <motion mode="dynamics">
      <dynamics mode="{ensemble}">
        <timestep units="femtosecond">{timestep_fs}</timestep>{thermostat}
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def read_properties(path: str | Path) -> np.ndarray:
    """The columns of an i-PI ``.out`` properties file as a (steps, columns) array."""
    return np.atleast_2d(np.loadtxt(path, comments="#"))


def main(argv: list[str] | None = None) -> None:
    """``python -m molsym.engines.ipi``: serve an i-PI simulation with a molsym model."""
    parser = argparse.ArgumentParser(prog="python -m molsym.engines.ipi",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="deploy file or pretrained name")
    parser.add_argument("--init", required=True,
                        help="structure in i-PI's atom order: the i-PI xyz file (read as plain "
                        "xyz: elements and order) or any ASE-readable file")
    parser.add_argument("--periodic", action="store_true",
                        help="periodic box: send i-PI the virial (from the model's stress)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", help="i-PI unix socket name (<address> in input.xml)")
    where.add_argument("--port", type=int, help="i-PI inet socket port")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--compile", action="store_const", const=True, default="auto",
                        help="compile for every structure (default: large ones only)")
    parser.add_argument("--no-compile", dest="compile", action="store_const", const=False,
                        help="never compile (not even large structures)")
    args = parser.parse_args(argv)
    fmt = "xyz" if str(args.init).endswith(".xyz") else None
    atoms = ase.io.read(args.init, format=fmt)
    atoms.pbc = args.periodic
    calls = run_client(args.model, atoms, unixsocket=args.unix, port=args.port,
                       host=args.host, device=args.device, dtype=args.dtype,
                       compile=args.compile)
    print(f"molsym i-PI client: {calls} force evaluations, i-PI sent EXIT")


if __name__ == "__main__":
    main()
