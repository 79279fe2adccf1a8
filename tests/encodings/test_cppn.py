from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import foolbench as fb
from foolbench.encodings import ACTIVATIONS, CPPNEncoding, CPPNGenomes, Encoding, Genomes
from foolbench.errors import CheckpointError, InvalidArgumentError, InvalidTypeError
from tests._genomes import evolved


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_protocol_and_minimal_initial_genomes() -> None:
    enc = CPPNEncoding((3, 16, 16))
    assert isinstance(enc, Encoding)
    g = enc.sample(5, gen())
    enc.validate(g)
    assert g.num_nodes().tolist() == [7] * 5  # 4 inputs + 3 outputs, no hidden nodes
    assert g.num_connections().tolist() == [12] * 5  # every input wired to every output
    assert torch.equal(g.weight, enc.sample(5, gen()).weight)  # seeded
    assert not torch.equal(g.weight, enc.sample(5, gen(1)).weight)
    assert float(g.weight.abs().max()) <= enc.init_weight


def test_mutations_grow_networks_and_leave_input_untouched() -> None:
    enc = CPPNEncoding((1, 28, 28), max_nodes=16, max_connections=40)
    g = enc.sample(32, gen())
    before = g.clone()
    child = enc.mutate(g, gen(1))
    assert torch.equal(g.weight, before.weight) and torch.equal(g.edge, before.edge)
    assert not torch.equal(child.weight, g.weight)
    grown = evolved(enc, n=32, rounds=60)
    enc.validate(grown)
    assert float(grown.num_nodes().float().mean()) > 8  # hidden nodes were added
    assert int(grown.num_nodes().max()) <= 16 and int(grown.num_connections().max()) <= 40  # capacities hold


def test_strength_scales_operator_probabilities() -> None:
    enc = CPPNEncoding((1, 8, 8))  # add_node 0.5
    g = enc.sample(32, gen())
    assert torch.equal(enc.mutate(g, gen(1)).weight, enc.mutate(g, gen(1), strength=1.0).weight)
    doubled = enc.mutate(g, gen(1), strength=2.0)  # add_node 0.5 * 2 = 1: every genome gains a node
    assert doubled.num_nodes().tolist() == [6] * 32
    once = enc.mutate(g, gen(1))
    assert 0 < int((once.num_nodes() == 6).sum()) < 32  # at probability 0.5 some do, some do not
    enc.validate(doubled)


def test_strength_scales_the_weight_step() -> None:
    only_weights = dict.fromkeys(("add_connection", "delete_connection", "add_node", "delete_node"), 0.0)
    enc = CPPNEncoding((3, 8, 8), change_connection=1.0, change_activation=0.0, weight_rate=0.5, **only_weights)
    g = enc.sample(16, gen())
    full = enc.mutate(g, gen(1)).weight - g.weight
    double = enc.mutate(g, gen(1), strength=2.0).weight - g.weight  # probability min(1, 2) = 1 still
    assert bool((full != 0).flatten(1).any(1).all())  # every genome perturbed
    # the same draws: each weight moves twice the step, clipped to [-10, 10]
    inside = (g.weight + 2 * full).abs() < 10
    torch.testing.assert_close(double[inside], 2 * full[inside], rtol=0, atol=1e-5)
    assert bool((g.weight + double)[~inside].abs().eq(10).all())
    strong = enc.mutate(g, gen(1), strength=1e6)
    enc.validate(strong)  # clipped to [-10, 10]
    assert torch.equal(strong.edge, g.edge)


def test_refine_moves_only_weights_of_every_genome_by_small_steps() -> None:
    enc = CPPNEncoding((3, 16, 16), max_nodes=16, max_connections=48)
    g = evolved(enc, n=32, rounds=30)
    before = g.clone()
    child = enc.refine(g, gen(1), scale=0.05)
    assert torch.equal(g.weight, before.weight)  # the input is left as it was
    for name in ("edge", "active", "activation", "order"):
        assert torch.equal(getattr(child, name), getattr(g, name)), name
    moved = child.weight != g.weight
    assert not bool(moved[~g.edge].any())  # no absent connection gets a weight
    assert bool(moved.flatten(1).any(1).all())  # every genome changes
    enc.validate(child)
    # the step is scale times the polynomial step, so refined weights move far less than mutated ones
    mutated = enc.mutate(g, gen(1), strength=1.0)
    step = (child.weight - g.weight).abs()[moved]
    assert float(step.max()) < 0.05 * 20 + 1e-5  # at most scale x the whole [-10, 10] range
    assert float(step.median()) < float((mutated.weight - g.weight).abs()[mutated.weight != g.weight].median())
    # seeded: the same generator state gives the same children, another one others
    assert torch.equal(enc.refine(g, gen(1), scale=0.05).weight, child.weight)
    assert not torch.equal(enc.refine(g, gen(2), scale=0.05).weight, child.weight)
    # a larger scale, the same draws: each weight moves scale-proportionally (away from the bounds)
    twice = enc.refine(g, gen(1), scale=0.1).weight - g.weight
    inside = (g.weight + twice).abs() < 9.99
    torch.testing.assert_close(twice[inside], 2 * (child.weight - g.weight)[inside], rtol=0, atol=1e-5)
    assert len(enc.refine(g[:0], gen(), scale=0.05)) == 0
    # the draws depend on the batch's shape only: other genomes leave the generator in the same state
    a, b = gen(3), gen(3)
    enc.refine(g, a, scale=0.05)
    enc.refine(enc.sample(32, gen(9)), b, scale=0.05)
    assert torch.equal(a.get_state(), b.get_state())


@pytest.mark.parametrize("scale", [0.0, -0.1, 1.5, float("nan")])
def test_refine_bad_scale(scale: float) -> None:
    enc = CPPNEncoding((1, 8, 8))
    with pytest.raises(InvalidArgumentError, match="scale"):
        enc.refine(enc.sample(2, gen()), gen(), scale=scale)


@pytest.mark.parametrize(("strength", "err"), [(0.0, InvalidArgumentError), (float("inf"), InvalidArgumentError)])
def test_bad_strength(strength: float, err: type[Exception]) -> None:
    enc = CPPNEncoding((1, 8, 8))
    with pytest.raises(err, match=r"strength must be a finite number in \(0, inf\)"):
        enc.mutate(enc.sample(2, gen()), gen(), strength=strength)


def test_genomes_batch_protocol() -> None:
    enc = CPPNEncoding((1, 8, 8))
    g = evolved(enc, n=6, rounds=10)
    assert isinstance(g, Genomes) and isinstance(torch.zeros(2, 1, 8, 8), Genomes)
    assert not isinstance(object(), Genomes)
    sub = g[torch.tensor([4, 1])]
    assert len(sub) == 2 and torch.equal(sub.order, g.order[[4, 1]]) and torch.equal(sub.weight, g.weight[[4, 1]])
    one = g[-1]  # an int gave one genome's rows (len 32: the node slots), not a batch
    assert len(one) == 1 and torch.equal(one.weight, g.weight[5:]) and enc.render(one).shape == (1, 1, 8, 8)
    import numpy as np

    for index in (np.int64(2), torch.tensor(2)):  # g[scores.argmax()]
        assert torch.equal(g[index].weight, g.weight[2:3])
    with pytest.raises(IndexError):
        g[6]
    copy = g.clone()
    copy[torch.tensor([0, 2])] = sub
    assert torch.equal(copy.weight[2], g.weight[1]) and torch.equal(copy.activation[0], g.activation[4])
    assert torch.equal(g.weight[0], evolved(enc, n=6, rounds=10).weight[0])  # the original is untouched
    assert list(g.as_dict()) == list(CPPNGenomes.fields) and g.to("cpu").device == torch.device("cpu")
    strided = CPPNGenomes(g.weight.transpose(1, 2), g.edge.transpose(1, 2), g.active, g.activation, g.order)
    assert strided.clone().weight.is_contiguous()  # mutation writes through flat views


def test_render_shapes_range_and_variety() -> None:
    for channels in (1, 3):
        enc = CPPNEncoding((channels, 20, 24))
        img = enc.render(evolved(enc))
        assert img.shape == (16, channels, 20, 24)
        assert torch.isfinite(img).all() and float(img.min()) >= 0 and float(img.max()) <= 1
        assert float(img.std(dim=(1, 2, 3)).mean()) > 0.05  # patterns, not flat images


# 9x9 and 7x5: rows of pixels that are no whole number of 64-byte lines, padded in the render (unpadded, an
# AMD EPYC's matrix product rounded a few elements of a genome apart in a batch and alone:
# test_an_activation_without_an_in_place_twin_is_still_applied caught it there)
# 96x96 and 91x91 (8,281 pixels: no whole number of 64-byte lines): the sparse sums of the CPU's large images
@pytest.mark.parametrize("shape", [(3, 12, 12), (1, 28, 28), (3, 9, 9), (1, 7, 5), (3, 96, 96), (1, 91, 91)])
def test_a_genomes_image_is_bit_identical_in_any_batch_and_at_any_budget(shape: tuple[int, int, int]) -> None:
    """The output product ran over the chunk's largest genome: the same genome rendered a few ulps
    apart in another batch (Ray's workers render halves: their scores differed from the local ones)."""
    g = evolved(CPPNEncoding(shape), n=24, rounds=40)
    assert len(set(g.num_nodes().tolist())) > 3
    batch = CPPNEncoding(shape).render(g)
    for budget in (None, 10_000, 10**9):  # the default, several chunks, one chunk
        enc = CPPNEncoding(shape, render_budget=budget)
        assert torch.equal(enc.render(g), batch), budget
        assert torch.equal(torch.cat([enc.render(g[:12]), enc.render(g[12:])]), batch), budget
    one_by_one = torch.cat([CPPNEncoding(shape).render(g[i : i + 1]) for i in range(24)])
    assert torch.equal(one_by_one, batch)


def test_in_place_activations_give_the_same_values() -> None:
    from foolbench.encodings._cppn import _IN_PLACE

    assert set(_IN_PLACE) == set(ACTIVATIONS.values())  # a new activation needs its in-place twin
    x = torch.cat([torch.linspace(-40.0, 40.0, 4001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])])
    for name, f in ACTIVATIONS.items():
        for dtype in (torch.float32, torch.float64):
            y = x.to(dtype)
            out = _IN_PLACE[f](y.clone())
            assert torch.equal(out, f(y)), name


def out_of_place_evaluate(
    enc: CPPNEncoding, grid: torch.Tensor, w: torch.Tensor, w_out: torch.Tensor, act: torch.Tensor, steps: int
) -> torch.Tensor:
    """The render's node loop written plainly (every activation out of place, rows chosen by torch.where)."""
    from foolbench.encodings._cppn import NUM_INPUTS

    def activate(pre: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(pre)
        for code, name in enumerate(enc.activations):
            out = torch.where((a == code)[..., None], ACTIVATIONS[name](pre), out)
        return out

    values = torch.zeros(w.shape[0], w_out.shape[2], grid.shape[1], dtype=w.dtype)
    values[:, :NUM_INPUTS] = grid
    for s in range(steps):
        pre = torch.bmm(w[:, s : s + 1, : NUM_INPUTS + s], values[:, : NUM_INPUTS + s])
        values[:, NUM_INPUTS + s : NUM_INPUTS + s + 1] = activate(pre, act[:, s : s + 1])
    return (activate(torch.bmm(w_out, values), act[:, steps:]).clamp(-1.0, 1.0) + 1.0) * 0.5


@pytest.mark.parametrize("budget", [1, 10**9])  # one genome per chunk (bmm into the row) / all in one chunk
def test_render_is_bit_identical_to_the_plain_node_loop(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for names in [tuple(ACTIVATIONS), ("gaussian",), ("sine",), ("abs",)]:
        enc = CPPNEncoding((3, 40, 36), activations=names, render_budget=budget)
        # in one chunk: rows of one activation adjacent (activated as a view) or scattered (gathered)
        for n in (2, 5, 12):
            g = evolved(enc, n=n, rounds=40)
            assert int(g.num_nodes().max()) > 9
            fast = enc.render(g)
            with monkeypatch.context() as m:
                m.setattr(CPPNEncoding, "_evaluate", out_of_place_evaluate)
                plain = enc.render(g)
            assert torch.equal(fast, plain), (names, n)


def test_the_gaussians_exponent_floor_changes_no_value() -> None:
    """The floor spares the CPU's slow exp of underflowing arguments; below it 2 exp(v) - 1 is -1 anyway."""
    from foolbench.encodings._cppn import _EXP_FLOOR, _IN_PLACE

    edge = math.sqrt(-_EXP_FLOOR)
    special = [edge, -edge, 1e6, -1e6, math.inf, -math.inf, math.nan]
    x = torch.cat([torch.linspace(-60.0, 60.0, 24001), torch.tensor(special)])
    gaussian = ACTIVATIONS["gaussian"]
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        y = x.to(dtype)
        unfloored = 2.0 * torch.exp(-y * y) - 1.0
        for floored in (gaussian(y), _IN_PLACE[gaussian](y.clone())):
            torch.testing.assert_close(floored, unfloored, rtol=0, atol=0, equal_nan=True, msg=str(dtype))


def test_an_activation_without_an_in_place_twin_is_still_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACTIVATIONS, "sine", lambda x: torch.sin(2.0 * x))  # a user's replacement
    for names in [("sine",), ("sine", "gaussian")]:  # alone; mixed: rows activated as views or gathered
        enc = CPPNEncoding((3, 9, 9), activations=names)
        g = evolved(enc, n=4, rounds=30)
        assert set(g.activation.flatten().tolist()) == set(range(len(names))), names
        one_by_one = torch.cat([enc.render(g[i : i + 1]) for i in range(4)])
        batch = enc.render(g)
        with monkeypatch.context() as m:
            m.setattr(CPPNEncoding, "_evaluate", out_of_place_evaluate)
            plain = enc.render(g)
        assert torch.equal(one_by_one, plain) and torch.equal(batch, plain), names


def dense(enc: CPPNEncoding, g: CPPNGenomes, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """The image of the batched product path, at any size."""
    from foolbench.encodings import _cppn

    with monkeypatch.context() as m:
        m.setattr(_cppn, "_SPARSE_MIN_PIXELS", 10**12)
        return enc.render(g)


def spy_sparse(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the renders that take the sparse CPU path (batch sizes)."""
    calls: list[int] = []
    real = CPPNEncoding._render_sparse

    def spy(self: CPPNEncoding, grid: torch.Tensor, w: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        calls.append(w.shape[0])
        return real(self, grid, w, *rest)

    monkeypatch.setattr(CPPNEncoding, "_render_sparse", spy)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_cpu_images_sum_each_node_from_its_own_connections(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From 8,192 pixels the CPU render sums each node's inputs instead of a product over every row:
    the same images within float rounding, for every activation, deep genomes and both float types."""
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for names in [tuple(ACTIVATIONS), ("gaussian", "sine")]:
        enc = CPPNEncoding((3, 96, 96), activations=names)
        g = evolved(enc, n=6, rounds=80)
        g.weight = g.weight.to(dtype)
        assert int(g.num_nodes().min()) > 12
        calls = spy_sparse(monkeypatch)
        sparse = enc.render(g)
        assert calls == [6] and sparse.dtype == dtype
        reference = dense(enc, g, monkeypatch)
        assert calls == [6]  # the reference took the product path
        torch.testing.assert_close(sparse, reference, rtol=0, atol=tol, msg=str(names))
        assert float(sparse.std(dim=(1, 2, 3)).min()) > 0.01  # patterns, not blank images that agree trivially
    small = CPPNEncoding((1, 90, 91))  # 8,190 pixels: the product
    calls = spy_sparse(monkeypatch)
    small.render(evolved(small, n=2))
    small.render(evolved(small, n=2), size=(64, 128))  # 8,192 pixels: the sums
    assert calls == [2]
    half = CPPNEncoding((3, 96, 96))  # float16 genomes keep the product (its sums would round in float16)
    g16 = evolved(half, n=2)
    g16.weight = g16.weight.half()
    assert half.render(g16).dtype == torch.float16 and calls == [2]


def test_sparse_sums_of_minimal_genomes_beside_deep_ones_and_of_an_empty_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enc = CPPNEncoding((3, 96, 96))
    minimal, deep = enc.sample(3, gen(5)), evolved(enc, n=3, rounds=60)  # no hidden node / many
    together = deep.clone()
    pick = torch.tensor([0, 2])
    together[pick] = minimal[pick]  # minimal genomes inside a deep batch
    assert int(together.num_nodes().min()) == 7 and int(together.num_nodes().max()) > 12
    image = enc.render(together)
    torch.testing.assert_close(image, dense(enc, together, monkeypatch), rtol=0, atol=1e-4)
    assert torch.equal(image[pick], enc.render(minimal)[pick])
    assert enc.render(together[torch.tensor([], dtype=torch.long)]).shape == (0, 3, 96, 96)


def test_sparse_sums_of_unconnected_nodes_and_a_user_activation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node without connections is its activation of 0, as in the product (gaussian(0) = 1: not 0);
    an activation without an in-place twin is applied and written back."""
    monkeypatch.setitem(ACTIVATIONS, "sine", lambda x: torch.sin(2.0 * x))  # a user's replacement
    enc = CPPNEncoding((3, 96, 96), activations=("sine", "gaussian"))
    g = evolved(enc, n=4, rounds=60)
    hidden = g.active.clone()
    hidden[:, : 4 + 3] = False
    first = hidden.float().argmax(1)  # a hidden node of each genome
    rows = torch.arange(4)
    for node in (torch.full((4,), 4), first):  # output 0, then a hidden node, cut from all their inputs
        g.edge[rows, node] = False
        g.weight[rows, node] = 0.0
    g.activation[rows, 4] = 1  # output 0 is a gaussian of nothing: 1 everywhere before the colour map
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # torch.empty fills with NaN: no row is 0 by luck
    try:
        image = enc.render(g)
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.equal(image[:, 0], torch.ones_like(image[:, 0]))
    torch.testing.assert_close(image, dense(enc, g, monkeypatch), rtol=0, atol=1e-4)


def test_higher_resolution_paints_the_same_pattern() -> None:
    enc = CPPNEncoding((1, 28, 28))
    g = evolved(enc, n=8)
    small = enc.render(g)
    large = enc.render(g, size=(84, 84))
    assert large.shape == (8, 1, 84, 84)
    # pixel centres of the 28x28 image are every third pixel of the 84x84 one, from offset 1
    torch.testing.assert_close(large[..., 1::3, 1::3], small, rtol=1e-5, atol=1e-5)


def test_patterns_are_regular() -> None:
    # the minimal network of x, y, d paints a pattern mirrored when w_x = 0 (d and y are even in x)
    enc = CPPNEncoding((1, 16, 16))
    g = enc.sample(4, gen())
    g.weight[:, 4, 0] = 0.0
    img = enc.render(g)
    torch.testing.assert_close(img, img.flip(-1))


def test_device_and_dtype_follow_the_genomes() -> None:
    enc = CPPNEncoding((1, 8, 8))
    g = enc.sample(3, gen())
    g64 = CPPNGenomes(g.weight.double(), g.edge, g.active, g.activation, g.order)
    assert enc.render(g64).dtype == torch.float64
    assert enc.render(g).device == g.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_render_matches_cpu() -> None:
    enc = CPPNEncoding((3, 32, 32))
    g = evolved(enc)
    torch.testing.assert_close(enc.render(g.to("cuda")).cpu(), enc.render(g), rtol=1e-4, atol=1e-4)
    child = enc.mutate(g.to("cuda"), torch.Generator("cuda").manual_seed(0))
    enc.validate(child)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"activations": ("sine", "softplus")}, "unknown name.*softplus"),
        ({"activations": ()}, "non-empty"),
        ({"activations": "sine"}, "non-empty sequence"),
        ({"activations": ("sine", "sine")}, "repeat"),
        ({"max_nodes": 5}, "max_nodes must be at least 6"),
        ({"max_connections": 3}, "max_connections must be at least 4"),
        ({"add_node": 1.5}, "add_node"),
        ({"init_weight": 11.0}, "init_weight"),
        ({"eta": 0.0}, "eta"),
        ({"render_budget": 0}, "render_budget"),
    ],
)
def test_bad_constructor(kw: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        CPPNEncoding((1, 28, 28), **kw)  # type: ignore[arg-type]


def test_colour_capacity_needs_twelve_connections() -> None:
    with pytest.raises(InvalidArgumentError, match="at least 12"):
        CPPNEncoding((3, 8, 8), max_connections=11)


def test_bad_genomes() -> None:
    enc = CPPNEncoding((1, 8, 8))
    with pytest.raises(InvalidTypeError, match="CPPNGenomes"):
        enc.render(torch.rand(2, 1, 8, 8))
    other = CPPNEncoding((1, 8, 8), max_nodes=12).sample(2, gen())
    with pytest.raises(InvalidArgumentError, match=r"expected weight of shape \(B, 32, 32\)"):
        enc.render(other)
    g = enc.sample(2, gen())
    g.weight[0, 4, 0] = float("nan")  # a sampled batch changed in place is checked again
    with pytest.raises(InvalidArgumentError, match="finite"):
        enc.render(g)
    m = enc.mutate(enc.sample(2, gen()), gen())
    m.weight = m.weight.clone().fill_(float("inf"))  # a replaced weight tensor too
    with pytest.raises(InvalidArgumentError, match="finite"):
        enc.render(m)
    with pytest.raises(InvalidArgumentError, match=r"size must be \(H, W\)"):
        enc.render(enc.sample(1, gen()), size=(8,))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"size\[1\] must be an int >= 1, got 0"):  # said size[2]
        enc.render(enc.sample(1, gen()), size=(8, 0))
    for bad in (-1, 4):  # -1 painted with the last activation; 4 raised a bare IndexError
        a = enc.sample(2, gen())
        a.activation[:, 4] = bad
        with pytest.raises(InvalidArgumentError, match=r"genomes.activation must hold ids in \[0, 3\]"):
            enc.render(a)
    empty = enc.sample(2, gen())[torch.tensor([], dtype=torch.long)]
    enc.validate(empty)  # raised a bare RuntimeError from max() of nothing
    assert enc.render(empty).shape == (0, 1, 8, 8)


def test_clean_batches_skip_the_finiteness_read_and_only_they() -> None:
    """sample()/mutate() mark their batches clean; a write, a NaN parent or pickling drops the mark."""
    from foolbench.encodings import is_clean
    from foolbench.encodings._base import select_rows

    enc = CPPNEncoding((1, 8, 8))
    g = enc.sample(4, gen())
    child = enc.mutate(g[torch.tensor([0, 0, 2, 3])], gen())
    assert is_clean(g) and is_clean(child) and is_clean(child.to("cpu"))
    assert is_clean(select_rows(torch.tensor([True, False, True, False]), child, g))
    child.weight[1, 4, 0] = float("nan")  # an in-place write: checked again
    assert not is_clean(child)
    nan_parent = enc.mutate(child, gen())  # a NaN parent gives an unclean child, never a silent NaN image
    assert not is_clean(nan_parent)
    with pytest.raises(InvalidArgumentError, match="finite"):
        enc.render(nan_parent)
    with pytest.raises(InvalidArgumentError, match="finite"):
        enc.validate(enc.sample(2, gen())._map(lambda t: t.clone().fill_(float("nan")) if t.is_floating_point() else t))
    loaded = pickle.loads(pickle.dumps(g))  # the mark does not travel: a loaded batch is checked once
    assert not is_clean(loaded) and torch.equal(enc.render(loaded), enc.render(g)) and is_clean(loaded)
    enc.validate(loaded2 := pickle.loads(pickle.dumps(g)))  # a full validation marks it too (checkpoints)
    assert is_clean(loaded2)
    with torch.inference_mode():  # inference tensors have no version counter: never marked, still work
        h = enc.mutate(enc.sample(2, gen()), gen())
        assert not is_clean(h) and enc.render(h).shape == (2, 1, 8, 8)


def test_a_batch_clean_for_one_encoding_is_checked_by_another() -> None:
    """The clean mark did not say which encoding checked the batch: one with 7 activations passed ids
    up to 6 to one with 4, whose render then failed with a bare IndexError (or, in the Triton kernel,
    read past its table)."""
    from foolbench.encodings import is_clean

    wide = CPPNEncoding((1, 8, 8), activations=tuple(ACTIVATIONS))
    narrow = CPPNEncoding((1, 8, 8))
    g = wide.sample(3, gen())
    g.activation.fill_(len(ACTIVATIONS) - 1)
    wide.validate(g)
    assert is_clean(g) and wide.render(g).shape == (3, 1, 8, 8)
    with pytest.raises(InvalidArgumentError, match=r"genomes.activation must hold ids in \[0, 3\]"):
        narrow.render(g)
    with pytest.raises(InvalidArgumentError, match="genomes.activation"):
        narrow.render(wide.mutate(g, gen()))  # its children neither
    same = CPPNEncoding((1, 8, 8), activations=tuple(ACTIVATIONS))  # an equal encoding trusts the mark
    assert is_clean(same.mutate(g, gen()))


def test_a_weight_past_the_range_is_never_marked_clean_nor_mutated_into_nan() -> None:
    """render() marked a hand-built batch clean after checking only finiteness and ids, so mutate()
    trusted a weight of 12: with a non-integer eta its polynomial step is NaN, and the NaN child, marked
    clean too, rendered as a NaN image without a word."""
    from foolbench.encodings import is_clean

    enc = CPPNEncoding((1, 8, 8), eta=2.5)
    g = enc.sample(3, gen())
    i, j = torch.nonzero(g.edge[0])[0].tolist()
    g.weight[0, i, j] = 12.0
    assert torch.isfinite(enc.render(g)).all()  # still painted
    assert not is_clean(g)
    for op in (lambda b: enc.mutate(b, gen()), lambda b: enc.refine(b, gen())):
        with pytest.raises(InvalidArgumentError, match=r"genomes.weight must lie in \[-10, 10\], got a weight of 12"):
            op(g)
    g.weight[0, i, j] = 10.0  # on the bound: fine, and marked
    enc.render(g)
    assert is_clean(g) and torch.isfinite(enc.render(enc.mutate(g, gen()))).all()


def test_render_genes_ignores_genes_of_absent_connections_and_takes_empty_batches() -> None:
    enc = CPPNEncoding((3, 8, 8))
    g = enc.mutate(enc.sample(4, gen()), gen())
    genes = enc.genes(g)
    genes[~g.edge] = float("nan")  # with_genes() accepts this; render_genes() painted NaN images
    torch.testing.assert_close(enc.render_genes(g, genes), enc.render(g), rtol=0, atol=1e-5)
    empty = g[torch.zeros(0, dtype=torch.long)]
    assert enc.render_genes(empty, enc.genes(empty)).shape == (0, 3, 8, 8)


def test_validate_catches_cycles_and_dangling_connections() -> None:
    enc = CPPNEncoding((1, 8, 8))
    g = enc.sample(1, gen())
    g.edge[0, 0, 4] = True  # output -> input goes against the order
    g.weight[0, 0, 4] = 1.0
    with pytest.raises(InvalidArgumentError, match="cycle"):
        enc.validate(g)
    g = enc.sample(1, gen())
    g.edge[0, 4, 10] = True  # from an unused slot
    g.weight[0, 4, 10] = 1.0
    with pytest.raises(InvalidArgumentError, match="not active"):
        enc.validate(g)


def test_checkpoint_state_round_trip_and_refusals() -> None:
    enc = CPPNEncoding((1, 8, 8))
    g = evolved(enc, n=4)
    state = enc.genomes_to_state(g)
    back = enc.genomes_from_state({k: v.clone() for k, v in state.items()})
    assert torch.equal(enc.render(back), enc.render(g))
    with pytest.raises(CheckpointError, match="missing tensors"):
        enc.genomes_from_state({"weight": state["weight"]})
    bad = {k: v.clone() for k, v in state.items()}
    bad["weight"][0, 4, 0] = float("nan")
    with pytest.raises(CheckpointError, match="finite"):
        enc.genomes_from_state(bad)
    with pytest.raises(CheckpointError, match="shape"):
        CPPNEncoding((1, 8, 8), max_nodes=20).genomes_from_state(state)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    steps=st.integers(1, 60),
    channels=st.sampled_from([1, 3]),
    max_nodes=st.integers(8, 14),
    extra_connections=st.integers(0, 20),
    activations=st.lists(st.sampled_from(sorted(ACTIVATIONS)), min_size=1, max_size=7, unique=True),
)
def test_any_mutation_sequence_keeps_genomes_valid(
    seed: int, steps: int, channels: int, max_nodes: int, extra_connections: int, activations: list[str]
) -> None:
    enc = CPPNEncoding(
        (channels, 6, 6),
        max_nodes=max_nodes,
        max_connections=4 * channels + extra_connections,
        activations=activations,
        add_node=0.9,
        add_connection=0.9,
        init_weight=10.0,
    )
    g = enc.sample(8, gen(seed))
    rng = gen(seed + 1)
    for _ in range(steps):
        g = enc.mutate(g, rng)
    enc.validate(g)  # acyclic, within capacity, finite weights in [-10, 10]
    img = enc.render(g)
    assert torch.isfinite(img).all() and float(img.min()) >= 0 and float(img.max()) <= 1


def test_map_elites_fools_lenet_with_cppn_and_resumes(lenet: fb.models.TorchClassifier, tmp_path: Path) -> None:
    enc = CPPNEncoding((1, 28, 28))
    # the last steps to 99.99% are heavy-tailed across seeds (some runs stall on one class for a long
    # time; benchmarks/bench_cppn.py measures the spread): most seeds reach 99.9% within a few thousand
    reached = 0
    for seed in (0, 1, 2):
        res = fb.search.MAPElites(lenet, enc, classes=[0, 3, 7], batch_size=64, seed=seed).run(
            max_evaluations=10_000, target_confidence=0.999, progress=False
        )
        probs = lenet.probs(res.images)[torch.arange(3), res.classes].double()
        assert torch.allclose(probs, res.confidence, atol=1e-6)  # the images score what the result says
        reached += bool(res.fooled(0.999).all())
    assert reached >= 2
    # checkpoints round-trip CPPN genomes: resumed == uninterrupted
    ckpt = tmp_path / "cppn.pt"
    full = fb.search.MAPElites(lenet, enc, batch_size=32, seed=5).run(generations=8, progress=False)
    fb.search.MAPElites(lenet, enc, batch_size=32, seed=5).run(generations=3, progress=False, checkpoint=ckpt)
    resumed = fb.search.MAPElites(lenet, enc, batch_size=32, seed=5).run(generations=8, progress=False, checkpoint=ckpt)
    assert torch.equal(full.images, resumed.images)
    other = CPPNEncoding((1, 28, 28), max_nodes=16)
    with pytest.raises(CheckpointError):
        fb.search.MAPElites(lenet, other, batch_size=32, seed=5).run(generations=9, progress=False, checkpoint=ckpt)


def test_crossover_keeps_topology_and_mixes_matching_genes() -> None:
    enc = CPPNEncoding((3, 16, 16))
    rng = torch.Generator().manual_seed(0)
    a, b = enc.sample(64, rng), enc.sample(64, rng)
    for _ in range(10):  # grow both, so some genes match and some do not
        a, b = enc.mutate(a, rng), enc.mutate(b, rng)
    child = enc.crossover(a, b, torch.Generator().manual_seed(1))
    assert torch.equal(child.edge, a.edge) and torch.equal(child.active, a.active)
    assert torch.equal(child.order, a.order)
    from_b = child.weight != a.weight
    assert bool(from_b.any())  # the minimal network's input -> output genes match in every pair
    assert torch.equal(child.weight[from_b], b.weight[from_b]) and bool((a.edge & b.edge)[from_b].all())
    only_a = a.edge & ~b.edge
    assert torch.equal(child.weight[only_a], a.weight[only_a])  # a gene the mate lacks is never touched
    assert bool((child.activation != a.activation).any())
    assert torch.equal(enc.render(child), enc.render(child.clone()))  # a valid genome (renders)
    assert bool(enc.render(child).isfinite().all())
    # the inputs are untouched, probability 0 copies, the same generator state gives the same children
    a0 = a.clone()
    enc.crossover(a, b, torch.Generator().manual_seed(1))
    assert torch.equal(a.weight, a0.weight)
    same = enc.crossover(a, b, torch.Generator().manual_seed(0), probability=0.0)
    assert torch.equal(same.weight, a.weight) and torch.equal(same.activation, a.activation)
    again = enc.crossover(a, b, torch.Generator().manual_seed(1))
    assert torch.equal(again.weight, child.weight)


def test_crossover_bad_input() -> None:
    enc = CPPNEncoding((1, 8, 8))
    rng = torch.Generator().manual_seed(0)
    a = enc.sample(4, rng)
    with pytest.raises(InvalidArgumentError, match="mates must have as many genomes"):
        enc.crossover(a, a[torch.arange(3)], rng)
    with pytest.raises(InvalidArgumentError, match="probability"):
        enc.crossover(a, a, rng, probability=1.5)
    with pytest.raises(InvalidArgumentError, match="do not fit"):
        enc.crossover(a, CPPNEncoding((1, 8, 8), max_nodes=16).sample(4, rng), rng)


def test_a_batch_for_another_number_of_outputs_is_checked_not_painted() -> None:
    """The clean mark named only the activations: a grayscale batch was clean for a colour encoding of the
    same max_nodes, whose render painted its hidden nodes as colour channels and whose mutate marked the
    broken children clean; an unmarked one passed render's check (finiteness and ids only) all the same."""
    from foolbench.encodings import is_clean

    gray, colour = CPPNEncoding((1, 8, 8)), CPPNEncoding((3, 8, 8))
    g = gray.sample(2, gen())
    for i in range(10):
        g = gray.mutate(g, gen(i))
    fresh = gray.sample(2, gen())  # no hidden nodes: the colour outputs' slots are free
    pickled = pickle.loads(pickle.dumps(g))  # unmarked
    for batch in (g, fresh, pickled):
        with pytest.raises(InvalidArgumentError, match=r"genomes\.(active|order) must be"):
            colour.render(batch)
    child = colour.mutate(g, gen())
    assert not is_clean(child, owner=colour._owner)
    with pytest.raises(InvalidArgumentError, match=r"genomes\.(active|order) must be"):
        colour.render(child)
    assert gray.render(g).shape == (2, 1, 8, 8) and is_clean(gray.mutate(g, gen()), owner=gray._owner)
    h = colour.mutate(colour.sample(2, gen()), gen())
    h.order[:, 5] = 0.5  # an output's key off 1 (the active check passes)
    with pytest.raises(InvalidArgumentError, match="genomes.order must be 0 for inputs and 1 for outputs"):
        colour.render(h)


@pytest.mark.parametrize("bad", [-1, 7])
def test_render_genes_and_with_genes_refuse_activation_ids_out_of_range(bad: int) -> None:
    """render() refused an id out of range; render_genes() painted -1 with the last activation and raised a
    bare IndexError for 7, and with_genes() passed either on."""
    enc = CPPNEncoding((1, 8, 8))
    g = enc.sample(2, gen())
    g.activation[:, 4] = bad
    with pytest.raises(InvalidArgumentError, match=r"genomes.activation must hold ids in \[0, 3\]"):
        enc.render_genes(g, enc.genes(g))
    with pytest.raises(InvalidArgumentError, match=r"genomes.activation must hold ids in \[0, 3\]"):
        enc.with_genes(g, enc.genes(g))
    ok = enc.sample(2, gen())
    ok.activation[:, 4] = 3  # in range, unmarked by the write: checked and accepted
    assert enc.render_genes(ok, enc.genes(ok)).shape == (2, 1, 8, 8)
    assert torch.equal(enc.with_genes(ok, enc.genes(ok)).activation, ok.activation)


@pytest.mark.parametrize("generator", [0, None, "0"], ids=["int", "None", "str"])
def test_every_random_entry_refuses_what_is_not_a_generator(generator: object) -> None:
    """An int or None failed deep inside with AttributeError: 'int' object has no attribute 'device'."""
    enc = CPPNEncoding((1, 8, 8))
    g = enc.sample(2, gen())
    calls = [
        lambda: enc.sample(2, generator),  # type: ignore[arg-type]
        lambda: enc.mutate(g, generator),  # type: ignore[arg-type]
        lambda: enc.refine(g, generator),  # type: ignore[arg-type]
        lambda: enc.crossover(g, g, generator),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(
            InvalidTypeError, match=f"generator must be a torch.Generator, got {type(generator).__name__}"
        ):
            call()


def test_crossover_blames_mates_for_bad_mates() -> None:
    enc = CPPNEncoding((1, 4, 4))
    g = enc.sample(2, gen())
    with pytest.raises(InvalidTypeError, match="^mates must be CPPNGenomes"):
        enc.crossover(g, torch.rand(2, 1, 4, 4), gen())
    with pytest.raises(InvalidArgumentError, match="^mates do not fit"):
        enc.crossover(g, CPPNEncoding((1, 4, 4), max_nodes=12).sample(2, gen()), gen())
    with pytest.raises(InvalidTypeError, match="^genomes must be CPPNGenomes"):
        enc.crossover(torch.rand(2, 1, 4, 4), g, gen())


def test_genomes_compare_and_hash_by_identity() -> None:
    """The dataclass's generated __eq__ compared the tensors with ==: g == g.clone() raised
    'Boolean value of Tensor with more than one value is ambiguous', and the batches were unhashable."""
    g = CPPNEncoding((1, 4, 4)).sample(3, gen())
    assert g == g and g != g.clone()  # noqa: PLR0124
    assert len({g, g, g.clone()}) == 2
