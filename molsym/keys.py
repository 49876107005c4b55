"""The one source of field names in molsym graphs, batches and model outputs.

Units inside molsym: eV, Angstrom, eV/Angstrom, elementary charge. Shapes below are for one
graph with N atoms and E directed edges; a PyG Batch concatenates along the first axis
(per-graph fields gain a leading graph axis of size B).
"""

# --- structure -------------------------------------------------------------------------
ATOMIC_NUMBERS = "z"  # (N,) int64
POSITIONS = "pos"  # (N, 3) float, Angstrom
EDGE_INDEX = "edge_index"  # (2, E) int64: row 0 = centre atom i, row 1 = neighbour j
PAIR_INDEX = "pair_index"  # (2, E/2) int64: the i < j edge of each pair of opposite edges;
#   (2, 0) for periodic graphs (image pairs are not index pairs) and lists that are not symmetric
CELL_SHIFTS = "cell_shifts"  # (E, 3) float, integer lattice translations of neighbour j
CELL = "cell"  # (1, 3, 3) float, Angstrom, rows are lattice vectors (zeros if not periodic)
PBC = "pbc"  # (1, 3) bool
BATCH = "batch"  # (N,) int64, graph index of each atom (added by PyG collation)
NUM_ATOMS = "num_atoms"  # (1,) int64
TOTAL_CHARGE = "total_charge"  # (1,) float, elementary charge
MULTIPLICITY = "multiplicity"  # (1,) float, spin multiplicity 2S+1 (oracle-labelled frames)
ID = "id"  # str, identifier of the record (file:record)

# Edge vector convention: r_ij = pos[j] - pos[i] + cell_shifts_ij @ cell, for i = edge_index[0],
# j = edge_index[1]. Both directions of every pair are present.

# --- labels and model outputs ----------------------------------------------------------
ENERGY = "energy"  # (1,) eV, total energy
FORCES = "forces"  # (N, 3) eV/Angstrom
STRESS = "stress"  # (1, 3, 3) eV/Angstrom^3
DIPOLE = "dipole"  # (1, 3) e*Angstrom
DIPOLE_MOMENT = "dipole_moment"  # (1,) e*Angstrom, magnitude |dipole| (QM9's label)
CHARGES = "charges"  # (N,) e, partial charges (model output)

#: Fields of a graph or batch that describe the structure, never labels or targets: kept by
#: every label selection, skipped by losses and label statistics (PyG adds ``ptr`` and
#: ``num_nodes`` on collation).
STRUCTURE_KEYS = frozenset({
    ATOMIC_NUMBERS, POSITIONS, EDGE_INDEX, PAIR_INDEX, CELL_SHIFTS, CELL, PBC, BATCH,
    NUM_ATOMS, TOTAL_CHARGE, MULTIPLICITY, ID, "ptr", "num_nodes",
})

#: dtype of every non-float field (int64 indices and counts, bool flags; ``id`` is a string);
#: every other tensor field (positions, cell, shifts, labels) has the data set's float dtype.
INDEX_KEYS = frozenset({ATOMIC_NUMBERS, EDGE_INDEX, PAIR_INDEX, BATCH, NUM_ATOMS})  # int64
BOOL_KEYS = frozenset({PBC})  # bool
STRING_KEYS = frozenset({ID})  # str

# Per-structure fields every graph may carry; everything else in Atoms.info that is a
# number becomes a (1,) scalar label of the same name (e.g. "homo", "lumo", "gap").
PER_GRAPH_VECTOR_KEYS = (DIPOLE,)
PER_ATOM_KEYS = (FORCES,)
