"""Import of reference PyTorch weights: parity with the reference networks, errors, loading."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402

from jaxseg.errors import DataError  # noqa: E402
from jaxseg.interop.torch import (  # noqa: E402
    NAMES,
    import_state_dict,
    load_checkpoint,
    reference_module,
)
from jaxseg.nn import VNet  # noqa: E402

# Inputs (PyTorch layout): small where the architecture allows, 64^3 for the 3D STN, whose
# linear layer is sized for that input.
INPUTS = {
    "vnet": [(2, 1, 32, 32, 16)],
    "discriminator3d": [(2, 1, 32, 32, 16), (2, 1, 32, 32, 16)],
    "unet2d": [(2, 1, 64, 64)],
    "unet3d": [(1, 1, 32, 32, 16)],
    "stn2d": [(2, 2, 64, 64)],
    "stn3d": [(1, 10, 64, 64, 64)],
}


def state_dict(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_imported_model_reproduces_the_reference(name):
    torch_model = ref.randomize_(ref.build(name), seed=3)  # non-trivial BN statistics
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=s).astype(np.float32) for s in INPUTS[name]]
    expected = ref.forward_outputs(name, torch_model, *inputs)

    variables = import_state_dict(name, state_dict(torch_model))
    module = reference_module(name)
    apply = jax.jit(lambda v, *xs: module.apply(v, *xs, train=False))
    outputs = apply(variables, *[jnp.moveaxis(x, 1, -1) for x in inputs])

    assert set(outputs) == set(expected)
    for key, value in expected.items():
        assert outputs[key].shape == value.shape
        np.testing.assert_allclose(np.asarray(outputs[key]), value, atol=1e-4, rtol=0)
        assert np.abs(value).max() > 1e-2  # the comparison is not between near-zero outputs


def test_a_network_of_other_widths_imports_into_the_module_given():
    torch_model = ref.randomize_(ref.VNet(n_filters=4).eval(), seed=5)
    x = np.random.default_rng(2).normal(size=(1, 1, 32, 32, 16)).astype(np.float32)
    expected = ref.forward_outputs("vnet", torch_model, x)
    with pytest.raises(ValueError, match=r"has shape \(8, 4, 2, 2, 2\), expected \(32, 16, 2"):
        import_state_dict("vnet", state_dict(torch_model))
    module = VNet(n_filters=4)
    variables = import_state_dict("vnet", state_dict(torch_model), module=module)
    outputs = module.apply(variables, jnp.moveaxis(x, 1, -1), train=False)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(outputs[key]), value, atol=1e-4, rtol=0)
        assert np.abs(value).max() > 1e-2


def test_import_returns_batch_stats_from_running_statistics():
    torch_model = ref.randomize_(ref.build("vnet"), seed=0)
    variables = import_state_dict("vnet", state_dict(torch_model))
    bn = torch_model.block_one.conv[1]
    np.testing.assert_array_equal(
        variables["batch_stats"]["encoder0"]["norm0"]["var"], bn.running_var.numpy()
    )
    np.testing.assert_array_equal(
        variables["params"]["encoder0"]["norm0"]["scale"], bn.weight.detach().numpy()
    )
    assert "batch_stats" not in import_state_dict("unet2d", state_dict(ref.build("unet2d")))


def test_missing_extra_and_misshaped_entries_are_all_named():
    sd = state_dict(ref.build("discriminator3d"))
    del sd["conv2.bias"]
    sd["conv9.weight"] = np.zeros(3)
    sd["classifier.weight"] = np.zeros((2, 256), np.float32)
    with pytest.raises(ValueError) as info:
        import_state_dict("discriminator3d", sd)
    message = str(info.value)
    assert "conv2.bias" in message and "conv9.weight" in message
    assert "classifier.weight has shape (2, 256), expected (2, 512)" in message


def test_stn_grid_buffer_is_checked_but_not_imported():
    sd = state_dict(ref.build("stn2d"))
    variables = import_state_dict("stn2d", sd)
    assert "grid" not in variables["params"]
    sd["grid"] = np.zeros((2, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"grid has shape \(2, 32, 32\), expected \(2, 64, 64\)"):
        import_state_dict("stn2d", sd)


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown reference network"):
        import_state_dict("resnet", {})
    with pytest.raises(ValueError, match="unknown reference network"):
        reference_module("resnet")


def test_load_checkpoint_round_trip(tmp_path):
    torch_model = ref.randomize_(ref.build("unet2d"), seed=5)
    path = tmp_path / "best_model.pth"
    wrapped = {"state_dict": {f"module.{k}": v for k, v in torch_model.state_dict().items()}}
    torch.save(wrapped, path)
    loaded = load_checkpoint(path)
    assert list(loaded) == list(torch_model.state_dict())
    variables = import_state_dict("unet2d", loaded)
    x = np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32)
    out = reference_module("unet2d").apply(variables, jnp.moveaxis(x, 1, -1), train=False)
    np.testing.assert_allclose(
        out["logits"], ref.forward_outputs("unet2d", torch_model, x)["logits"], atol=1e-4
    )


class NotATensor:
    pass


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=re.escape("missing.pth: no such checkpoint file")):
        load_checkpoint(tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(
        DataError, match=re.escape("corrupt.pth: not a readable PyTorch checkpoint")
    ):
        load_checkpoint(corrupt)
    pickled = tmp_path / "pickled.pth"
    torch.save({"weight": NotATensor()}, pickled)  # refused by weights_only=True
    with pytest.raises(DataError, match=re.escape("pickled.pth")):
        load_checkpoint(pickled)
    numbers = tmp_path / "numbers.pth"
    torch.save({"weight": 3}, numbers)
    with pytest.raises(
        DataError, match=re.escape("numbers.pth: entry 'weight' is a int, not a tensor")
    ):
        load_checkpoint(numbers)


def test_half_precision_nan_and_empty_checkpoints(tmp_path):
    """A bfloat16 state_dict is read as float32 (its values exactly); NaN weights and an empty
    file are refused naming the file; mismatches name a few entries and their count."""
    torch_model = ref.randomize_(ref.build("unet2d"), seed=6)
    state = torch_model.state_dict()
    half = tmp_path / "half.pth"
    torch.save(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}, half
    )
    loaded = load_checkpoint(half)
    key = next(k for k, v in state.items() if v.is_floating_point())
    assert loaded[key].dtype == np.float32
    np.testing.assert_array_equal(loaded[key], state[key].to(torch.bfloat16).float().numpy())
    broken = tmp_path / "nan.pth"
    torch.save(
        {
            k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
            for k, v in state.items()
        },
        broken,
    )
    with pytest.raises(DataError, match=re.escape("nan.pth: entry") + ".*non-finite"):
        load_checkpoint(broken)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.pth: not a readable PyTorch checkpoint \(\w+"):
        load_checkpoint(empty)
    renamed = {f"x{k}": v for k, v in load_checkpoint(half).items()}
    with pytest.raises(ValueError, match=r"\d+ missing entries \[.*\] and \d+ more"):
        import_state_dict("unet2d", renamed)
