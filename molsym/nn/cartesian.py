"""Cartesian tensor features for E(3)-equivariant networks, without spherical harmonics.

Node features are stored as one tensor ``H`` of shape (K, N, C): K Cartesian components,
N atoms, C channels. The components are, in order,

- ``H[0]``: scalars (l = 0),
- ``H[1:4]``: the x, y, z components of polar vectors (l = 1),
- ``H[4:13]``: the 3x3 row-major entries of traceless symmetric rank-2 tensors (l = 2),

so K = 1, 4 or 13 for ``l_max`` = 0, 1, 2. Every feature is a *true* tensor (even parity
for l = 0, 2; odd, polar, for l = 1): features are built only from edge vectors, outer and
dot products and matrix products of symmetric tensors, never from cross products, so an
improper rotation acts on them exactly as ``R`` does and energies stay E(3)-invariant.
"""

from __future__ import annotations

import torch
from torch import nn

#: Number of Cartesian components for each ``l_max``.
NUM_COMPONENTS = {0: 1, 1: 4, 2: 13}
#: Angular order l of each of the 13 components.
COMPONENT_L = (0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2)


def num_components(l_max: int) -> int:
    """K for ``l_max`` in {0, 1, 2}."""
    if l_max not in NUM_COMPONENTS:
        raise ValueError(f"l_max must be 0, 1 or 2, got {l_max!r}")
    return NUM_COMPONENTS[l_max]


def edge_harmonics(unit: torch.Tensor, l_max: int) -> torch.Tensor:
    """Cartesian harmonics ``[1, u, u u^T - I/3]`` of unit edge vectors.

    Input ``unit`` (E, 3). Output (K, E), K = ``num_components(l_max)``.
    """
    parts = [torch.ones_like(unit[:, 0]).unsqueeze(0)]
    if l_max >= 1:
        parts.append(unit.transpose(0, 1))
    if l_max >= 2:
        outer = unit.unsqueeze(2) * unit.unsqueeze(1)  # (E, 3, 3)
        eye = torch.eye(3, dtype=unit.dtype, device=unit.device)
        parts.append((outer - eye / 3.0).reshape(-1, 9).transpose(0, 1))
    return torch.cat(parts, dim=0)


def edge_tensors(unit: torch.Tensor, l_max: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Polar unit vectors (3, E) and ``u u^T - I/3`` (3, 3, E) for ``l_max`` >= 1, 2 (else None).

    Input ``unit`` (E, 3). The same quantities as :func:`edge_harmonics`, unconcatenated.
    """
    u = unit.transpose(0, 1) if l_max >= 1 else None
    y2 = None
    if l_max >= 2:
        eye = torch.eye(3, dtype=unit.dtype, device=unit.device).unsqueeze(-1)
        y2 = u.unsqueeze(1) * u.unsqueeze(0) - eye / 3.0
    return u, y2


def sym_traceless(m: torch.Tensor) -> torch.Tensor:
    """Traceless symmetric part of rank-2 tensors ``m`` of shape (3, 3, ...)."""
    sym = 0.5 * (m + m.transpose(0, 1))
    trace = sym[0, 0] + sym[1, 1] + sym[2, 2]
    eye = torch.eye(3, dtype=m.dtype, device=m.device).view(3, 3, *([1] * (m.dim() - 2)))
    return sym - eye * (trace / 3.0).unsqueeze(0).unsqueeze(0)


class EquivariantLinear(nn.Module):
    """Channel mixing with one weight matrix per l (commutes with rotations and reflections).

    Input (K, N, C_in) with K <= ``num_components(l_max)``; output (K, N, C_out). No bias.
    With ``rank3`` (l_max 2) the input may carry the 27 components of rank-3 tensors after
    the 13 (K = 40), mixed by one more matrix.
    """

    def __init__(self, in_channels: int, out_channels: int, l_max: int, rank3: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(l_max + 1 + bool(rank3), in_channels,
                                               out_channels))
        self.weight.data.mul_(in_channels**-0.5)
        # rank3: 27 more components (a rank-3 tensor, l = 3) after those of l_max, own matrix
        component_l = COMPONENT_L[: num_components(l_max)] + (l_max + 1,) * (27 * bool(rank3))
        self.register_buffer("component_l", torch.tensor(component_l), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weight = self.weight[self.component_l[: h.shape[0]]]  # (K, C_in, C_out)
        return torch.bmm(h, weight)


class SpeciesLinear(nn.Module):
    """Element-dependent channel mixing, one matrix per l and element: ``h + h @ W[l, z]``.

    Input (K, N, C) and species indices (N,); output (K, N, C). ``W`` starts at zero, so the
    block starts as the identity; being a channel map of each l it commutes with rotations.
    """

    def __init__(self, num_elements: int, num_channels: int, l_max: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(l_max + 1, num_elements, num_channels,
                                               num_channels))

    def forward(self, h: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        k = h.shape[0]
        sizes = [1, 3, 9][: {1: 1, 4: 2, 13: 3}[k]]
        parts = h.split(sizes, dim=0)
        mixed = [torch.einsum("knc,ncd->knd", part, self.weight[rank].index_select(0, species))
                 for rank, part in enumerate(parts)]
        return h + (mixed[0] if len(mixed) == 1 else torch.cat(mixed, dim=0))


def _cat_channels(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def split_components(h: torch.Tensor) -> list[torch.Tensor]:
    """(K, N, C) -> [scalars (N, C), vectors (3, N, C), tensors (3, 3, N, C)] (as present).

    One ``split`` (its backward is a single ``cat``) instead of several slices.
    """
    k, rest = h.shape[0], h.shape[1:]  # comparisons only: k may be symbolic when traced
    sizes = ([1, 3, 9, 27] if k == 40 else [1, 3, 9] if k == 13 else [1, 3] if k == 4
             else [1])
    parts = h.split(sizes, dim=0)
    out = [parts[0].squeeze(0)]
    if len(sizes) >= 2:
        out.append(parts[1])
    if len(sizes) >= 3:
        out.append(parts[2].view(3, 3, *rest))
    if len(sizes) == 4:  # rank-3 tensors of the neighbour density (rank3_density)
        out.append(parts[3].view(3, 3, 3, *rest))
    return out


def sym_traceless3(m: torch.Tensor) -> torch.Tensor:
    """Symmetric traceless part of rank-3 tensors ``m`` of shape (3, 3, 3, ...) (l = 3)."""
    sym = (m + m.permute(0, 2, 1, *range(3, m.dim())) + m.permute(1, 0, 2, *range(3, m.dim()))
           + m.permute(1, 2, 0, *range(3, m.dim())) + m.permute(2, 0, 1, *range(3, m.dim()))
           + m.permute(2, 1, 0, *range(3, m.dim()))) / 6.0
    trace = sym[0, 0] + sym[1, 1] + sym[2, 2]  # (3, ...): t_c = S_aac
    eye = torch.eye(3, dtype=m.dtype, device=m.device).view(3, 3, *([1] * (m.dim() - 3)))
    # S - (d_ab t_c + d_ac t_b + d_bc t_a) / 5 has every trace zero
    correction = (eye.unsqueeze(2) * trace.unsqueeze(0).unsqueeze(0)
                  + eye.unsqueeze(1) * trace.unsqueeze(0).unsqueeze(2)
                  + eye.unsqueeze(0) * trace.unsqueeze(1).unsqueeze(2))
    return sym - correction / 5.0


class ProductBlock(nn.Module):
    """Many-body features from products of the neighbour density ``A`` at each atom.

    ``A`` (K, N, C) is mixed into two copies ``a``, ``b``; their products (dot products,
    ``b0 * a``, outer products, matrix products, ``a1^T b2 a1``) raise the body order from
    2 (A itself) to 3 and 4. Output (K, N, C): one linear map per l over all products.

    With ``num_elements`` (``species_products``), each product of each channel is weighed by
    ``1 + g[z, term, channel]`` of the atom's element before those maps, as MACE's
    element-dependent contraction weights (per element, path and channel): the relative
    weight of 2-, 3- and 4-body terms can then differ between elements. ``g`` starts at
    zero, so the block starts as the shared one; species indices go to :meth:`forward`.

    With ``rank3`` (``rank3_density``; l_max 2) ``A`` also carries rank-3 (l = 3) tensors
    (K = 40) and the products gain ``a3 . b3`` (a 3-body scalar with the angular resolution
    of P3), ``a3 : b2`` (a vector) and ``a3 . b1`` (a rank-2 tensor), and with
    ``more_scalars`` the 4-body ``(a3 . b3) b0`` and ``b1 . (a3 : b2)``. The output stays
    l <= 2 (K = 13): rank-3 features live in ``A`` only, as MACE's l = 3 density with l <= 1
    messages.
    """

    def __init__(self, num_channels: int, l_max: int, more_scalars: bool = False,
                 num_elements: int = 0, rank3: bool = False):
        super().__init__()
        c = num_channels
        self.l_max = l_max
        self.more_scalars = bool(more_scalars)
        self.rank3 = bool(rank3)
        if self.rank3 and l_max != 2:
            raise ValueError("rank-3 products need l_max = 2")
        self.mix = EquivariantLinear(c, 2 * c, l_max, self.rank3)
        n_scalar = {0: 2, 1: 4, 2: 6}[l_max] + (num_more_scalars(l_max) if more_scalars else 0)
        n_scalar += (1 + 2 * self.more_scalars) * self.rank3
        self.out_scalar = nn.Linear(n_scalar * c, c)
        n_vec = {0: 0, 1: 3, 2: 4}[l_max] + self.rank3
        n_tensor = 4 + self.rank3
        if l_max >= 1:
            self.out_vector = nn.Parameter(torch.randn(n_vec * c, c) * (n_vec * c) ** -0.5)
        if l_max >= 2:
            self.out_tensor = nn.Parameter(torch.randn(n_tensor * c, c) * (n_tensor * c) ** -0.5)
        #: products per l (scalars, vectors, tensors), the layout of ``element_weights``
        self.num_terms = [n_scalar, n_vec, n_tensor][: l_max + 1]
        self.element_weights = nn.Parameter(
            torch.zeros(num_elements, sum(self.num_terms), c)) if num_elements else None

    def forward(self, a_in: torch.Tensor, species: torch.Tensor | None = None) -> torch.Tensor:
        x = self.mix(a_in)
        k, n, c2 = x.shape
        a_full, b_full = x.view(k, n, 2, c2 // 2).unbind(2)
        terms = product_terms(a_full, b_full, self.l_max, self.more_scalars)
        if self.element_weights is not None:
            terms = weigh_terms(terms, self.num_terms,
                                self.element_weights.index_select(0, species))
        scalars, vectors, tensors = terms
        s_out = self.out_scalar(scalars).unsqueeze(0)
        if self.l_max == 0:
            return s_out
        v_out = vectors @ self.out_vector
        if self.l_max == 1:
            return torch.cat([s_out, v_out], dim=0)
        return torch.cat([s_out, v_out, tensors @ self.out_tensor], dim=0)


def weigh_terms(terms: tuple, num_terms: list[int], gain: torch.Tensor) -> tuple:
    """The products of :func:`product_terms` (scalars (N, S*C), vectors (3, N, V*C), tensors
    (9, N, 4*C)) each multiplied by ``1 + gain`` of its atom, term and channel: ``gain``
    (N, S + V + 4, C), the per-atom rows of :class:`ProductBlock`'s ``element_weights``.
    Elementwise over the trailing axes: a committee passes (..., N, M, S*C) and
    ``gain`` (N, M, S + V + 4, C)."""
    out, start = [], 0
    for part, count in zip(terms, num_terms, strict=False):
        g = 1.0 + gain.narrow(-2, start, count)  # (N, [M,] T, C)
        out.append((part.unflatten(-1, (count, -1)) * g).flatten(-2))
        start += count
    return (*out, *terms[len(out):])


def num_more_scalars(l_max: int) -> int:
    """How many scalar products ``more_scalars`` adds to :func:`product_terms`."""
    return {0: 1, 1: 2, 2: 4}[l_max]


def product_terms(
    a_full: torch.Tensor, b_full: torch.Tensor, l_max: int, more_scalars: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The products of :class:`ProductBlock` from its two mixed copies ``a``, ``b`` (K, N, C),
    concatenated along channels for its output maps: scalars (N, S*C), vectors (3, N, V*C)
    and tensors (9, N, 4*C) (None below their ``l_max``). Elementwise over the trailing axes:
    a committee (:mod:`molsym.models.stacked`) passes (K, N, M, C) and gets (..., M, S*C).

    ``more_scalars`` appends 4-body scalars that the default set leaves out, after it (so
    the default layout stays): ``a0 b0 b0`` and ``(b1.b1) a0``; with rank 2 also
    ``(a2:b2) b0`` and ``b1^T b2 a1``. Rank-3 parts of ``a``, ``b`` (K = 40) add the terms of
    :class:`ProductBlock`'s ``rank3`` at the end of each list."""
    a, b = split_components(a_full), split_components(b_full)
    a0, b0 = a[0], b[0]
    scalars = [a0, a0 * b0]
    more = [a0 * b0 * b0] if more_scalars else []  # formed only when asked (no dead work)
    if l_max == 0:
        return _cat_channels(scalars + more), None, None
    a1, b1 = a[1], b[1]
    dot = (a1 * b1).sum(0)
    scalars += [dot, dot * b0]
    if more_scalars:
        more.append((b1 * b1).sum(0) * a0)
    vectors = [a1, b0 * a1, dot * b1]
    tensors = None
    if l_max >= 2:
        a2, b2 = a[2], b[2]
        b2a1 = (b2 * a1).sum(1)  # b2 @ a1, (3, N, C)
        a2b2 = (a2 * b2).sum((0, 1))
        scalars += [a2b2, (a1 * b2a1).sum(0)]
        if more_scalars:
            more += [a2b2 * b0, (b1 * b2a1).sum(0)]
        vectors.append(b2a1)
        parts = [
            a2,
            b0 * a2,
            sym_traceless(a1.unsqueeze(1) * b1),
            sym_traceless(torch.einsum("ab...,bd...->ad...", a2, b2)),
        ]
        if len(a) == 4:  # rank-3 density (rank3_density), after the terms above
            a3, b3 = a[3], b[3]
            a3b3 = (a3 * b3).sum((0, 1, 2))
            a3b2 = (a3 * b2.unsqueeze(0)).sum((1, 2))  # a3 : b2, (3, N, C)
            more += [a3b3] + ([a3b3 * b0, (b1 * a3b2).sum(0)] if more_scalars else [])
            vectors.append(a3b2)
            parts.append((a3 * b1.unsqueeze(0).unsqueeze(0)).sum(2))  # symmetric, traceless
        tensors = _cat_channels([t.reshape(9, *t.shape[2:]) for t in parts])
    return _cat_channels(scalars + more), _cat_channels(vectors), tensors
