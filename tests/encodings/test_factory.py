from __future__ import annotations

import pytest
import torch

from foolbench.encodings import CPPNEncoding, DirectEncoding, from_name
from foolbench.errors import InvalidArgumentError, InvalidTypeError


def test_builds_each_encoding_with_its_options() -> None:
    direct = from_name("direct", (1, 28, 28), mutation_rate=0.02, eta=1.0)
    assert isinstance(direct, DirectEncoding) and direct.mutation_rate == 0.02 and direct.eta == 1.0
    cppn = from_name("cppn", [3, 16, 16], max_nodes=20, backend="torch")
    assert isinstance(cppn, CPPNEncoding) and cppn.image_shape == (3, 16, 16) and cppn.max_nodes == 20
    assert cppn.config() == CPPNEncoding((3, 16, 16), max_nodes=20).config()


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidArgumentError, match=r"must be one of \['cppn', 'direct'\], got 'Direct'"):
        from_name("Direct", (1, 8, 8))
    with pytest.raises(InvalidTypeError, match="encoding name must be a str"):
        from_name(None, (1, 8, 8))  # type: ignore[arg-type]


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'direct' encoding has no option\(s\) \['max_nodes'\]; valid.*eta"):
        from_name("direct", (1, 8, 8), max_nodes=3)
    with pytest.raises(InvalidArgumentError, match="mutation_rate"):
        from_name("direct", (1, 8, 8), mutation_rate=2.0)  # the encoding's own check
    with pytest.raises(InvalidArgumentError, match="image_shape"):
        from_name("cppn", (8, 8))


def test_select_rows_serves_a_genome_type_of_its_own() -> None:
    """Only the Genomes protocol (len, get/set item): the rows are picked by the mask, ``old`` untouched."""
    from foolbench.encodings._base import select_rows

    class Mine:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

        def __len__(self) -> int:
            return len(self.t)

        def __getitem__(self, index: object) -> Mine:
            return Mine(self.t[index])

        def __setitem__(self, index: object, value: Mine) -> None:
            self.t[index] = value.t

    old, new = Mine(torch.zeros(3, 2)), Mine(torch.ones(3, 2))
    out = select_rows(torch.tensor([True, False, True]), new, old)
    assert out.t.sum(1).tolist() == [2.0, 0.0, 2.0] and float(old.t.sum()) == 0.0
