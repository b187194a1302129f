"""jaxseg.losses against numpy formulas, independent PyTorch versions of the reference code,
analytic values, and jit/no-jit agreement."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit, logsumexp

from jaxseg import losses
from jaxseg.shape import sdm_to_mask


def run(fn, *args, jit):
    """``fn(*args)`` jitted, or op by op with jit disabled."""
    if jit:
        return np.asarray(jax.jit(fn)(*args))
    with jax.disable_jit():
        return np.asarray(fn(*args))


def probs_and_target(rng, shape=(2, 6, 5, 4)):
    probs = rng.uniform(size=shape).astype(np.float32)
    target = rng.uniform(size=shape) > 0.6
    return probs, target


# --------------------------------------------------------------------------------------------
# Dice


def np_dice(p, t, smooth=1e-5, squared=True):
    p, t = p.astype(np.float64), t.astype(np.float64)
    denom = (p**2).sum() + (t**2).sum() if squared else p.sum() + t.sum()
    return 1 - (2 * (p * t).sum() + smooth) / (denom + smooth)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("squared", [True, False])
def test_dice_loss_matches_numpy(rng, jit, squared):
    probs, target = probs_and_target(rng)
    out = run(lambda p, t: losses.dice_loss(p, t, squared=squared), probs, target, jit=jit)
    assert out.shape == ()
    np.testing.assert_allclose(out, np_dice(probs, target, squared=squared), rtol=1e-5)
    # the squared and unsquared denominators differ for soft probabilities
    assert not np.isclose(np_dice(probs, target), np_dice(probs, target, squared=False))


def test_dice_loss_whole_batch_not_per_sample_mean(rng):
    probs, target = probs_and_target(rng)
    target[0] = False  # an empty sample: a per-sample mean would be very different
    whole = float(losses.dice_loss(probs, target))
    per_sample = np.mean([np_dice(p, t) for p, t in zip(probs, target)])
    np.testing.assert_allclose(whole, np_dice(probs, target), rtol=1e-5)
    assert abs(whole - per_sample) > 0.05


def test_dice_loss_matches_torch_reference_and_gradient(rng):
    torch = pytest.importorskip("torch")

    def torch_dice(score, target):  # the reference's losses.dice_loss
        target = target.float()
        intersect = torch.sum(score * target)
        y_sum = torch.sum(target * target)
        z_sum = torch.sum(score * score)
        return 1 - (2 * intersect + 1e-5) / (z_sum + y_sum + 1e-5)

    probs, target = probs_and_target(rng)
    p_t = torch.tensor(probs, requires_grad=True)
    ref = torch_dice(p_t, torch.tensor(target) == 1)
    ref.backward()
    value, grad = jax.jit(jax.value_and_grad(losses.dice_loss))(probs, target)
    np.testing.assert_allclose(value, ref.item(), rtol=1e-5)
    np.testing.assert_allclose(grad, p_t.grad.numpy(), rtol=1e-4, atol=1e-9)


def test_dice_loss_analytic_values():
    target = np.zeros((2, 8, 8), bool)
    target[:, 2:5, 3:7] = True
    assert float(losses.dice_loss(target.astype(np.float32), target)) == pytest.approx(0, abs=1e-6)
    disjoint = (~target).astype(np.float32)
    assert float(losses.dice_loss(disjoint, target)) == pytest.approx(1, abs=1e-6)
    empty = np.zeros((1, 4, 4), np.float32)
    assert float(losses.dice_loss(empty, empty)) == pytest.approx(0, abs=1e-6)
    grad = jax.jit(jax.grad(losses.dice_loss))(empty, empty)
    assert np.all(np.isfinite(grad))


def test_multiclass_dice_loss_matches_numpy_and_torch(rng):
    logits = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 5, 6))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    onehot = np.eye(3, dtype=np.float32)[labels]
    expected = np.mean([np_dice(probs[..., c], onehot[..., c], squared=False) for c in range(3)])
    out = losses.multiclass_dice_loss(probs, onehot)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    expected_sq = np.mean([np_dice(probs[..., c], onehot[..., c]) for c in range(3)])
    np.testing.assert_allclose(
        losses.multiclass_dice_loss(probs, onehot, squared=True), expected_sq, rtol=1e-5
    )
    torch = pytest.importorskip("torch")
    # the reference's softmax_dice_loss: per-class dice_loss1 of softmaxes, channels first
    inp = torch.softmax(torch.tensor(logits).permute(0, 3, 1, 2), dim=1)
    tgt = torch.tensor(onehot).permute(0, 3, 1, 2)
    ref = 0
    for c in range(3):
        inter = torch.sum(inp[:, c] * tgt[:, c])
        ref += 1 - (2 * inter + 1e-5) / (inp[:, c].sum() + tgt[:, c].sum() + 1e-5)
    np.testing.assert_allclose(out, (ref / 3).item(), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# cross-entropies and regression losses


@pytest.mark.parametrize("jit", [True, False])
def test_cross_entropy_matches_numpy_and_torch(rng, jit):
    logits = (rng.normal(size=(2, 4, 5, 3, 3)) * 3).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 4, 5, 3)).astype(np.int32)
    out = run(losses.cross_entropy, logits, labels, jit=jit)
    lse = logsumexp(logits.astype(np.float64), axis=-1)
    picked = np.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(out, np.mean(lse - picked), rtol=1e-5)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(np.moveaxis(logits, -1, 1)), torch.tensor(labels).long()
    )
    np.testing.assert_allclose(out, ref.item(), rtol=1e-5)


@pytest.mark.parametrize("jit", [True, False])
def test_binary_cross_entropy_matches_numpy_and_torch(rng, jit):
    logits = (rng.normal(size=(2, 5, 4, 3)) * 4).astype(np.float32)
    targets = (rng.uniform(size=logits.shape) > 0.5).astype(np.float32)
    out = run(losses.binary_cross_entropy_with_logits, logits, targets, jit=jit)
    p = expit(logits.astype(np.float64))
    np.testing.assert_allclose(
        out, np.mean(-targets * np.log(p) - (1 - targets) * np.log1p(-p)), rtol=1e-5
    )
    torch = pytest.importorskip("torch")
    ref = torch.nn.BCEWithLogitsLoss()(torch.tensor(logits), torch.tensor(targets))
    np.testing.assert_allclose(out, ref.item(), rtol=1e-5)


def test_cross_entropies_stable_for_large_logits():
    big = np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32)
    assert float(losses.cross_entropy(big, np.array([0, 1]))) == pytest.approx(0, abs=1e-6)
    assert float(losses.cross_entropy(big, np.array([1, 0]))) == pytest.approx(2e4, rel=1e-6)
    t = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert float(losses.binary_cross_entropy_with_logits(big, t)) == pytest.approx(0, abs=1e-6)
    assert float(losses.binary_cross_entropy_with_logits(big, 1 - t)) == pytest.approx(1e4)
    for fn, args in [(losses.cross_entropy, (np.array([1, 0]),)),
                     (losses.binary_cross_entropy_with_logits, (t,))]:  # fmt: skip
        grad = jax.jit(jax.grad(fn))(big, *args)
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("jit", [True, False])
def test_mse_and_mae_match_numpy_and_torch(rng, jit):
    a = rng.normal(size=(2, 4, 3, 1)).astype(np.float32)
    b = rng.normal(size=(2, 4, 3, 1)).astype(np.float32)
    np.testing.assert_allclose(run(losses.mse, a, b, jit=jit), np.mean((a - b) ** 2), rtol=1e-5)
    np.testing.assert_allclose(run(losses.mae, a, b, jit=jit), np.mean(np.abs(a - b)), rtol=1e-5)
    torch = pytest.importorskip("torch")
    ta, tb = torch.tensor(a), torch.tensor(b)
    np.testing.assert_allclose(losses.mse(a, b), torch.nn.MSELoss()(ta, tb).item(), rtol=1e-5)
    np.testing.assert_allclose(losses.mae(a, b), (torch.norm(ta - tb, 1) / ta.numel()).item(), 1e-5)


def test_low_precision_inputs_are_summed_in_float32(rng):
    probs, target = probs_and_target(rng, (2, 32, 32, 16))
    out = losses.dice_loss(jnp.asarray(probs, jnp.bfloat16), target)
    assert out.dtype == jnp.float32
    expected = np_dice(np.asarray(jnp.asarray(probs, jnp.bfloat16), np.float64), target)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# SASSNet adversarial terms


def test_adversarial_losses_match_reference_targets(rng):
    torch = pytest.importorskip("torch")
    logits = rng.normal(size=(4, 2)).astype(np.float32)
    labelled = np.array([True, True, False, False])  # Dtarget = [1, 1, 0, 0]
    dtarget = torch.tensor([1, 1, 0, 0])
    d_loss = losses.adversarial_loss(logits, labelled)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits), dtarget)
    np.testing.assert_allclose(d_loss, ref.item(), rtol=1e-6)
    # generator: D's logits on the unlabelled half against Dtarget[:labeled_bs] (all 1)
    g_loss = losses.generator_adversarial_loss(logits[2:])
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits[2:]), dtarget[:2])
    np.testing.assert_allclose(g_loss, ref.item(), rtol=1e-6)
    assert losses.LABELLED == 1 and losses.UNLABELLED == 0


def test_generator_loss_falls_as_discriminator_says_labelled():
    says_labelled = np.array([[-5.0, 5.0]], np.float32)  # class 1 = labelled
    says_unlabelled = says_labelled[:, ::-1].copy()
    assert float(losses.generator_adversarial_loss(says_labelled)) < 0.01
    assert float(losses.generator_adversarial_loss(says_unlabelled)) > 9.9
    np.testing.assert_allclose(
        losses.adversarial_loss(says_unlabelled, np.array([0])),
        losses.generator_adversarial_loss(says_labelled),
        rtol=1e-6,
    )


# --------------------------------------------------------------------------------------------
# DTML cross-task consistency


@pytest.mark.parametrize("jit", [True, False])
def test_dual_task_consistency_matches_numpy(rng, jit):
    sdm = (rng.uniform(-1, 1, size=(2, 5, 4, 3, 1)) * 1e-3).astype(np.float32)
    seg = rng.normal(size=sdm.shape).astype(np.float32)
    out = run(losses.dual_task_consistency, sdm, seg, jit=jit)
    expected = np.mean((expit(-1500.0 * sdm.astype(np.float64)) - expit(seg)) ** 2)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(
        losses.dual_task_consistency(sdm, seg, k=10.0),
        np.mean((np.asarray(sdm_to_mask(sdm, 10.0)) - expit(seg)) ** 2),
        rtol=1e-5,
    )


def test_dual_task_consistency_gradients_reach_both_inputs_as_in_torch(rng):
    torch = pytest.importorskip("torch")
    sdm = (rng.uniform(-1, 1, size=(2, 4, 3, 3)) * 2e-3).astype(np.float32)
    seg = rng.normal(size=sdm.shape).astype(np.float32)
    s_t = torch.tensor(sdm, requires_grad=True)
    x_t = torch.tensor(seg, requires_grad=True)
    ref = torch.mean((torch.sigmoid(-1500 * s_t) - torch.sigmoid(x_t)) ** 2)
    ref.backward()
    value, (g_sdm, g_seg) = jax.jit(
        jax.value_and_grad(losses.dual_task_consistency, argnums=(0, 1))
    )(sdm, seg)
    np.testing.assert_allclose(value, ref.item(), rtol=1e-5)
    np.testing.assert_allclose(g_sdm, s_t.grad.numpy(), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(g_seg, x_t.grad.numpy(), rtol=1e-4, atol=1e-9)
    assert np.abs(g_sdm).max() > 0 and np.abs(g_seg).max() > 0


def test_dual_task_consistency_agreeing_tasks_give_zero():
    sdm = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 4, 6)
    # seg logits equal to -k * sdm give exactly the same probabilities
    assert float(losses.dual_task_consistency(sdm, -3.0 * sdm, k=3.0)) == pytest.approx(0, abs=1e-9)
    assert float(losses.dual_task_consistency(sdm, 3.0 * sdm, k=3.0)) > 0.01


# --------------------------------------------------------------------------------------------
# Atlas-ISTN smoothness


def torch_regularizer(torch, disp_cf, penalty="l2"):
    """The reference STN regulariser on a channels-first field ``(B, N, *S)``."""
    ndim = disp_cf.dim() - 2
    total = 0
    for axis in range(2, 2 + ndim):
        n = disp_cf.shape[axis]
        d = torch.abs(disp_cf.narrow(axis, 1, n - 1) - disp_cf.narrow(axis, 0, n - 1))
        total = total + torch.mean(d * d if penalty == "l2" else d)
    return total / ndim


@pytest.mark.parametrize("shape", [(2, 7, 6), (2, 6, 5, 4)])
@pytest.mark.parametrize("penalty", ["l2", "l1"])
@pytest.mark.parametrize("jit", [True, False])
def test_smoothness_matches_numpy_and_torch(rng, shape, penalty, jit):
    ndim = len(shape) - 1
    disp = rng.normal(size=(*shape, ndim)).astype(np.float32)
    out = run(lambda u: losses.smoothness(u, penalty=penalty), disp, jit=jit)
    f = (lambda d: d**2) if penalty == "l2" else np.abs
    expected = sum(np.mean(f(np.diff(disp, axis=a))) for a in range(1, ndim + 1)) / ndim
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    torch = pytest.importorskip("torch")
    ref = torch_regularizer(torch, torch.tensor(np.moveaxis(disp, -1, 1)), penalty)
    np.testing.assert_allclose(out, ref.item(), rtol=1e-5)


def test_smoothness_analytic_fields(rng):
    shape = (5, 6, 7)
    assert float(losses.smoothness(np.zeros((1, *shape, 3), np.float32))) == 0.0
    translation = np.broadcast_to(np.array([1.5, -2.0, 0.5], np.float32), (2, *shape, 3))
    assert float(losses.smoothness(translation)) == pytest.approx(0, abs=1e-9)
    # affine u(x) = A x + b: D_a u_i = A[i, a] everywhere, so the loss is ||A||_F^2 / N^2
    a = rng.normal(size=(3, 3)).astype(np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    disp = (grid @ a.T + np.array([1.0, 2.0, 3.0]))[None].astype(np.float32)
    np.testing.assert_allclose(losses.smoothness(disp), np.sum(a**2) / 9, rtol=1e-4)
    np.testing.assert_allclose(
        losses.smoothness(disp, penalty="l1"), np.sum(np.abs(a)) / 9, rtol=1e-4
    )


def test_smoothness_in_reference_units_by_rescaling(rng):
    torch = pytest.importorskip("torch")
    shape = (9, 7)
    disp = rng.normal(size=(1, *shape, 2)).astype(np.float32)
    scale = np.array([2.0 / (s - 1) for s in shape], np.float32)
    normalised_cf = torch.tensor(np.moveaxis(disp * scale, -1, 1))
    np.testing.assert_allclose(
        losses.smoothness(disp * scale), torch_regularizer(torch, normalised_cf).item(), rtol=1e-5
    )


def test_smoothness_gradient_finite_and_matches_torch(rng):
    torch = pytest.importorskip("torch")
    disp = rng.normal(size=(1, 5, 4, 3, 3)).astype(np.float32)
    t = torch.tensor(np.moveaxis(disp, -1, 1), requires_grad=True)
    torch_regularizer(torch, t).backward()
    grad = jax.jit(jax.grad(losses.smoothness))(disp)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, np.moveaxis(t.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-8)


# --------------------------------------------------------------------------------------------
# ramps and schedules: numpy versions of the reference ramps.py


def np_sigmoid_rampup(current, length):
    if length == 0:
        return 1.0
    current = np.clip(current, 0.0, length)
    phase = 1.0 - current / length
    return float(np.exp(-5.0 * phase * phase))


def np_linear_rampup(current, length):
    return 1.0 if current >= length else current / length


def np_cosine_rampdown(current, length):
    return float(0.5 * (np.cos(np.pi * current / length) + 1))


@pytest.mark.parametrize("jit", [True, False])
def test_ramps_match_reference_formulas(jit):
    steps = np.array([0, 1, 7, 20, 39, 40, 41, 100], np.int32)
    for length in [40.0, 0.0, 13]:
        got = run(functools.partial(losses.sigmoid_rampup, length=length), steps, jit=jit)
        assert got.dtype == np.float32 and got.shape == steps.shape
        np.testing.assert_allclose(got, [np_sigmoid_rampup(s, length) for s in steps], rtol=1e-6)
    np.testing.assert_allclose(
        run(functools.partial(losses.linear_rampup, length=40), steps, jit=jit),
        [np_linear_rampup(s, 40) for s in steps],
        rtol=1e-6,
    )
    inside = steps[steps <= 40]
    np.testing.assert_allclose(
        run(functools.partial(losses.cosine_rampdown, length=40), inside, jit=jit),
        [np_cosine_rampdown(s, 40) for s in inside],
        rtol=1e-6,
        atol=1e-7,
    )
    # outside the reference's asserted domains: clipped
    assert float(losses.linear_rampup(-3, 40)) == 0.0
    assert float(losses.linear_rampup(5, 0)) == 1.0
    assert float(losses.cosine_rampdown(60, 40)) == pytest.approx(0, abs=1e-7)
    assert float(losses.cosine_rampdown(3, 0)) == 0.0
    assert float(losses.sigmoid_rampup(-5, 40)) == pytest.approx(np.exp(-5.0), rel=1e-6)


def test_ramps_take_traced_steps_and_arrays():
    @jax.jit
    def f(step):
        return (
            losses.sigmoid_rampup(step, 40.0),
            losses.linear_rampup(step, 40.0),
            losses.cosine_rampdown(step, 40.0),
            losses.gaussian_warmup(step, weight=0.5, length=40.0),
        )

    steps = jnp.arange(0, 50, dtype=jnp.int32)
    batched = jax.vmap(f)(steps)
    for got, ref in zip(
        batched,
        [np_sigmoid_rampup, np_linear_rampup, lambda s, n: np_cosine_rampdown(min(s, n), n),
         lambda s, n: 0.5 * np_sigmoid_rampup(s, n)],
    ):  # fmt: skip
        np.testing.assert_allclose(got, [ref(int(s), 40.0) for s in steps], rtol=1e-6, atol=1e-7)
    # monotone: the sigmoid ramp-up rises to 1 and stays there
    up = np.asarray(batched[0])
    assert np.all(np.diff(up) >= 0) and up[40:].min() == 1.0 and up[0] < 0.01
    # the length may be traced too
    np.testing.assert_allclose(
        jax.jit(losses.sigmoid_rampup)(10, 40.0), np_sigmoid_rampup(10, 40.0), rtol=1e-6
    )


@pytest.mark.parametrize("weight", [0.01, 1.0])  # SASSNet, DTML
def test_consistency_weight_matches_reference_schedule(weight):
    schedule = losses.consistency_weight(weight, rampup_length=40.0, step_divisor=150)
    traces = []
    jitted = jax.jit(lambda step: traces.append(step) or schedule(step))
    for it in [0, 1, 149, 150, 151, 1499, 3000, 5999, 6000, 9000]:
        expected = weight * np_sigmoid_rampup(it // 150, 40.0)
        np.testing.assert_allclose(jitted(jnp.int32(it)), expected, rtol=1e-6)
        np.testing.assert_allclose(schedule(it), expected, rtol=1e-6)
    assert len(traces) == 1  # one compilation serves every step
    # constant within a block of 150 steps; full weight at the end of the 6000 iterations
    assert float(schedule(150)) == float(schedule(299)) < float(schedule(300))
    assert float(schedule(6000)) == pytest.approx(weight)
    assert float(schedule(5999)) < weight
    np.testing.assert_allclose(
        losses.gaussian_warmup(7, weight=weight, length=40.0),
        weight * np_sigmoid_rampup(7, 40.0),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="step_divisor"):
        losses.consistency_weight(weight, step_divisor=0)


# --------------------------------------------------------------------------------------------
# gradients and shape checks


def test_gradients_finite_at_saturation(rng):
    probs = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    target = np.array([[0, 1, 0, 1]])
    for g in [
        jax.jit(jax.grad(losses.dice_loss))(probs, target),
        jax.jit(jax.grad(losses.multiclass_dice_loss))(probs[..., None], target[..., None]),
        jax.jit(jax.grad(losses.dual_task_consistency, argnums=(0, 1)))(probs * 10, probs * 1e3)[0],
        jax.jit(jax.grad(losses.mse))(probs, target.astype(np.float32)),
        jax.jit(jax.grad(lambda x: losses.generator_adversarial_loss(x.reshape(2, 2))))(
            probs * 1e4
        ),
    ]:
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize(
    ("fn", "args", "match"),
    [
        (losses.dice_loss, (np.zeros((2, 4, 4)), np.zeros((2, 4, 4, 1))), r"\(2, 4, 4\)"),
        (losses.multiclass_dice_loss, (np.zeros((3,)), np.zeros((3,))), r"\(\.\.\., C\)"),
        (losses.cross_entropy, (np.zeros((2, 4, 3)), np.zeros((2, 3), int)), r"\(2, 4\)"),
        (losses.cross_entropy, (np.zeros((2, 3)), np.zeros((2,))), "integers"),
        (losses.binary_cross_entropy_with_logits, (np.zeros((2, 3)), np.zeros(3)), r"\(2, 3\)"),
        (losses.mse, (np.zeros((2, 3)), np.zeros((2, 3, 1))), r"\(2, 3\)"),
        (losses.adversarial_loss, (np.zeros((4, 3)), np.zeros(4, bool)), r"\(B, 2\)"),
        (losses.adversarial_loss, (np.zeros((4, 2)), np.zeros(2, bool)), r"\(4,\)"),
        (losses.generator_adversarial_loss, (np.zeros((4,)),), r"\(B, 2\)"),
        (losses.dual_task_consistency, (np.zeros((2, 4, 1)), np.zeros((2, 4))), r"\(2, 4, 1\)"),
        (losses.smoothness, (np.zeros((1, 4, 5, 3)),), r"\(B, \*S, N\)"),
        (losses.smoothness, (np.zeros((4, 2)),), r"\(B, \*S, N\)"),
        (losses.smoothness, (np.zeros((1, 4, 1, 2)),), "S_a >= 2"),
        (losses.dice_loss, (np.zeros((2, 3), int), np.zeros((2, 3))), "floating"),
    ],
)  # fmt: skip
def test_shape_errors_name_the_expected_shape(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)
    with pytest.raises(ValueError, match=match):
        jax.jit(fn)(*args)


def test_smoothness_rejects_unknown_penalty():
    with pytest.raises(ValueError, match="penalty"):
        losses.smoothness(np.zeros((1, 3, 3, 2), np.float32), penalty="l3")


@pytest.mark.parametrize("mask", [[True, False, True, False], [False, True, False, False]])
def test_per_item_weights_give_the_loss_of_the_selected_items(mask, rng):
    """With 0/1 ``weights`` each loss equals the plain loss of the items of weight 1 alone (an
    independent computation on the sliced batch), as the methods' supervised terms need."""
    mask = np.asarray(mask)
    logits = rng.normal(size=(4, 5, 6)).astype(np.float32)
    target = (rng.random((4, 5, 6)) > 0.5).astype(np.float32)
    other = rng.normal(size=(4, 5, 6)).astype(np.float32)
    classes = rng.normal(size=(4, 2)).astype(np.float32)
    labels = rng.integers(0, 2, size=4)
    probs = expit(logits)
    pairs = [
        (losses.dice_loss, (probs, target)),
        (losses.binary_cross_entropy_with_logits, (logits, target)),
        (losses.mse, (logits, other)),
        (losses.mae, (logits, other)),
        (losses.cross_entropy, (classes, labels)),
    ]
    for fn, (a, b) in pairs:
        got = fn(a, b, weights=mask)
        expected = fn(a[mask], b[mask])
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=fn.__name__)
        np.testing.assert_allclose(jax.jit(fn)(a, b, weights=mask), expected, rtol=1e-6)
    np.testing.assert_allclose(
        losses.generator_adversarial_loss(classes, weights=mask),
        losses.generator_adversarial_loss(classes[mask]),
        rtol=1e-6,
    )


def test_all_zero_weights_give_zero_and_a_finite_gradient(rng):
    logits = rng.normal(size=(2, 3)).astype(np.float32)
    zero = np.zeros(2, bool)
    for fn in (losses.binary_cross_entropy_with_logits, losses.mse, losses.mae):
        value, grad = jax.value_and_grad(lambda x, fn=fn: fn(x, jnp.ones_like(x), weights=zero))(
            logits
        )
        assert float(value) == 0.0 and np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        losses.mse(logits, logits, weights=np.ones(3))
