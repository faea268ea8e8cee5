"""N:M layout of exported weights, and torch's 2:4 conversion of linear / 1×1 layers."""

import pytest
import torch

from export_helpers import sparse_backbone
from synccp.export.semistructured import default_matrix, gemm_matrix, holds_nm, to_semi_structured


def test_nm_masks_hold_in_the_channels_last_gemm_and_for_1x1_in_torchs_flattening(one_thread):
    model, _ = sparse_backbone(granularity="nm", n=2, m=4, width=8)
    convs = {
        name: p for name, p in model.named_parameters() if p.dim() == 4 and name != "conv1.weight"
    }
    one_by_one = [p for p in convs.values() if p.shape[2:] == (1, 1)]
    assert one_by_one
    for weight in convs.values():
        assert holds_nm(gemm_matrix(weight), n=2, m=4)  # TensorRT's layout, every layer
    for weight in one_by_one:  # linear-style flattening == channels-last for 1×1
        assert holds_nm(default_matrix(weight), n=2, m=4)
        assert torch.equal(default_matrix(weight), gemm_matrix(weight))
    three = [w for w in convs.values() if w.shape[2:] == (3, 3)]
    assert not all(holds_nm(default_matrix(w), n=2, m=4) for w in three)  # why the layout matters


def test_conversion_refuses_kxk_convs_and_non_24_weights():
    with pytest.raises(ValueError, match="1x1"):
        to_semi_structured(torch.zeros(8, 8, 3, 3))
    with pytest.raises(ValueError, match="2:4"):
        to_semi_structured(torch.ones(8, 8))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="semi-structured kernels need CUDA")
def test_semi_structured_linear_matches_the_dense_product():
    model, _ = sparse_backbone(backbone="resnet50", granularity="nm", n=2, m=4, width=64)
    weight = model.layer3[0].downsample[0].weight.detach()  # (1024, 512, 1, 1)
    dense = default_matrix(weight).to("cuda", torch.float16)
    sparse = to_semi_structured(weight.to("cuda", torch.float16))
    x = torch.randn(128, dense.shape[1], device="cuda", dtype=torch.float16)
    torch.testing.assert_close(
        torch.nn.functional.linear(x, sparse), x @ dense.T, rtol=1e-2, atol=1e-2
    )
