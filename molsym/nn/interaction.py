"""Message-passing blocks: the Cartesian equivariant interaction and a SchNet-style one.

Both take plain tensors: node features, per-edge radial basis (E, num_radial) and envelope
(E,), and ``edge_index`` (2, E) with row 0 the receiving centre i and row 1 the neighbour j.
"""

from __future__ import annotations

import torch
from torch import nn

from molsym.nn.cartesian import (
    EquivariantLinear,
    split_components,
    sym_traceless,
    sym_traceless3,
)


def path_names(l_in: int, l_max: int, full_paths: bool = False,
               rank3: bool = False) -> list[str]:
    """Names of the coupling paths of :class:`CartesianInteraction`, in the order of their
    slices of the radial weights (the layout of saved models: never reorder).

    l_out = 0: ``s``, ``v.u``, ``u.T.u``; l_out = 1: ``s u``, ``v``, ``T u``; l_out = 2: ``s Y2``,
    ``sym(u v)``, ``T``; ``full_paths`` adds ``(v.u) u``, ``(u.T.u) u`` (l_out = 1) and
    ``(v.u) Y2``, ``(u.T.u) Y2``, ``sym(u T u)`` (l_out = 2); ``rank3`` (l_max 2) appends the
    rank-3 paths ``s Y3``, ``sym(u u v)``, ``sym(u T)``.
    """
    l_in = min(l_in, 2)
    full_vu, full_utu = full_paths and l_in >= 1, full_paths and l_in >= 2
    names = ["s"] + ["v.u"] * (l_in >= 1) + ["u.T.u"] * (l_in >= 2)
    if l_max >= 1:
        names += ["s u"] + ["(v.u) u"] * full_vu + ["(u.T.u) u"] * full_utu
        names += ["v"] * (l_in >= 1) + ["T u"] * (l_in >= 2)
    if l_max >= 2:
        names += ["s Y2"] + ["(v.u) Y2"] * full_vu + ["(u.T.u) Y2"] * full_utu
        names += ["sym(u v)"] * (l_in >= 1) + ["sym(u T u)"] * full_utu + ["T"] * (l_in >= 2)
    if rank3 and l_max >= 2:
        names += ["s Y3"] + ["sym(u u v)"] * (l_in >= 1) + ["sym(u T)"] * (l_in >= 2)
    return names


class CartesianInteraction(nn.Module):
    """Equivariant neighbour density ``A_i = sum_j R(r_ij) * (h_j (x) Y(u_ij)) / avg_neighbours``.

    Inputs: ``h`` (K_in, N, C) with K_in = ``num_components(l_in)``; ``unit`` (3, E) unit edge
    vectors (None for l_max = 0); ``weights`` (E, num_paths * C) radial weights (zero beyond
    the cutoff), e.g. from a :class:`~molsym.nn.RadialMLP` shared by all layers; with
    ``paired`` (edges in paired order, :mod:`molsym.nn.pairs`) one row per pair, (E/2, ...),
    broadcast over both directions. Output ``A``
    (K, N, C), K = ``num_components(l_max)``. Every coupling of an l_in feature of atom j
    with the edge direction into an l_out <= l_max feature is a path with its own radial
    weights: by default those with edge harmonics up to the order the coupling needs at
    least (s Y_l, v.u, u.T.u, T u, sym(u v), ...); ``full_paths`` adds the couplings through
    higher edge harmonics (l = 1 with Y2 into l = 1; l = 2 with Y2 and Y3 into l = 1 and 2;
    l = 2 with Y4 into l = 2), written as ``(v.u) u``, ``(u.T.u) u`` and, for rank 2,
    ``(v.u) u u``, ``u (T u)`` and ``(u.T.u) u u`` (made symmetric-traceless after the sum).
    They reuse the dot products already formed, so they cost a few multiply-adds per edge
    and more radial outputs. With ``rank3`` (l_max 2) ``A`` also has rank-3 (l = 3)
    components (K = 40, after the 13): ``s_j Y3(u)``, ``sym0(u u v_j)`` and ``sym0(u T_j)``,
    for the product block only (:class:`~molsym.nn.cartesian.ProductBlock`).
    """

    def __init__(self, num_channels: int, l_in: int, l_max: int, avg_num_neighbors: float,
                 full_paths: bool = False, rank3: bool = False):
        super().__init__()
        self.l_in = min(l_in, l_max)
        self.l_max = l_max
        self.full_paths = bool(full_paths)
        self.rank3 = bool(rank3) and l_max >= 2
        self.num_channels = num_channels
        self.up = EquivariantLinear(num_channels, num_channels, self.l_in)
        self.path_names = path_names(self.l_in, l_max, self.full_paths, self.rank3)
        self.num_paths = len(self.path_names)
        self.norm = 1.0 / float(avg_num_neighbors)

    def forward(
        self,
        h: torch.Tensor,
        unit: torch.Tensor | None,
        weights: torch.Tensor,
        edge_index: torch.Tensor,
        paired: bool = False,
    ) -> torch.Tensor:
        return self.finish(self.aggregate(self.up(h), unit, weights, edge_index, paired))

    def aggregate(
        self,
        hu: torch.Tensor,
        unit: torch.Tensor | None,
        weights: torch.Tensor,
        edge_index: torch.Tensor,
        paired: bool = False,
    ) -> torch.Tensor:
        """The raw neighbour sum (K, N, C) over the given edges of the mixed features
        ``hu = self.up(h)``; linear in the edges, so sums over disjoint edge chunks add up to
        the sum over all of them (:meth:`finish` then normalises it).

        Committees evaluated together (:mod:`molsym.models.stacked`) pass M members at once:
        ``hu`` (K, N, M, C), ``unit`` (3, E, M) and ``weights`` (E/D, num_paths, M, C); the
        same code then runs on the trailing (M, C) axes."""
        n, features = hu.shape[1], hu.shape[2:]  # features: (C,), or (M, C) for a committee
        # edge tensors as (..., D, E/D, *features): D = 2 directions of each pair, or 1
        directions = 2 if paired else 1
        hj = hu.index_select(1, edge_index[1])
        hj = split_components(hj.unflatten(1, (directions, -1)))
        # radial weights of each path by name, (E/D, *features) each
        if weights.dim() == 2:
            weights = weights.view(weights.shape[0], self.num_paths, *features)
        w = dict(zip(self.path_names, weights.unbind(1), strict=True))
        sj = hj[0]
        # (3, D, E/D, 1), or (3, D, E/D, M, 1) for a committee
        u = unit.unflatten(1, (directions, -1)).unsqueeze(-1) if unit is not None else None
        vj = hj[1] if self.l_in >= 1 else None
        tu = (hj[2] * u).sum(1) if self.l_in >= 2 else None  # T_j u, (3, D, E/D, C)
        vu = (vj * u).sum(0) if vj is not None else None  # v_j.u
        utu = (tu * u).sum(0) if tu is not None else None  # u.T_j.u
        m0 = w["s"] * sj
        if vu is not None:
            m0 = m0 + w["v.u"] * vu
        if utu is not None:
            m0 = m0 + w["u.T.u"] * utu
        messages = [m0.reshape(1, -1, *features)]
        if self.l_max >= 1:
            m1 = self._along_u(w, "u", sj, vu, utu) * u
            if vj is not None:
                m1 = m1 + w["v"] * vj
            if tu is not None:
                m1 = m1 + w["T u"] * tu
            messages.append(m1.reshape(3, -1, *features))
        if self.l_max >= 2:
            # sym0(u (x) q) with q = R s_j u + R' v_j (+ the full paths' terms) covers the s Y2
            # and sym0(u v) paths; the symmetric-traceless projection is linear, so it is
            # applied after the sum over neighbours (on N atoms instead of E edges). T_j is
            # already symmetric-traceless.
            q = self._along_u(w, "Y2", sj, vu, utu) * u
            if vj is not None:
                q = q + w["sym(u v)"] * vj
            if self.full_paths and tu is not None:
                q = q + w["sym(u T u)"] * tu
            m2 = u.unsqueeze(1) * q  # (3, 3, D, E/D, *features): u_a q_b
            if self.l_in >= 2:
                m2 = m2 + w["T"] * hj[2]
            messages.append(m2.reshape(9, -1, *features))
        if self.rank3:
            # u_a (u_b q_c + R T_j,bc), q = R s_j u + R' v_j: made symmetric-traceless after
            # the sum over neighbours (linear), as rank 2
            # (u u)_ab q_c and u_a T_bc as (9, 3, ...) and (3, 9, ...): the same row-major
            # abc order, no 6-dimensional broadcast
            q = w["s Y3"] * sj * u
            if vj is not None:
                q = q + w["sym(u u v)"] * vj
            uu = (u.unsqueeze(1) * u).reshape(9, *u.shape[1:])
            m3 = (uu.unsqueeze(1) * q).reshape(27, -1, *features)
            if self.l_in >= 2:
                ut = u.unsqueeze(1) * (w["sym(u T)"] * hj[2]).reshape(9, *q.shape[1:])
                m3 = m3 + ut.reshape(27, -1, *features)
            messages.append(m3)
        msg = messages[0] if len(messages) == 1 else torch.cat(messages, dim=0)  # (K, E, C)
        out = torch.zeros(msg.shape[0], n, *features, dtype=msg.dtype, device=msg.device)
        return out.index_add_(1, edge_index[0], msg)

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        """``A`` from the raw neighbour sum of :meth:`aggregate`: normalised, and the rank-2
        part made symmetric-traceless (linear, so applied once on N atoms, not per edge)."""
        out = out * self.norm
        if self.l_max < 2:
            return out
        parts = split_components(out)
        rank2 = sym_traceless(parts[2]).reshape(9, *out.shape[1:])
        rest = [sym_traceless3(parts[3]).reshape(27, *out.shape[1:])] if self.rank3 else []
        return torch.cat([parts[0].unsqueeze(0), parts[1], rank2, *rest], dim=0)


    def _along_u(self, w, harmonic, sj, vu, utu):
        """The coefficient of ``u`` in an l_out >= 1 message (``harmonic``: ``"u"`` for l_out =
        1, ``"Y2"`` for 2): ``R s_j``, plus ``R' v_j.u`` and ``R'' u.T_j.u`` with
        ``full_paths``; ``w`` holds the paths' radial weights by name."""
        coefficient = w[f"s {harmonic}"] * sj
        if self.full_paths and vu is not None:
            coefficient = coefficient + w[f"(v.u) {harmonic}"] * vu
        if self.full_paths and utu is not None:
            coefficient = coefficient + w[f"(u.T.u) {harmonic}"] * utu
        return coefficient


class CFConvInteraction(nn.Module):
    """SchNet-style continuous-filter convolution on scalar features (distances only).

    Input ``s`` (N, C) and filter ``weights`` (E, C) (zero beyond the cutoff; with ``paired``,
    one row per pair of opposite edges, (E/2, C), as in :class:`CartesianInteraction`); output the
    residual update (N, C): ``Dense(SiLU(Dense(sum_j W(r_ij) * Dense(s)_j / avg_neighbours)))``.
    """

    num_paths = 1

    def __init__(self, num_channels: int, avg_num_neighbors: float):
        super().__init__()
        self.lin_in = nn.Linear(num_channels, num_channels, bias=False)
        self.lin_out = nn.Sequential(
            nn.Linear(num_channels, num_channels), nn.SiLU(), nn.Linear(num_channels, num_channels)
        )
        self.norm = 1.0 / float(avg_num_neighbors)

    def forward(
        self, s: torch.Tensor, weights: torch.Tensor, edge_index: torch.Tensor,
        paired: bool = False,
    ) -> torch.Tensor:
        sj = self.lin_in(s).index_select(0, edge_index[1])
        msg = (sj.view(2, -1, sj.shape[1]) * weights).view_as(sj) if paired else sj * weights
        agg = torch.zeros_like(s).index_add_(0, edge_index[0], msg) * self.norm
        return self.lin_out(agg)
