"""N:M layouts and torch's 2:4 semi-structured conversion for linear and 1×1 conv weights.

synccp's N:M groups run along the GEMM reduction dimension with the input channels innermost:
`gemm_matrix(w)` = w.permute(0, 2, 3, 1).reshape(C_out, kh·kw·C_in) — the channels-last implicit
GEMM that TensorRT and cuSPARSELt run convs as. torch's `to_sparse_semi_structured` (linear
layers) groups along the rows of the default (C_out, C_in·kh·kw) flattening instead. The two agree
exactly when kh = kw = 1 (linear, 1×1 convs), so those layers convert directly; a k×k conv's
default flattening is in general *not* N:M (tested), and must be fed to a channels-last kernel.
"""

from __future__ import annotations

from torch import Tensor


def gemm_matrix(weight: Tensor) -> Tensor:
    """(C_out, kh·kw·C_in) channels-last GEMM matrix of a conv weight; a linear weight as is."""
    if weight.dim() == 2:
        return weight
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def default_matrix(weight: Tensor) -> Tensor:
    """(C_out, C_in·kh·kw): torch's default flattening (what `F.linear` on unfolded input uses)."""
    return weight.reshape(weight.shape[0], -1)


def holds_nm(matrix: Tensor, *, n: int, m: int) -> bool:
    """True when every run of `m` consecutive entries of each row has at most `n` nonzeros."""
    if matrix.shape[1] % m:
        return False
    groups = matrix.reshape(matrix.shape[0], -1, m)  # (R, G, M)
    return bool((groups.ne(0).sum(-1) <= n).all())


def to_semi_structured(weight: Tensor):
    """torch's 2:4 `SparseSemiStructuredTensor` of a linear or 1×1 conv weight (as (C_out, C_in)).

    Needs CUDA (compute capability ≥ 8.0), fp16/bf16 and the shape limits of torch's kernels; a
    k×k conv is refused (its N:M groups are not along the default flattening: module doc)."""
    if weight.dim() == 4 and weight.shape[2:] != (1, 1):
        raise ValueError(
            f"to_semi_structured takes linear or 1x1 conv weights; got kernel "
            f"{tuple(weight.shape[2:])}: use gemm_matrix(w) with a channels-last kernel"
        )
    matrix = default_matrix(weight)
    if not holds_nm(matrix, n=2, m=4):
        raise ValueError(
            "weight is not 2:4 along its input dimension (train with sparsity.n=2, m=4)"
        )
    if matrix.device.type != "cuda":
        raise RuntimeError("torch's semi-structured sparse tensors need a CUDA device")
    from torch.sparse import to_sparse_semi_structured

    return to_sparse_semi_structured(matrix.contiguous())
