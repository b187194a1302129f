"""The PyTorch reference networks of tests/torch_reference.py against tests/data/torch-names.txt."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_reference as ref  # noqa: E402

NAMES = ref.parse_torch_names()

# name -> (channels-first inputs, {output: channels-last shape})
CASES = {
    "vnet": ([(1, 1, 32, 32, 32)], {"seg": (1, 32, 32, 32, 1), "sdm": (1, 32, 32, 32, 1)}),
    "discriminator3d": ([(1, 1, 32, 32, 32)] * 2, {"logits": (1, 2)}),
    "unet2d": ([(2, 1, 64, 64)], {"logits": (2, 64, 64, 2)}),
    "unet3d": ([(1, 1, 32, 32, 32)], {"logits": (1, 32, 32, 32, 6)}),
    "stn2d": (
        [(2, 2, 64, 64)],
        {
            "velocity": (2, 32, 32, 2),
            "translation": (2, 2),
            "rotation": (2, 1),
            "log_scale": (2, 2),
        },
    ),
    "stn3d": (
        [(1, 10, 64, 64, 64)],
        {
            "velocity": (1, 32, 32, 32, 3),
            "translation": (1, 3),
            "rotation": (1, 3),
            "log_scale": (1, 3),
        },
    ),
}


@pytest.fixture(scope="module")
def modules():
    """Each reference network, built once per module (tests must not mutate them)."""
    return {name: ref.build(name) for name in ref.NETWORKS}


def _inputs(name, seed=0):
    gen = np.random.default_rng(seed)
    return [gen.normal(size=s).astype(np.float32) for s in CASES[name][0]]


def test_names_file_lists_the_six_networks():
    assert tuple(NAMES) == ref.NETWORKS
    for entry in NAMES.values():
        assert entry["count"] > 0 and entry["shapes"] and entry["header"]
    assert NAMES["vnet"]["count"] == 9448866
    assert NAMES["stn2d"]["shapes"]["grid"] == (2, 64, 64)
    assert NAMES["vnet"]["shapes"]["block_one.conv.1.num_batches_tracked"] == ()


@pytest.mark.parametrize("name", ref.NETWORKS)
def test_state_dict_matches_names_file(name, modules):
    module = modules[name]
    got = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    assert got == list(NAMES[name]["shapes"].items())
    assert sum(p.numel() for p in module.parameters()) == NAMES[name]["count"]
    assert not module.training


@pytest.mark.parametrize("name", ref.NETWORKS)
def test_output_shapes(name, modules):
    out = ref.forward_outputs(name, modules[name], *_inputs(name))
    assert {k: v.shape for k, v in out.items()} == CASES[name][1]
    for v in out.values():
        assert v.dtype == np.float32 and np.isfinite(v).all()


def test_channels_last_layout(modules):
    """Output channel c of forward_outputs is the module's channel c."""
    x = _inputs("unet2d")[0]
    module = modules["unet2d"]
    with torch.no_grad():
        raw = module(torch.from_numpy(x))["logits"].numpy()
    out = ref.forward_outputs("unet2d", module, x)["logits"]
    np.testing.assert_array_equal(out, np.moveaxis(raw, 1, -1))


def test_stn_grid_and_zero_affine_heads(modules):
    grid = modules["stn2d"].grid.numpy()
    lin = (2 * np.arange(64) / 63 - 1).astype(np.float32)
    np.testing.assert_allclose(grid[0], np.broadcast_to(lin[:, None], (64, 64)))
    np.testing.assert_allclose(grid[1], np.broadcast_to(lin[None, :], (64, 64)))
    out = ref.forward_outputs("stn2d", modules["stn2d"], *_inputs("stn2d"))
    for key in ("translation", "rotation", "log_scale"):
        np.testing.assert_array_equal(out[key], 0.0)


@pytest.mark.parametrize("name", ["vnet", "unet3d", "stn2d", "discriminator3d"])
def test_randomize_changes_everything_and_stays_finite(name):
    module = ref.build(name)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert ref.randomize_(module, seed=1) is module
    bn_buffers = {
        f"{prefix}.{b}" if prefix else b
        for prefix, m in module.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for b, _ in m.named_buffers(recurse=False)
    }
    changed = {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}
    params = {k for k, _ in module.named_parameters()}
    assert changed == params | bn_buffers
    for prefix, m in module.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            assert (m.running_var > 0).all(), prefix

    out = ref.forward_outputs(name, module, *_inputs(name))
    for key, v in out.items():
        assert np.isfinite(v).all(), key
        assert 1e-3 < np.std(v) + np.abs(np.mean(v)) < 1e3, key
        if name != "discriminator3d":
            assert np.std(v) > 0, key

    again = ref.randomize_(ref.build(name), seed=1).state_dict()
    for k, v in module.state_dict().items():
        assert torch.equal(v, again[k]), k


def test_randomize_scales_transposed_convs_by_effective_fan_in():
    module = ref.randomize_(ref.build("vnet"), seed=0)
    w = module.block_five_up.conv[0].weight  # (256, 128, 2, 2, 2): 256 inputs per output
    assert math.isclose(float(w.detach().std()), 256**-0.5, rel_tol=0.05)
