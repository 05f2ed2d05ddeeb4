"""BAFNet and LWGANet: sizes against the papers, any-size inputs, training, pretrained loading."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rsseg.models import create_model, model_entry
from rsseg.models._complexity import count_macs, count_params
from rsseg.models.layers.attention import WindowAttention
from rsseg.models.lwganet import _pooled, shear_cols, shear_rows, unshear_cols, unshear_rows



def within(value: float, target: float, tolerance: float) -> bool:
    return abs(value - target) <= tolerance * target


# ------------------------------------------------------------------ sizes vs papers

def test_bafnet_params_and_macs_match_paper():
    model = create_model("bafnet", in_channels=3, num_classes=6)
    params = count_params(model)
    assert params == 6_384_379  # official BAFNet.py, 6 classes
    assert within(params, 6.4e6, 0.03)
    macs = count_macs(model.to("meta"), (1, 3, 512, 512))
    assert within(macs, 12.3e9, 0.05), macs


@pytest.mark.parametrize("variant, paper_m, exact", [
    ("l0", 1.72, 1_717_423), ("l1", 5.90, 5_906_975), ("l2", 13.0, 13_040_667)])
def test_lwganet_classifier_params_match_paper(variant, paper_m, exact):
    model = create_model(f"lwganet_{variant}_cls", in_channels=3, num_classes=45)
    params = count_params(model)
    assert params == exact
    assert within(params, paper_m * 1e6, 0.03)
    assert not model_entry(f"lwganet_{variant}_cls").listed


def test_lwganet_l2_segmentation_params_and_macs_match_paper():
    # UAVid, 8 classes; the paper's total counts UNetFormer's training-only auxiliary head.
    model = create_model("lwganet_l2", in_channels=3, num_classes=8, aux_head=True)
    params = count_params(model)
    assert params == 12_582_304
    assert within(params, 12.58e6, 0.03)
    assert model_entry("lwganet_l2").paper_config["aux_head"] is True
    # 3x3 conv + BN + 1x1 conv to 8 classes (with bias) at decoder width 64.
    aux = 64 * 64 * 9 + 2 * 64 + 64 * 8 + 8
    assert count_params(create_model("lwganet_l2", in_channels=3, num_classes=8)) == params - aux
    macs = count_macs(model.to("meta"), (1, 3, 1024, 1024))  # shapes only: no arithmetic
    assert within(macs, 50.3e9, 0.05), macs


def test_meta_mac_count_equals_computed_count():
    """The paper checks above count on the meta device; it must agree with a real forward."""
    model = create_model("lwganet_l0", in_channels=3, num_classes=6)
    real = count_macs(model, (1, 3, 96, 128))
    assert real > 0 and count_macs(model.to("meta"), (1, 3, 96, 128)) == real


# ------------------------------------------------------------------ any input size

@pytest.mark.parametrize("name", ["lwganet_l1", "lwganet_l2"])
def test_wider_lwganets_give_input_sized_logits(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=4, num_classes=6).eval()
    with torch.no_grad():
        for h, w in [(45, 70), (7, 9)]:
            logits = model(torch.randn(1, 4, h, w))
            assert logits.shape == (1, 6, h, w) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["bafnet", "lwganet_l0"])
def test_odd_sizes_and_batch_one_give_input_sized_logits(name):
    torch.manual_seed(0)
    cases = {4: [(333, 517), (7, 9)], 5: [(45, 70)]}  # IRRG+DSM and RGBIR+DSM
    for bands, sizes in cases.items():
        model = create_model(name, in_channels=bands, num_classes=6).eval()
        with torch.no_grad():
            for h, w in sizes:
                logits = model(torch.randn(1, bands, h, w))
                assert logits.shape == (1, 6, h, w) and torch.isfinite(logits).all()


def test_logits_of_a_padded_input_are_the_crop_of_the_padded_run():
    torch.manual_seed(0)
    model = create_model("lwganet_l0", in_channels=3, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        # The network pads 50x90 up to 64x96 by reflection; feeding that padded image
        # directly must give the same logits on the 50x90 region.
        padded = F.pad(x[..., :50, :90], (0, 6, 0, 14), mode="reflect")
        assert torch.allclose(model(x[..., :50, :90]), model(padded)[..., :50, :90], atol=1e-5)


def test_lwganet_trains_with_batch_one():
    """Batches of one image (odd size): forward, backward and optimiser steps run, every
    parameter gets a gradient, and the loss on that image goes down."""
    torch.manual_seed(0)
    model = create_model("lwganet_l0", in_channels=4, num_classes=3).train()
    x, y = torch.randn(1, 4, 130, 97), torch.randint(0, 3, (1, 130, 97))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        logits = model(x)
        assert logits.shape == (1, 3, 130, 97)
        loss = F.cross_entropy(logits, y)
        optimiser.zero_grad()
        loss.backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert no_grad == [], no_grad
        optimiser.step()
        losses.append(float(loss))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses


def test_bafnet_trains_with_batch_one():
    """The FAM's BatchNorm sees one value per channel with N = 1: that step normalises
    with the running statistics (as eval does) instead of failing, and learns."""
    torch.manual_seed(0)
    model = create_model("bafnet", in_channels=4, num_classes=3).train()
    gate = model.fam.gate_bn
    with torch.no_grad():
        gate.running_mean.normal_()
        gate.running_var.uniform_(0.5, 2.0)
    stats = gate.running_mean.clone(), gate.running_var.clone()
    x, y = torch.randn(1, 4, 64, 64), torch.randint(0, 3, (1, 64, 64))
    logits = model(x)
    assert logits.shape == (1, 3, 64, 64)
    F.cross_entropy(logits, y).backward()
    assert gate.weight.grad.abs().sum() > 0 and model.fam.eca.weight.grad.abs().sum() > 0
    assert torch.equal(gate.running_mean, stats[0]) and torch.equal(gate.running_var, stats[1])
    pooled = torch.randn(1, 256, 1, 1)
    torch.testing.assert_close(gate(pooled), gate.eval()(pooled))
    gate.train()
    batch = torch.randn(3, 256, 1, 1)  # N > 1: ordinary batch statistics
    torch.testing.assert_close(gate(batch), F.batch_norm(batch, None, None, gate.weight, gate.bias,
                                                         True, 0.0, gate.eps))


# ------------------------------------------------------------------ training

def _loss(model, x, y):
    torch.manual_seed(1)  # same dropout / drop-path masks before and after the step
    return F.cross_entropy(model(x), y)  # the loss on model(x), as rsseg train computes it


@pytest.mark.parametrize("name", ["bafnet", "lwganet_l0", "lwganet_l1", "lwganet_l2"])
def test_one_step_lowers_loss_and_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=4, num_classes=4).train()
    x = torch.randn(2, 4, 64, 64)
    y = torch.randint(0, 4, (2, 64, 64))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    before = _loss(model, x, y)
    before.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []
    optimiser.step()
    with torch.no_grad():
        after = _loss(model, x, y)
    assert after.item() < before.item()


def test_lwganet_aux_head_is_opt_in_and_learns_only_through_its_loss():
    """The auxiliary head gets no gradient from the main loss, so the default model
    (trained by a plain ``loss(model(x), y)``) leaves it out; with ``aux_head=True``
    the main + 0.4 x auxiliary loss of UNetFormer reaches every parameter."""
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    plain = create_model("lwganet_l0", in_channels=3, num_classes=4).train()
    assert plain.decoder.aux_head is None and plain.forward_with_aux(x)[1] is None
    model = create_model("lwganet_l0", in_channels=3, num_classes=4, aux_head=True).train()
    aux_names = {f"decoder.aux_head.{n}" for n, _ in model.decoder.aux_head.named_parameters()}
    assert count_params(model) - count_params(plain) == 64 * 64 * 9 + 2 * 64 + 64 * 4 + 4
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, 4, 64, 64)
    F.cross_entropy(logits, y).backward()
    assert {n for n, p in model.named_parameters() if p.grad is None} == aux_names
    model.zero_grad(set_to_none=True)
    logits, aux = model.forward_with_aux(x)
    (F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_weights_trained_with_the_aux_head_load_without_it():
    """Deploying (or a checkpoint saved while the head was on by default) needs no aux head:
    its tensors are ignored by a model built without one; every other tensor must fit."""
    torch.manual_seed(0)
    trained = create_model("lwganet_l0", in_channels=4, num_classes=3, aux_head=True).eval()
    state = trained.state_dict()
    assert any(k.startswith("decoder.aux_head.") for k in state)
    plain = create_model("lwganet_l0", in_channels=4, num_classes=3).eval()
    plain.load_state_dict(state, strict=True)
    x = torch.randn(1, 4, 40, 56)
    with torch.no_grad():
        assert torch.equal(plain(x), trained(x))
    del state["decoder.head.2.bias"]
    with pytest.raises(RuntimeError, match="decoder.head.2.bias"):
        plain.load_state_dict(state, strict=True)


# ------------------------------------------------------------------ building blocks

def test_shear_inverts_exactly_on_non_square_maps():
    x = torch.randn(2, 3, 5, 8)
    sheared = shear_rows(x)
    assert sheared.shape == (2, 3, 5, 12)
    for i in range(5):  # row i moved right by i, zeros around it
        assert torch.equal(sheared[..., i, i:i + 8], x[..., i, :])
        assert sheared[..., i, :i].abs().sum() == 0 and sheared[..., i, i + 8:].abs().sum() == 0
    assert torch.equal(unshear_rows(sheared, 8), x)
    assert torch.equal(unshear_cols(shear_cols(x), 5), x)
    assert torch.equal(shear_cols(x)[..., 2:7, 2], x[..., :, 2])


def test_tgfi_puts_processed_tokens_back_like_max_unpool():
    x = torch.randn(2, 3, 8, 10)
    tokens, index = F.max_pool2d(x, 2, 2, return_indices=True)
    expected = F.max_unpool2d(tokens * 2 + 1, index, 2, 2)
    assert torch.equal(_pooled(lambda t: t * 2 + 1, x), expected)
    assert (expected != 0).sum() == tokens.numel()  # one token per 2x2 region, zeros elsewhere


def test_window_attention_matches_reference_per_window():
    """Windowed attention equals plain attention computed window by window."""
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, num_heads=2, window=4).eval()
    with torch.no_grad():
        attn.rel_bias.normal_()
        x = torch.randn(1, 8, 8, 12)
        out = attn(x)
        qkv = attn.qkv(x).reshape(1, 3, 2, 4, 8, 12)
        bias = attn.rel_bias[attn.rel_index.reshape(-1)].reshape(16, 16, 2).permute(2, 0, 1)
        for r in range(0, 8, 4):
            for c in range(0, 12, 4):
                q, k, v = (qkv[0, i, :, :, r:r + 4, c:c + 4].flatten(-2).transpose(-2, -1)
                           for i in range(3))  # (heads, 16, head_dim)
                weights = (q @ k.transpose(-2, -1) / 2.0 + bias).softmax(-1)
                ref = (weights @ v).transpose(-2, -1).reshape(8, 4, 4)
                assert torch.allclose(out[0, :, r:r + 4, c:c + 4], ref, atol=1e-5)


# ------------------------------------------------------------------ pretrained encoders

def _bn(prefix: str, ch: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.randn(ch), f"{prefix}.bias": torch.randn(ch),
            f"{prefix}.running_mean": torch.randn(ch), f"{prefix}.running_var": torch.rand(ch) + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(7)}


def _conv(prefix: str, out_ch: int, in_ch: int, k, bias: bool = True) -> dict[str, torch.Tensor]:
    kh, kw = (k, k) if isinstance(k, int) else k
    sd = {f"{prefix}.weight": torch.randn(out_ch, in_ch, kh, kw)}
    if bias:
        sd[f"{prefix}.bias"] = torch.randn(out_ch)
    return sd


def official_van_b0() -> dict[str, torch.Tensor]:
    """A state dict laid out like VAN-Classification's ``van_tiny`` (VAN-B0) checkpoint."""
    sd: dict[str, torch.Tensor] = {}
    dims, depths, ratios = (32, 64, 160, 256), (3, 3, 5, 2), (8, 8, 4, 4)
    prev = 3
    for i, (d, n, r) in enumerate(zip(dims, depths, ratios), start=1):
        sd |= _conv(f"patch_embed{i}.proj", d, prev, 7 if i == 1 else 3) | _bn(f"patch_embed{i}.norm", d)
        for j in range(n):
            b = f"block{i}.{j}"
            sd |= _bn(f"{b}.norm1", d) | _bn(f"{b}.norm2", d)
            sd |= _conv(f"{b}.attn.proj_1", d, d, 1) | _conv(f"{b}.attn.proj_2", d, d, 1)
            sd |= _conv(f"{b}.attn.spatial_gating_unit.conv0", d, 1, 5)
            sd |= _conv(f"{b}.attn.spatial_gating_unit.conv_spatial", d, 1, 7)
            sd |= _conv(f"{b}.attn.spatial_gating_unit.conv1", d, d, 1)
            sd |= _conv(f"{b}.mlp.fc1", d * r, d, 1) | _conv(f"{b}.mlp.dwconv.dwconv", d * r, 1, 3)
            sd |= _conv(f"{b}.mlp.fc2", d, d * r, 1)
            sd[f"{b}.layer_scale_1"], sd[f"{b}.layer_scale_2"] = torch.randn(d), torch.randn(d)
        sd[f"norm{i}.weight"], sd[f"norm{i}.bias"] = torch.randn(d), torch.randn(d)
        prev = d
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, 256), torch.randn(1000)
    return sd


def official_lwganet(width: int = 32, depths=(1, 2, 4, 2)) -> dict[str, torch.Tensor]:
    """A state dict laid out like the official LWGANet classifier (ImageNet, 1000 classes)."""
    sd = _conv("Stem.proj", width, 3, 4, bias=False) | _bn("Stem.norm", width)
    for k, depth in enumerate(depths):
        d, s = width * 2 ** k, width * 2 ** k // 4
        for j in range(depth):
            b = f"stages.{2 * k}.blocks.{j}"
            sd |= _conv(f"{b}.mlp.0", 2 * d, d, 1, False) | _bn(f"{b}.mlp.1", 2 * d)
            sd |= _conv(f"{b}.mlp.3", d, 2 * d, 1, False) | _bn(f"{b}.norm1", d)
            sd |= _conv(f"{b}.PA.p_conv.0", 4 * s, s, 1, False) | _bn(f"{b}.PA.p_conv.1", 4 * s)
            sd |= _conv(f"{b}.PA.p_conv.3", s, 4 * s, 1, False)
            sd |= _conv(f"{b}.LA.conv.0", s, s, 3, False) | _bn(f"{b}.LA.conv.1", s)
            sd[f"{b}.MRA.max_m2.filt"] = torch.ones(s, 1, 4, 4) / 16
            for name, shape in (("H_att1", (11, 3)), ("V_att1", (3, 11)), ("H_att2", (11, 3)),
                                ("V_att2", (3, 11))):
                sd |= _conv(f"{b}.MRA.{name}", s, 1, shape, False)
            sd |= _bn(f"{b}.MRA.norm", s)
            if k < 2:
                g = f"{b}.GA12"
                sd |= _conv(f"{g}.proj_1", s, s, 1) | _conv(f"{g}.conv0", s, 1, 5)
                sd |= _conv(f"{g}.conv_spatial", s, 1, 7) | _conv(f"{g}.conv1", s // 2, s, 1)
                sd |= _conv(f"{g}.conv2", s // 2, s, 1) | _conv(f"{g}.conv_squeeze", 2, 2, 7)
                sd |= _conv(f"{g}.conv", s, s // 2, 1) | _conv(f"{g}.proj_2", s, s, 1)
                sd |= _bn(f"{b}.norm", s)
            elif k == 2:
                sd |= _bn(f"{b}.GA3.norm", s)
                sd[f"{b}.GA3.attn.qkv.weight"] = torch.randn(3 * s, s)
                sd[f"{b}.GA3.attn.proj.weight"] = torch.randn(s, s)
            else:
                sd[f"{b}.GA4.qkv.weight"] = torch.randn(3 * s, s)
                sd[f"{b}.GA4.proj.weight"] = torch.randn(s, s)
                sd |= _bn(f"{b}.norm", s)
        if k < 3:
            p = f"stages.{2 * k + 1}"
            sd |= _conv(f"{p}.conv", 2 * d, 1, 3) | _conv(f"{p}.conv_c", 2 * d, 1, 3)
            sd |= _bn(f"{p}.norm_c", 2 * d) | _bn(f"{p}.norm_m", 2 * d)
            sd |= _conv(f"{p}.fusion", 2 * d, 4 * d, 1)
    sd["avgpool_pre_head.1.weight"] = torch.randn(1280, width * 8, 1, 1)
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    return sd


@pytest.mark.parametrize("bands", [3, 4])
def test_bafnet_loads_official_van_b0_checkpoint(bands):
    sd = official_van_b0()
    model = create_model("bafnet", in_channels=bands, num_classes=6)
    missing, unexpected = model.load_pretrained_encoder({"state_dict": sd})
    assert missing == [] and sorted(unexpected) == ["head.bias", "head.weight"]
    enc = model.encoder
    first = enc.stages[0].embed.conv.weight
    assert torch.equal(first[:, :3], sd["patch_embed1.proj.weight"])
    if bands == 4:  # the extra band starts from the mean RGB filter
        assert torch.allclose(first[:, 3], sd["patch_embed1.proj.weight"].mean(1))
    block = enc.stages[2].blocks[4]
    checks = {
        "block3.4.attn.spatial_gating_unit.conv_spatial.weight": block.attn.lka.dw_dilated.weight,
        "block3.4.attn.spatial_gating_unit.conv0.bias": block.attn.lka.dw.bias,
        "block3.4.attn.spatial_gating_unit.conv1.weight": block.attn.lka.pw.weight,
        "block3.4.attn.proj_1.weight": block.attn.proj_in.weight,
        "block3.4.attn.proj_2.bias": block.attn.proj_out.bias,
        "block3.4.mlp.dwconv.dwconv.weight": block.mlp.dw.weight,
        "block3.4.mlp.fc2.weight": block.mlp.fc2.weight,
        "block3.4.norm2.running_var": block.norm2.running_var,
        "block3.4.layer_scale_1": block.scale_attn,
        "block3.4.layer_scale_2": block.scale_mlp,
        "patch_embed4.norm.running_mean": enc.stages[3].embed.bn.running_mean,
        "norm4.weight": enc.stages[3].norm.weight,
    }
    for key, ours in checks.items():
        assert torch.equal(ours, sd[key]), key
    # Beyond the hand-mapped keys above: every other official float tensor sits, unchanged,
    # in exactly one place of the encoder, found by value (not through the loader's own
    # key mapping), and the encoder holds no float tensor that did not come from the file.
    ours = [v for k, v in enc.state_dict().items()
            if v.is_floating_point() and k != "stages.0.embed.conv.weight"]
    official = [v for k, v in sd.items() if v.is_floating_point()
                and not k.startswith("head.") and k != "patch_embed1.proj.weight"]
    assert len(ours) == len(official)
    for value in official:
        assert sum(v.shape == value.shape and torch.equal(v, value) for v in ours) == 1


@pytest.mark.parametrize("name, bands", [("lwganet_l0", 5), ("lwganet_l0_cls", 3)])
def test_lwganet_loads_official_checkpoint(name, bands):
    sd = official_lwganet()
    model = create_model(name, in_channels=bands, num_classes=6)
    missing, unexpected = model.load_pretrained_encoder(sd)
    filters = [k for k in sd if k.endswith("max_m2.filt")]
    assert sorted(unexpected) == sorted(["head.weight", "head.bias", "avgpool_pre_head.1.weight"] + filters)
    expected_missing = [f"out_norms.{i}.{p}" for i in range(4) for p in
                        ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    assert missing == (sorted(expected_missing) if name == "lwganet_l0" else [])
    bb = model.backbone
    stem = bb.stem[0].weight
    assert torch.equal(stem[:, :3], sd["Stem.proj.weight"])
    if bands == 5:
        assert torch.allclose(stem[:, 3], sd["Stem.proj.weight"].mean(1))
        assert torch.equal(stem[:, 3], stem[:, 4])
    blk1, blk2, blk3 = bb.stages[1][1], bb.stages[2][3], bb.stages[3][0]
    checks = {
        "stages.2.blocks.1.GA12.conv_squeeze.bias": blk1.sga.attn.squeeze.bias,
        "stages.2.blocks.1.GA12.conv.weight": blk1.sga.attn.expand.weight,
        "stages.2.blocks.1.GA12.conv1.weight": blk1.sga.attn.reduce_dw.weight,
        "stages.2.blocks.1.GA12.conv_spatial.weight": blk1.sga.attn.dw_dilated.weight,
        "stages.2.blocks.1.norm.running_mean": blk1.sga.bn.running_mean,
        "stages.2.blocks.1.norm1.weight": blk1.norm.weight,
        "stages.2.blocks.1.MRA.H_att2.weight": blk1.sma.diag_v.weight,
        "stages.2.blocks.1.MRA.V_att1.weight": blk1.sma.strip_h.weight,
        "stages.2.blocks.1.PA.p_conv.3.weight": blk1.gpa.net[3].weight,
        "stages.2.blocks.1.LA.conv.1.running_var": blk1.rla[1].running_var,
        "stages.2.blocks.1.mlp.3.weight": blk1.mlp[3].weight,
        "stages.4.blocks.3.GA3.attn.qkv.weight": blk2.sga.attn.qkv.weight,
        "stages.4.blocks.3.GA3.norm.bias": blk2.sga.bn.bias,
        "stages.6.blocks.0.GA4.proj.weight": blk3.sga.attn.proj.weight,
        "stages.6.blocks.0.norm.weight": blk3.sga.bn.weight,
        "stages.3.conv_c.weight": bb.downsamples[1].conv_down.weight,
        "stages.3.fusion.bias": bb.downsamples[1].fuse.bias,
        "stages.5.norm_m.running_mean": bb.downsamples[2].pool_bn.running_mean,
        "stages.1.conv.weight": bb.downsamples[0].expand.weight,
    }
    for key, ours in checks.items():
        assert torch.equal(ours, sd[key]), key


@pytest.mark.parametrize("name, layout", [("bafnet", "van"), ("lwganet_l0", "lwganet")])
def test_train_pretrained_option_loads_an_official_file(tmp_path, name, layout):
    """What ``rsseg train --pretrained FILE`` runs: the official checkpoint file on disk
    (wrapped as the official releases are), loaded safely and mapped into the encoder."""
    from rsseg.training.setup import load_pretrained

    sd = official_van_b0() if layout == "van" else official_lwganet()
    path = tmp_path / "imagenet.pth.tar"
    torch.save({"epoch": 300, "state_dict": sd}, path)
    model = create_model(name, in_channels=4, num_classes=6)
    load_pretrained(model, path)
    if layout == "van":
        ours, key = model.encoder.stages[1].blocks[2].attn.lka.dw_dilated.weight, \
            "block2.2.attn.spatial_gating_unit.conv_spatial.weight"
    else:
        ours, key = model.backbone.stages[2][1].sga.attn.qkv.weight, "stages.4.blocks.1.GA3.attn.qkv.weight"
    assert torch.equal(ours, sd[key])


def test_truncated_or_other_variant_checkpoints_are_refused():
    sd = official_van_b0()
    del sd["block3.4.mlp.fc2.weight"]  # an incomplete file fits almost everything
    model = create_model("bafnet", in_channels=3, num_classes=6)
    with pytest.raises(ValueError, match=r"fills only .*stages\.2\.blocks\.4\.mlp\.fc2\.weight"):
        model.load_pretrained_encoder(sd)
    l1 = create_model("lwganet_l1", in_channels=3, num_classes=6)  # L0 weights do not fit L1
    with pytest.raises(ValueError, match=r"fills only \d+ of the encoder's \d+ tensors .*"
                                         r"official checkpoint of this network's variant"):
        l1.load_pretrained_encoder(official_lwganet())


def test_pretrained_loader_rejects_unrelated_checkpoint():
    model = create_model("bafnet", in_channels=3, num_classes=6)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    with pytest.raises(ValueError, match="none of the checkpoint's 1 tensors fit.*fc.weight"):
        model.load_pretrained_encoder({"fc.weight": torch.randn(3, 3)})
    with pytest.raises(ValueError, match="none of"):  # LWGANet weights are not VAN weights
        model.load_pretrained_encoder(official_lwganet())
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
