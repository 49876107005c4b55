"""Building blocks: radial functions, Cartesian tensor algebra, equivariance of blocks."""

import numpy as np
import pytest
import torch

from molsym.nn import (
    BesselBasis,
    CartesianInteraction,
    EquivariantLinear,
    PolynomialCutoff,
    ProductBlock,
    edge_harmonics,
    scatter_mean,
    scatter_sum,
    sym_traceless,
)
from molsym.testing import random_orthogonal


def rotate_features(h: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Apply R to (K, N, C) Cartesian features: v -> R v, T -> R T R^T."""
    parts = [h[:1]]
    if h.shape[0] >= 4:
        parts.append(torch.einsum("ab,bnc->anc", rot, h[1:4]))
    if h.shape[0] == 13:
        t = h[4:13].reshape(3, 3, *h.shape[1:])
        parts.append(torch.einsum("ab,bdnc,ed->aenc", rot, t, rot).reshape(9, *h.shape[1:]))
    return torch.cat(parts)


def random_features(k, n=5, c=4):
    h = torch.randn(k, n, c, dtype=torch.float64)
    if k == 13:  # make the rank-2 part traceless symmetric
        t = sym_traceless(h[4:13].reshape(3, 3, n, c))
        h = torch.cat([h[:4], t.reshape(9, n, c)])
    return h


def test_envelope_vanishes_smoothly_at_cutoff():
    env = PolynomialCutoff(4.0, p=6)
    d = torch.tensor([0.0, 4.0], dtype=torch.float64, requires_grad=True)
    f = env(d)
    (g,) = torch.autograd.grad(f.sum(), d, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), d)
    assert f[0].item() == pytest.approx(1.0) and f[1].item() == pytest.approx(0.0, abs=1e-12)
    assert g[1].item() == pytest.approx(0.0, abs=1e-10)
    assert h[1].item() == pytest.approx(0.0, abs=1e-9)
    assert env(torch.tensor([4.5, 10.0])).abs().max() == 0
    inside = env(torch.linspace(0.01, 3.99, 50, dtype=torch.float64))
    assert torch.all(inside > 0) and torch.all(inside.diff() < 0)


def test_bessel_basis_is_orthonormal_with_r2_weight():
    rc = 5.0
    basis = BesselBasis(rc, 6).double()
    d = torch.linspace(1e-4, rc, 20001, dtype=torch.float64)
    b = basis(d) * d.unsqueeze(-1)  # r^2 weight
    gram = torch.trapezoid(b.unsqueeze(2) * b.unsqueeze(1), d, dim=0)
    torch.testing.assert_close(gram, torch.eye(6, dtype=torch.float64), atol=1e-4, rtol=0)


def test_trainable_bessel_frequencies_learn_and_load_both_ways():
    """A trainable basis starts as the fixed one, gets gradients, and its state loads into
    a fixed basis and back (same key, ``freqs``)."""
    fixed, trainable = BesselBasis(4.0, 6), BesselBasis(4.0, 6, trainable=True)
    d = torch.linspace(0.5, 3.9, 20)
    torch.testing.assert_close(trainable(d), fixed(d))
    assert [n for n, _ in trainable.named_parameters()] == ["freqs"]
    assert not list(fixed.parameters())
    trainable(d).square().sum().backward()
    assert trainable.freqs.grad is not None and bool(trainable.freqs.grad.abs().gt(0).all())
    with torch.no_grad():
        trainable.freqs.mul_(1.1)
    fixed.load_state_dict(trainable.state_dict())
    torch.testing.assert_close(fixed(d), trainable(d))
    trainable.load_state_dict(BesselBasis(4.0, 6).state_dict())
    torch.testing.assert_close(trainable(d), BesselBasis(4.0, 6)(d))


@pytest.mark.parametrize("proper", [True, False])
def test_edge_harmonics_transform_as_tensors(proper):
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(0), proper))
    u = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64), dim=-1)
    y = edge_harmonics(u, 2)
    t = y[4:13].reshape(3, 3, 7)
    assert torch.allclose(t, t.transpose(0, 1)) and torch.allclose(t[0, 0] + t[1, 1] + t[2, 2],
                                                                    torch.zeros(7, dtype=t.dtype))
    y_rot = edge_harmonics(u @ rot.T, 2)
    torch.testing.assert_close(y_rot.unsqueeze(-1), rotate_features(y.unsqueeze(-1), rot))


def test_sym_traceless_is_a_projection():
    m = torch.randn(3, 3, 4, dtype=torch.float64)
    p = sym_traceless(m)
    torch.testing.assert_close(p, p.transpose(0, 1))
    torch.testing.assert_close(p[0, 0] + p[1, 1] + p[2, 2], torch.zeros(4, dtype=p.dtype))
    torch.testing.assert_close(sym_traceless(p), p)


@pytest.mark.parametrize("l_max", [0, 1, 2])
@pytest.mark.parametrize("proper", [True, False])
def test_linear_and_product_blocks_commute_with_o3(l_max, proper):
    k = {0: 1, 1: 4, 2: 13}[l_max]
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(1), proper))
    h = random_features(k)
    for block in (EquivariantLinear(4, 4, l_max), ProductBlock(4, l_max),
                  ProductBlock(4, l_max, more_scalars=True)):
        block = block.double()
        torch.testing.assert_close(block(rotate_features(h, rot)),
                                   rotate_features(block(h), rot), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("l_max", [0, 1, 2])
def test_more_scalars_append_four_body_products_after_the_default_ones(l_max):
    from molsym.nn.cartesian import num_more_scalars, product_terms

    k = {0: 1, 1: 4, 2: 13}[l_max]
    a, b = random_features(k), random_features(k)
    plain = product_terms(a, b, l_max)[0]
    more = product_terms(a, b, l_max, more_scalars=True)[0]
    c = a.shape[-1]
    assert more.shape[-1] == plain.shape[-1] + num_more_scalars(l_max) * c
    torch.testing.assert_close(more[..., : plain.shape[-1]], plain)
    # 4-body: each added product is cubic in the density (a, b -> 2a, 2b scales it by 8)
    twice = product_terms(2 * a, 2 * b, l_max, more_scalars=True)[0]
    torch.testing.assert_close(twice[..., plain.shape[-1]:], 8 * more[..., plain.shape[-1]:])


def test_product_block_output_is_traceless_symmetric():
    out = ProductBlock(4, 2).double()(random_features(13))
    t = out[4:13].reshape(3, 3, 5, 4)
    torch.testing.assert_close(t, t.transpose(0, 1))
    torch.testing.assert_close(t[0, 0] + t[1, 1] + t[2, 2], torch.zeros(5, 4, dtype=t.dtype))


def test_scatter_against_loops():
    src = torch.randn(10, 3, dtype=torch.float64)
    index = torch.tensor([0, 2, 2, 1, 0, 2, 4, 4, 1, 0])
    total = scatter_sum(src, index, 5)
    mean = scatter_mean(src, index, 5)
    for b in range(5):
        rows = src[index == b]
        torch.testing.assert_close(total[b], rows.sum(0))
        want = rows.mean(0) if len(rows) else torch.zeros(3, dtype=src.dtype)
        torch.testing.assert_close(mean[b], want)
    moved = scatter_sum(src.T.contiguous(), index, 5, dim=1)
    torch.testing.assert_close(moved, total.T)


@pytest.mark.parametrize("l_in,l_max", [(0, 1), (1, 1), (0, 2), (1, 2), (2, 2)])
@pytest.mark.parametrize("full_paths", [False, True])
def test_interaction_uses_every_path_and_commutes_with_o3(l_in, l_max, full_paths):
    """Every radial weight column reaches the output (no path left unused or counted twice),
    the output transforms as the features do, and rank 2 stays symmetric-traceless."""
    torch.manual_seed(0)
    n, c = 5, 3
    edges = torch.tensor([[i, j] for i in range(n) for j in range(n) if i != j]).t()
    unit = torch.nn.functional.normalize(torch.randn(edges.shape[1], 3, dtype=torch.float64), dim=1)
    inter = CartesianInteraction(c, l_in, l_max, avg_num_neighbors=4.0, full_paths=full_paths)
    inter = inter.double()
    h = random_features({0: 1, 1: 4, 2: 13}[l_in], n, c)
    w = torch.randn(edges.shape[1], inter.num_paths * c, dtype=torch.float64, requires_grad=True)
    out = inter(h, unit.t(), w, edges)
    (grad,) = torch.autograd.grad(out.square().sum(), w)
    per_path = grad.view(-1, inter.num_paths, c).abs().sum((0, 2))
    assert bool((per_path > 1e-8).all()), per_path
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(2), False))
    rotated = inter(rotate_features(h, rot), (unit @ rot.T).t(), w, edges)
    torch.testing.assert_close(rotated, rotate_features(out, rot), atol=1e-12, rtol=1e-10)
    if l_max == 2:
        t = out[4:13].reshape(3, 3, n, c)
        torch.testing.assert_close(t, t.transpose(0, 1))
        torch.testing.assert_close(t[0, 0] + t[1, 1] + t[2, 2], torch.zeros(n, c, dtype=t.dtype))
    extra = inter.num_paths - CartesianInteraction(c, l_in, l_max, 4.0).num_paths
    assert extra == (0 if not full_paths else {(0, 1): 0, (1, 1): 1, (0, 2): 0, (1, 2): 2,
                                               (2, 2): 5}[(l_in, l_max)])


@pytest.mark.parametrize("num_layers", [1, 3])
def test_radial_mlp_vanishes_at_cutoff_with_its_derivative(num_layers):
    from molsym.nn import RadialMLP

    cutoff = 4.0
    basis, env = BesselBasis(cutoff, 6).double(), PolynomialCutoff(cutoff, 6)
    mlp = RadialMLP(6, 16, 5, num_layers).double()
    assert len(mlp.hidden) == num_layers - 1
    d = torch.tensor([cutoff - 1e-4, cutoff, cutoff + 0.5], dtype=torch.float64,
                     requires_grad=True)
    out = mlp(basis(d), env(d))
    (grad,) = torch.autograd.grad(out.sum(), d)
    assert out.abs().max() < 1e-8 and grad.abs().max() < 1e-6
    inside = mlp(basis(torch.tensor([1.5], dtype=torch.float64)),
                 env(torch.tensor([1.5], dtype=torch.float64)))
    assert inside.abs().max() > 1e-3


def test_radial_mlp_refuses_zero_layers():
    from molsym.nn import RadialMLP

    with pytest.raises(ValueError, match="num_layers"):
        RadialMLP(6, 16, 5, 0)


@pytest.mark.parametrize("l_max", [0, 1, 2])
@pytest.mark.parametrize("proper", [True, False])
def test_species_linear_commutes_with_o3_and_depends_on_the_element(l_max, proper):
    from molsym.nn.cartesian import SpeciesLinear

    k = {0: 1, 1: 4, 2: 13}[l_max]
    block = SpeciesLinear(3, 4, l_max).double()
    h = random_features(k)
    species = torch.tensor([0, 1, 2, 1, 0])
    assert torch.equal(block(h, species), h)  # the identity at initialisation
    with torch.no_grad():
        block.weight.normal_()
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(2), proper))
    out = block(h, species)
    assert torch.allclose(block(rotate_features(h, rot), species), rotate_features(out, rot),
                          atol=1e-10)
    assert_depends_on_the_element(block, h, species)


@pytest.mark.parametrize("l_max", [0, 1, 2])
@pytest.mark.parametrize("proper", [True, False])
def test_element_weighed_products_commute_with_o3_and_depend_on_the_element(l_max, proper):
    from molsym.nn.cartesian import ProductBlock

    k = {0: 1, 1: 4, 2: 13}[l_max]
    shared = ProductBlock(4, l_max, more_scalars=True).double()
    block = ProductBlock(4, l_max, more_scalars=True, num_elements=3).double()
    block.load_state_dict({**shared.state_dict(), "element_weights": block.element_weights})
    h = random_features(k)
    species = torch.tensor([0, 1, 2, 1, 0])
    assert torch.equal(block(h, species), shared(h))  # the shared block at initialisation
    with torch.no_grad():
        block.element_weights.normal_()
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(3), proper))
    out = block(h, species)
    assert torch.allclose(block(rotate_features(h, rot), species), rotate_features(out, rot),
                          atol=1e-10)
    # every weight row acts: each l's output moves when only its terms' weights change
    for rank, (start, count) in enumerate(zip([0, *np.cumsum(block.num_terms)[:-1]],
                                              block.num_terms, strict=True)):
        before = block(h, species)
        with torch.no_grad():
            block.element_weights[:, start:start + count] += 1.0
        moved = (block(h, species) - before).abs().amax(dim=(1, 2))
        components = [slice(0, 1), slice(1, 4), slice(4, 13)]
        assert moved[components[rank]].min() > 1e-6
        assert all(moved[components[r]].max() == 0 for r in range(l_max + 1) if r != rank)
    assert_depends_on_the_element(block, h, species)


def test_rank3_projection_is_symmetric_traceless_idempotent_and_rotates_as_rank3():
    from molsym.nn.cartesian import sym_traceless3

    g = torch.Generator().manual_seed(4)
    m = torch.randn(3, 3, 3, 5, 2, generator=g, dtype=torch.float64)
    t = sym_traceless3(m)
    for perm in [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]:
        assert torch.allclose(t, t.permute(*perm, 3, 4), atol=1e-12)
    for pair in [(0, 1), (0, 2), (1, 2)]:
        assert torch.diagonal(t, dim1=pair[0], dim2=pair[1]).sum(-1).abs().max() < 1e-12
    assert torch.allclose(sym_traceless3(t), t, atol=1e-12)
    assert t.abs().max() > 0.1
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(5), False))
    rotated = torch.einsum("ia,jb,kc,abc...->ijk...", rot, rot, rot, m)
    assert torch.allclose(sym_traceless3(rotated),
                          torch.einsum("ia,jb,kc,abc...->ijk...", rot, rot, rot, t), atol=1e-12)
    # the l = 3 harmonic of a direction: 7 independent components (the 3 x 3 x 3 space of
    # symmetric traceless tensors), spanned by projections of u u u
    units = torch.randn(40, 3, generator=g, dtype=torch.float64)
    units = units / units.norm(dim=1, keepdim=True)
    uuu = torch.einsum("ea,eb,ec->abce", units, units, units)
    assert torch.linalg.matrix_rank(sym_traceless3(uuu).reshape(27, 40).T) == 7


@pytest.mark.parametrize("more_scalars", [False, True])
def test_rank3_products_are_invariant_and_act(more_scalars):
    """The interaction and product block with rank-3 density: outputs rotate as l <= 2
    features under O(3), and the rank-3 paths change them (not dead weights)."""
    from molsym.nn import CartesianInteraction
    from molsym.nn.cartesian import ProductBlock

    torch.manual_seed(0)
    inter = CartesianInteraction(4, 2, 2, 3.0, rank3=True).double()
    block = ProductBlock(4, 2, more_scalars, rank3=True).double()
    h = random_features(13)
    vec = torch.randn(12, 3, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 2],
                               [1, 2, 3, 4, 0, 2, 3, 4, 0, 1, 3, 0]])
    weights = torch.randn(12, inter.num_paths * 4, dtype=torch.float64)

    def run(h, vec):
        unit = (vec / vec.norm(dim=1, keepdim=True)).T
        a = inter(h, unit, weights, edge_index)
        assert a.shape[0] == 40
        return block(a)

    out = run(h, vec)
    assert out.shape[0] == 13
    rot = torch.as_tensor(random_orthogonal(np.random.default_rng(6), False))
    assert torch.allclose(run(rotate_features(h, rot), vec @ rot.T), rotate_features(out, rot),
                          atol=1e-10)
    with torch.no_grad():
        block.mix.weight[3].zero_()  # the rank-3 copies a3, b3 gone
    assert (run(h, vec) - out).abs().max() > 1e-6


def assert_depends_on_the_element(block, h, species):
    """Atoms 1 and 3 share an element, 0 and 1 do not: same input features, different maps."""
    same = h.clone()
    same[:, 3] = same[:, 1]
    same[:, 0] = same[:, 1]
    mixed = block(same, species)
    assert torch.allclose(mixed[:, 1], mixed[:, 3])
    assert not torch.allclose(mixed[:, 0], mixed[:, 1])
