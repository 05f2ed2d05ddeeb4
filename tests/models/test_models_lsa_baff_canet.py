"""LSA-BiNet, BAFF-SkipNet and CANet: paper figures, any input size, training, pretrained encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from rsseg.models import create_model, list_models, model_entry
from rsseg.models._complexity import count_macs, count_params
from rsseg.models.baff_skipnet import BlockAdaptiveFusion
from rsseg.models.lsa_binet import (
    ResidualCrossLevelDecoder,
    SpatialVarianceFusion,
    soft_pool,
)

NETWORKS = ("lsa_binet", "baff_skipnet", "canet")



_EVAL_MODELS: dict[tuple[str, int], nn.Module] = {}


def eval_model(name: str, bands: int = 3) -> nn.Module:
    """One seeded eval-mode network per (name, bands) for the read-only tests."""
    if (name, bands) not in _EVAL_MODELS:
        torch.manual_seed(0)
        _EVAL_MODELS[name, bands] = create_model(name, in_channels=bands, num_classes=6).eval()
    return _EVAL_MODELS[name, bands]


def meta_model(name: str, **kw) -> nn.Module:
    """Built on the meta device: counting parameters and MACs needs shapes only."""
    with torch.device("meta"):
        return create_model(name, **kw)


# ---------------------------------------------------------------- paper figures

@pytest.mark.parametrize("name, target, tolerance", [
    ("lsa_binet", 1.84e6, 0.05),
    ("baff_skipnet", 0.82e6, 0.05),
    ("canet", 4.8e6, 0.03),
])
def test_params_match_the_paper(name, target, tolerance, record_property):
    model = meta_model(name, in_channels=3, num_classes=19)
    params = count_params(model)
    record_property("params", params)
    assert abs(params - target) <= tolerance * target, params
    assert model_entry(name).paper_figures["params_m"] * 1e6 == pytest.approx(target)


def test_exact_counts_of_the_reproduced_layouts():
    # CANet: the spec's independent rebuild counts 4,784,853; BAFF-SkipNet is
    # SkipNet (817,241) plus two BAFF weight nets of 18 weights + 1 bias each.
    assert count_params(meta_model("canet", num_classes=19)) == 4_784_853
    plain = count_params(meta_model("baff_skipnet", num_classes=19, fusion="add"))
    assert plain == 817_241
    assert count_params(meta_model("baff_skipnet", num_classes=19)) == plain + 2 * 19


@pytest.mark.parametrize("switches, table4_m", [
    ({"rcad": False}, 1.48),
    ({"lrfa": False, "svfm": False}, 1.12),
    ({"lrfa": False, "rcad": False}, 1.44),
    ({"svfm": False, "rcad": False}, 0.80),
    ({"lrfa": False, "svfm": False, "rcad": False}, 0.75),
])
def test_lsa_binet_ablation_rows_match_table_4(switches, table4_m):
    params = count_params(meta_model("lsa_binet", num_classes=19, **switches))
    assert abs(params - table4_m * 1e6) <= 0.015 * table4_m * 1e6, params


def test_macs_against_the_papers(record_property):
    # LSA-BiNet: 8.81 GFLOPs at the CamVid size; our conv/matmul count is 0-3.5 % lower
    # (thop-style counters add BN, activations and pooling).
    lsa = count_macs(meta_model("lsa_binet", num_classes=19), (1, 3, 360, 480))
    record_property("lsa_binet_gmacs_360x480", lsa / 1e9)
    assert 0.965 * 8.81e9 <= lsa <= 8.81e9
    # CANet: the spec's rebuild counts 81.7 GMACs at 1024x2048 (no paper figure).
    canet = count_macs(meta_model("canet", num_classes=19), (1, 3, 1024, 2048))
    record_property("canet_gmacs_1024x2048", canet / 1e9)
    assert canet == pytest.approx(81.7e9, rel=0.005)
    baff = count_macs(meta_model("baff_skipnet", num_classes=19), (1, 3, 1024, 2048))
    record_property("baff_skipnet_gmacs_1024x2048", baff / 1e9)
    assert 5e9 < baff < 9e9


def test_meta_counting_equals_real_counting():
    real = create_model("baff_skipnet", in_channels=3, num_classes=6)
    assert count_macs(meta_model("baff_skipnet", num_classes=6), (1, 3, 96, 160)) == \
        count_macs(real, (1, 3, 96, 160))


# ---------------------------------------------------------------- any input size

def test_registered_and_listed():
    listed = list_models()
    for name in NETWORKS:
        assert name in listed
        assert model_entry(name).paper


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("size", [(333, 517), (17, 23)])
def test_output_shape_equals_input_for_odd_sizes_batch_1(name, size):
    model = eval_model(name)
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert y.shape == (1, 6, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("bands", [4, 5])
def test_four_and_five_bands(name, bands):
    model = eval_model(name, bands)
    with torch.no_grad():
        y = model(torch.randn(2, bands, 40, 72))
    assert y.shape == (2, 6, 40, 72)
    with pytest.raises(RuntimeError, match=rf"to have {bands} channels, but got 3 channels"):
        model(torch.randn(1, 3, 40, 72))


@pytest.mark.parametrize("name", NETWORKS)
def test_inputs_are_reflect_padded_bottom_right_and_cropped(name):
    """Running on a 45x77 input equals running on its reflect-padded stride multiple and
    keeping the top-left 45x77 logits (fails if the pad mode, side or crop were wrong)."""
    model = eval_model(name)
    stride = model_entry(name).stride
    x = torch.randn(1, 3, 45, 77)
    ph, pw = (-45) % stride, (-77) % stride
    with torch.no_grad():
        y = model(x)
        y_padded = model(F.pad(x, (0, pw, 0, ph), mode="reflect"))
    assert y_padded.shape[-2:] == (45 + ph, 77 + pw)
    torch.testing.assert_close(y, y_padded[..., :45, :77])


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("name", NETWORKS)
def test_one_step_lowers_the_loss_and_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=4, num_classes=6).train()
    x = torch.randn(2, 4, 64, 64)
    target = torch.randint(0, 6, (2, 64, 64))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.0)
    loss = F.cross_entropy(model(x), target)
    optimiser.zero_grad()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    assert no_grad == []
    optimiser.step()
    after = F.cross_entropy(model(x), target)
    assert after.item() < loss.item()


# ---------------------------------------------------------------- module equations

def test_soft_pool_matches_a_direct_computation():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 13, 16) * 3
    got = soft_pool(x, 7, 3).numpy()
    a = x.numpy().astype(np.float64)
    rows, cols = (13 - 7) // 3 + 1, (16 - 7) // 3 + 1
    assert got.shape == (1, 2, rows, cols)
    for c in range(2):
        for i in range(rows):
            for j in range(cols):
                window = a[0, c, 3 * i:3 * i + 7, 3 * j:3 * j + 7]
                expected = (np.exp(window) * window).sum() / np.exp(window).sum()
                assert got[0, c, i, j] == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_soft_pool_is_stable_for_large_activations():
    x = torch.full((1, 1, 9, 9), 500.0)
    x[..., 0, 0] = 1000.0
    y = soft_pool(x, 7, 3)
    assert torch.isfinite(y).all() and y.max() <= 1000.0 and y.min() >= 500.0


def test_svfm_structure_branch_matches_the_equations():
    """Eq. 4-6 with AdaptiveMaxPool(H/8, W/8), population variance, nearest upsampling."""
    torch.manual_seed(0)
    svfm = SpatialVarianceFusion(6).eval()
    with torch.no_grad():
        svfm.alpha.uniform_(0.5, 1.5)
        svfm.beta.uniform_(-1.0, 1.0)
        x = torch.randn(2, 6, 16, 24)
        low = svfm.structure_dw(F.adaptive_max_pool2d(x, (2, 3)))
        variance = torch.var(x, dim=(-2, -1), keepdim=True, unbiased=False)
        modulation = F.gelu(svfm.structure_mix(low * svfm.alpha + variance * svfm.beta))
        expected = x * F.interpolate(modulation, size=(16, 24), mode="nearest")
        torch.testing.assert_close(svfm.structure(x), expected)
        # Eq. 3, 7, 8 and the outer residual.
        f = torch.randn(1, 6, 16, 24)
        xs, ys = svfm.split(f).chunk(2, dim=1)
        torch.testing.assert_close(svfm(f), svfm.fuse(svfm.structure(xs) + svfm.detail(ys)) + f)


def test_rcad_matches_the_equations():
    torch.manual_seed(0)
    rcad = ResidualCrossLevelDecoder(5, 7, 3).eval()
    x, y = torch.randn(1, 5, 8, 12), torch.randn(1, 7, 4, 6)
    with torch.no_grad():
        yc = F.interpolate(rcad.project(y), size=(8, 12), mode="bilinear", align_corners=False)
        att = torch.sigmoid(torch.sigmoid(x) + yc)                      # eq. 10
        out = x * att + rcad.res_att(x * att) * yc                      # eq. 11
        torch.testing.assert_close(rcad(x, y), rcad.classifier(rcad.mixer(out)))  # eq. 12
        z = torch.randn(1, 5, 8, 12)
        torch.testing.assert_close(rcad.res_att(z) - z, rcad.res_att.body(z))


def test_baff_is_a_shared_3d_conv_pooled_to_blocks():
    torch.manual_seed(0)
    baff = BlockAdaptiveFusion(block=8)
    shallow, deep = torch.randn(2, 4, 20, 12), torch.randn(2, 4, 20, 12)
    conv3d = nn.Conv3d(1, 1, (2, 3, 3), padding=(0, 1, 1))
    with torch.no_grad():
        conv3d.weight.copy_(baff.volume_conv.weight.reshape(1, 1, 2, 3, 3))
        conv3d.bias.copy_(baff.volume_conv.bias)
        volume = torch.stack([shallow, deep], dim=2).reshape(8, 1, 2, 20, 12)
        per_class = conv3d(volume).reshape(2, 4, 20, 12).mean(dim=1)
        weight = baff.weight_map(shallow, deep)[:, 0]
        for bi in range(3):          # 20 rows -> blocks of 8, 8, 4
            for bj in range(2):      # 12 cols -> blocks of 8, 4
                rows, cols = slice(8 * bi, 8 * bi + 8), slice(8 * bj, 8 * bj + 8)
                expected = torch.sigmoid(per_class[:, rows, cols].mean(dim=(1, 2)))
                block = weight[:, rows, cols]
                torch.testing.assert_close(block, expected[:, None, None].expand_as(block))
        fused = baff(shallow, deep)
        w = weight[:, None]
        torch.testing.assert_close(fused, w * shallow + (1 - w) * deep)
    assert sum(p.numel() for p in baff.parameters()) == 19


def test_skipnet_deconvolutions_start_bilinear():
    model = create_model("baff_skipnet", num_classes=3)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        up = model.up8(x)
    # Away from the border, a bilinear x8 transposed conv reproduces linear ramps exactly.
    ramp = torch.arange(6.0)[None, None, :, None].expand(1, 3, 6, 5).contiguous()
    with torch.no_grad():
        up_ramp = model.up8(ramp)
    assert up.shape == (1, 3, 48, 40)
    inner = up_ramp[0, 0, 8:40, 8:32]
    steps = inner[1:] - inner[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, 1 / 8))


# ---------------------------------------------------------------- pretrained encoders

def _divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def torchvision_layout(width: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's ``mobilenet_v2`` state-dict names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name, out_ch, in_ch, k):
        sd[f"{name}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=gen)

    def bn(name, ch):
        sd[f"{name}.weight"] = torch.rand(ch, generator=gen) + 0.5
        sd[f"{name}.bias"] = torch.randn(ch, generator=gen)
        sd[f"{name}.running_mean"] = torch.randn(ch, generator=gen)
        sd[f"{name}.running_var"] = torch.rand(ch, generator=gen) + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(7)

    stem = _divisible(32 * width)
    conv("features.0.0", stem, 3, 3)
    bn("features.0.1", stem)
    index, in_ch = 1, stem
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        out_ch = _divisible(c * width)
        for _ in range(n):
            hidden, p, j = in_ch * t, f"features.{index}.conv", 0
            if t != 1:
                conv(f"{p}.0.0", hidden, in_ch, 1)
                bn(f"{p}.0.1", hidden)
                j = 1
            conv(f"{p}.{j}.0", hidden, 1, 3)  # depthwise
            bn(f"{p}.{j}.1", hidden)
            conv(f"{p}.{j + 1}", out_ch, hidden, 1)
            bn(f"{p}.{j + 2}", out_ch)
            index, in_ch = index + 1, out_ch
    last = _divisible(1280 * max(1.0, width))
    conv(f"features.{index}.0", last, in_ch, 1)
    bn(f"features.{index}.1", last)
    sd["classifier.1.weight"] = torch.randn(1000, last, generator=gen)
    sd["classifier.1.bias"] = torch.randn(1000, generator=gen)
    return sd


def test_the_reference_layout_is_torchvisions():
    sd = torchvision_layout(1.0)
    learnable = sum(v.numel() for k, v in sd.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert learnable == 3_504_872  # torchvision's documented mobilenet_v2 parameter count
    for key in ("features.1.conv.0.0.weight", "features.1.conv.2.running_var",
                "features.2.conv.0.0.weight", "features.2.conv.3.bias", "features.17.conv.2.weight",
                "features.18.0.weight", "features.18.1.num_batches_tracked"):
        assert key in sd


def _official_encoder_tensors(sd, keep_head: bool):
    skip = ("classifier.",) + (() if keep_head else ("features.18.",))
    return [(k, v) for k, v in sd.items() if not k.startswith(skip)]


@pytest.mark.parametrize("name, width, keep_head", [("canet", 1.0, False),
                                                    ("baff_skipnet", 0.5, True)])
def test_pretrained_encoder_loads_the_official_layout(name, width, keep_head):
    sd = torchvision_layout(width)
    model = create_model(name, in_channels=3, num_classes=6)
    missing, unexpected = model.load_pretrained_encoder(sd)
    assert missing == []
    dropped = {k for k in sd if k.startswith("classifier.") or
               (not keep_head and k.startswith("features.18."))}
    assert set(unexpected) == dropped
    encoder = model.context.encoder if name == "canet" else model.encoder
    ours = list(encoder.state_dict().items())
    official = _official_encoder_tensors(sd, keep_head)
    # Module order matches torchvision's, so the i-th tensors must be the same weights.
    assert len(ours) == len(official)
    for (our_key, our_tensor), (key, tensor) in zip(ours, official):
        assert torch.equal(our_tensor, tensor), (our_key, key)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 3, 64, 64))).all()


@pytest.mark.parametrize("name", ["canet", "baff_skipnet"])
def test_pretrained_first_conv_adapts_to_five_bands(name):
    width = 1.0 if name == "canet" else 0.5
    sd = torchvision_layout(width)
    model = create_model(name, in_channels=5, num_classes=6)
    missing, _ = model.load_pretrained_encoder(sd)
    assert missing == []
    encoder = model.context.encoder if name == "canet" else model.encoder
    weight = encoder.stem[0].weight.detach()
    rgb = sd["features.0.0.weight"]
    assert weight.shape == (rgb.shape[0], 5, 3, 3)
    assert torch.equal(weight[:, :3], rgb)
    mean = rgb.mean(dim=1)
    assert torch.equal(weight[:, 3], mean) and torch.equal(weight[:, 4], mean)


def test_pretrained_of_the_wrong_width_is_refused_and_nothing_loaded():
    model = create_model("baff_skipnet", in_channels=3, num_classes=6)  # MobileNetV2 x0.5
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    # Width 1.0 shares a few shapes with width 0.5 (the 1280-channel head BN), so some
    # tensors would fit: a partial load must still be refused, not pass as "loaded".
    with pytest.raises(ValueError, match=r"fills only \d+ of the encoder's \d+ tensors.*width"):
        model.load_pretrained_encoder(torchvision_layout(1.0))
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_pretrained_without_batchnorm_counters_loads():
    """Old torchvision checkpoints have no ``num_batches_tracked``; that is all that may miss."""
    sd = {k: v for k, v in torchvision_layout(1.0).items() if not k.endswith("num_batches_tracked")}
    model = create_model("canet", in_channels=4, num_classes=6)
    missing, _ = model.load_pretrained_encoder(sd)
    assert missing and all(k.endswith("num_batches_tracked") for k in missing)
    assert torch.equal(model.context.encoder.blocks[16].project[0].weight, sd["features.17.conv.2.weight"])


@pytest.mark.parametrize("name, width", [("canet", 1.0), ("baff_skipnet", 0.5)])
def test_train_pretrained_option_loads_an_official_file(tmp_path, name, width):
    """What ``rsseg train --pretrained FILE`` runs: a torchvision checkpoint file on disk,
    loaded safely and mapped into the encoder; a file of the wrong width is an error
    naming the file."""
    from rsseg.errors import ModelError
    from rsseg.training.setup import load_pretrained

    sd = torchvision_layout(width)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(sd, path)
    model = create_model(name, in_channels=4, num_classes=6)
    load_pretrained(model, path)
    encoder = model.context.encoder if name == "canet" else model.encoder
    assert torch.equal(encoder.blocks[5].depthwise[1].running_var, sd["features.6.conv.1.1.running_var"])
    assert torch.equal(encoder.stem[0].weight[:, :3], sd["features.0.0.weight"])
    torch.save({"state_dict": torchvision_layout(1.5 - width)}, path)
    with pytest.raises(ModelError, match=r"mobilenet_v2\.pth: cannot load the pretrained encoder"):
        load_pretrained(create_model(name, in_channels=4, num_classes=6), path)
