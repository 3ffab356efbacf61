"""The Triton projection kernel equals its torch reference (TRITON_INTERPRET=1 on CPU)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton.jit runs (kernel definition)

import pytest  # noqa: E402
import torch  # noqa: E402

from jz3.config.enums import ProjKind  # noqa: E402
from jz3.kernels.projection import (  # noqa: E402
    jl_scale,
    project,
    project_torch,
    project_triton,
    random_matrix_torch,
    random_matrix_triton,
)

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and
                                not torch.cuda.is_available(),
                                reason="TRITON_INTERPRET was set to 0 before this module")


@pytest.mark.parametrize("rows,cols,offset", [(1, 1, 0), (37, 45, 0), (19, 70, 2**32 + 5)])
def test_rademacher_matrix_identical(rows, cols, offset):
    a = random_matrix_torch(rows, cols, seed=7, key=3, row_offset=offset)
    b = random_matrix_triton(rows, cols, seed=7, key=3, row_offset=offset)
    assert torch.equal(a, b)  # exact: +-1 from the same Philox bits
    assert set(a.unique().tolist()) <= {-1.0, 1.0}


def test_gaussian_matrix_matches():
    a = random_matrix_torch(33, 41, seed=2**40 + 9, key=1, kind=ProjKind.gaussian)
    b = random_matrix_triton(33, 41, seed=2**40 + 9, key=1, kind=ProjKind.gaussian)
    # same uniforms; log/cos of two float32 libraries may differ in the last ulp
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (3, 77, 50), (17, 33, 129)])
@pytest.mark.parametrize("kind", [ProjKind.rademacher, ProjKind.gaussian])
def test_project_kernel_equals_reference_odd_shapes(n, k, d, kind):
    g = torch.Generator().manual_seed(n * 1000 + k)
    x = torch.randn(n, k, generator=g)
    ref = project_torch(x, d, seed=11, key=5, row_offset=3, kind=kind)
    out = project_triton(x, d, seed=11, key=5, row_offset=3, kind=kind)
    # float32 sums in another order: tolerance relative to the sum of |terms|
    scale = (x.abs() @ random_matrix_torch(k, d, 11, 5, 3, kind).abs()).max()
    assert (out - ref).abs().max() <= 1e-5 * scale


def test_project_strided_and_half_input():
    x = torch.randn(40, 9).t()  # non-contiguous [9, 40]
    ref = project_torch(x, 21, seed=1)
    torch.testing.assert_close(project_triton(x, 21, seed=1), ref, rtol=1e-5, atol=1e-4)
    xh = x.half()
    torch.testing.assert_close(project_triton(xh, 21, seed=1), project_torch(xh, 21, seed=1),
                               rtol=1e-5, atol=1e-4)


def test_row_blocks_compose_like_the_whole():
    """Projecting a long vector in pieces (row_offset) equals projecting it at once."""
    x = torch.randn(4, 100)
    whole = project_torch(x, 30, seed=9)
    parts = project_torch(x[:, :37], 30, seed=9) + project_torch(x[:, 37:], 30, seed=9,
                                                                   row_offset=37)
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)
    tri = project_triton(x[:, :37], 30, seed=9) + project_triton(x[:, 37:], 30, seed=9,
                                                                  row_offset=37)
    torch.testing.assert_close(tri, whole, rtol=1e-5, atol=1e-4)


def test_seed_and_key_change_the_matrix_and_dispatch_on_cpu():
    a = random_matrix_torch(16, 16, seed=1, key=0)
    assert not torch.equal(a, random_matrix_torch(16, 16, seed=2, key=0))
    assert not torch.equal(a, random_matrix_torch(16, 16, seed=1, key=1))
    x = torch.randn(2, 16)
    assert torch.equal(project(x, 16, seed=1), project_torch(x, 16, seed=1))
    assert jl_scale(16) == 0.25
