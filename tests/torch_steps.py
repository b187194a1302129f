"""PyTorch reference training steps of SASSNet and DTML, for the parity tests (a test helper).

Each class holds the networks and ``torch.optim`` optimizers of one released training script
and runs its iterations one at a time, with the script's losses, modes and order:

* :class:`SASSNetSteps`, after ``code/train_gan_sdfloss.py`` of kleinzcy/SASSnet: the segmenter
  in training mode and the discriminator in evaluation mode, ``Dice + beta * MSE(sdm, SDM(y))``
  on the ``labelled_bs`` first (labelled) items plus ``w(t) * CE(D(sdm_u, x_u), 1)`` on the
  others, SGD (momentum 0.9, weight decay 1e-4); then the segmenter in evaluation mode recomputes
  its SDMs without gradient and the discriminator, in training mode, minimises
  ``CE(D(sdm, x), [1] * labelled_bs + [0] * rest)`` with Adam (1e-4, betas 0.9/0.99). The
  BCE of the segmentation is logged, not optimised.
* :class:`DTMLSteps`, after ``code/train_la_dtml.py`` of YichiZhang98/DTML: both V-Nets in
  training mode on the whole batch; ``L_seg = 0.5 (BCE + Dice)`` and ``L_sdm = Dice(sigmoid(-k
  sdm))`` on the labelled items, ``c = mean((sigmoid(-k sdm) - sigmoid(seg))**2)`` on all; the
  two losses ``L_seg + w c`` and ``L_sdm + w c`` are back-propagated one after the other into
  both networks (``retain_graph=True``, nothing detached), then each network's SGD steps. (The
  script also computes an L1 loss of the SDM that enters no loss; it is left out here.)

In both, ``w(t) = weight * sigmoid_rampup(t // rampup_divisor, rampup)`` with ``t`` the number of
completed iterations, and the V-Net learning rates become ``lr * 0.1 ** (t // lr_step)`` after
every ``lr_step``-th iteration (the scripts' 2500); ``lr_of(t)``, when given, replaces this
schedule by the learning rate of iteration ``t + 1`` (to feed both sides the same numbers). The
SDM targets are the scripts' ``compute_sdf`` (scipy ``distance_transform_edt`` and skimage
``find_boundaries``), cast to the networks' dtype (the scripts cast them to float32, the dtype of
their networks).

Inputs are channels-first torch tensors: ``image`` ``(B, 1, *S)`` in the networks' dtype and
``label`` ``(B, *S)`` integer, the ``labelled_bs`` labelled items first, both on the networks'
device (the CPU or a GPU: the benchmarks time these steps as the PyTorch peers). The networks
are those of :mod:`torch_reference` (``VNet``, ``FC3DDiscriminator``), whose forward returns
dicts.
``optimizers`` maps jaxseg's network names (``"seg"``, ``"disc"`` / ``"sdm"``) to the optimizers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from skimage.segmentation import find_boundaries


def dice_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The scripts' ``losses.dice_loss``: ``1 - (2 sum(s t) + 1e-5) / (sum(s s) + sum(t t) +
    1e-5)`` over every element."""
    target = target.to(score.dtype)
    smooth = 1e-5
    intersect = torch.sum(score * target)
    return 1 - (2 * intersect + smooth) / (torch.sum(score * score) + torch.sum(target**2) + smooth)


def compute_sdf(labels: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """The scripts' ``compute_sdf``: float64 ``out_shape`` whose item ``b`` is the normalised SDM
    of ``labels[b]`` (negative inside, 0 on the inner boundary); zeros for an empty label."""
    sdf = np.zeros(out_shape)
    for b in range(out_shape[0]):
        pos = labels[b].astype(bool)
        if not pos.any():
            continue
        posdis = distance_transform_edt(pos)
        negdis = distance_transform_edt(~pos)
        item = (negdis - negdis.min()) / (negdis.max() - negdis.min()) - (posdis - posdis.min()) / (
            posdis.max() - posdis.min()
        )
        item[find_boundaries(pos, mode="inner")] = 0
        sdf[b] = item
    return sdf


def sigmoid_rampup(current: float, length: float) -> float:
    """UA-MT's ``ramps.sigmoid_rampup`` (Python/numpy float64)."""
    if length == 0:
        return 1.0
    phase = 1.0 - np.clip(current, 0.0, length) / length
    return float(np.exp(-5.0 * phase * phase))


class _Steps:
    def __init__(self, *, labelled_bs, weight, rampup, rampup_divisor, lr, lr_step, lr_of):
        self.labelled_bs = labelled_bs
        self.weight, self.rampup, self.rampup_divisor = weight, rampup, rampup_divisor
        self.lr, self.lr_step, self.lr_of = lr, lr_step, lr_of
        self.iter_num = 0

    def ramp_weight(self) -> float:
        return self.weight * sigmoid_rampup(self.iter_num // self.rampup_divisor, self.rampup)

    def _finish(self, optimizers) -> None:
        self.iter_num += 1
        if self.iter_num % self.lr_step == 0:
            lr = self.lr * 0.1 ** (self.iter_num // self.lr_step)
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr
        if self.lr_of is not None:
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.lr_of(self.iter_num)


class SASSNetSteps(_Steps):
    """SASSNet's iteration (see the module docstring) on ``seg`` (V-Net) and ``disc``."""

    def __init__(
        self,
        seg,
        disc,
        *,
        labelled_bs=2,
        beta=0.3,
        adv_weight=0.01,
        rampup=40.0,
        rampup_divisor=150,
        lr=0.01,
        disc_lr=1e-4,
        lr_step=2500,
        lr_of=None,
    ):
        super().__init__(
            labelled_bs=labelled_bs,
            weight=adv_weight,
            rampup=rampup,
            rampup_divisor=rampup_divisor,
            lr=lr,
            lr_step=lr_step,
            lr_of=lr_of,
        )
        self.seg, self.disc, self.beta = seg, disc, beta
        lr0 = lr if lr_of is None else lr_of(0)
        self.optimizer = torch.optim.SGD(seg.parameters(), lr=lr0, momentum=0.9, weight_decay=1e-4)
        self.disc_optimizer = torch.optim.Adam(disc.parameters(), lr=disc_lr, betas=(0.9, 0.99))
        self.optimizers = {"seg": self.optimizer, "disc": self.disc_optimizer}

    def step(self, image: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        lb, batch = self.labelled_bs, image.shape[0]
        d_target = torch.tensor([1] * lb + [0] * (batch - lb), device=image.device)

        # The segmenter, the discriminator held in evaluation mode.
        self.seg.train()
        self.disc.eval()
        out = self.seg(image)
        logits, sdm = out["seg"], out["sdm"]
        probs = torch.sigmoid(logits)
        with torch.no_grad():
            gt_sdm = torch.from_numpy(compute_sdf(label.cpu().numpy(), logits[:lb, 0].shape))
            gt_sdm = gt_sdm.to(image.device, image.dtype)
        loss_sdm = F.mse_loss(sdm[:lb, 0], gt_sdm)
        loss_bce = F.binary_cross_entropy_with_logits(logits[:lb, 0], label[:lb].to(image.dtype))
        loss_dice = dice_loss(probs[:lb, 0], label[:lb] == 1)
        weight = self.ramp_weight()
        d_logits = self.disc(sdm[lb:], image[lb:])["logits"]
        # Every unlabelled item should be taken for a labelled one (class 1).
        ones = torch.ones(batch - lb, dtype=torch.long, device=image.device)
        loss_adv = F.cross_entropy(d_logits, ones)
        loss = loss_dice + self.beta * loss_sdm + weight * loss_adv
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        # The discriminator on the whole batch, the updated segmenter in evaluation mode.
        self.seg.eval()
        self.disc.train()
        with torch.no_grad():
            sdm = self.seg(image)["sdm"]
        d_logits = self.disc(sdm, image)["logits"]
        loss_disc = F.cross_entropy(d_logits, d_target)
        self.disc_optimizer.zero_grad()
        loss_disc.backward()
        self.disc_optimizer.step()

        self._finish([self.optimizer])  # the discriminator's learning rate stays constant
        return {
            "loss": loss.item(),
            "loss_dice": loss_dice.item(),
            "loss_sdm": loss_sdm.item(),
            "loss_bce": loss_bce.item(),
            "loss_adv": loss_adv.item(),
            "adv_weight": weight,
            "loss_disc": loss_disc.item(),
        }


class DTMLSteps(_Steps):
    """DTML's iteration (see the module docstring) on ``seg`` (M_s) and ``sdm`` (M_d)."""

    def __init__(
        self,
        seg,
        sdm,
        *,
        labelled_bs=2,
        k=1500.0,
        consistency=1.0,
        rampup=40.0,
        rampup_divisor=150,
        lr=0.01,
        lr_step=2500,
        lr_of=None,
    ):
        super().__init__(
            labelled_bs=labelled_bs,
            weight=consistency,
            rampup=rampup,
            rampup_divisor=rampup_divisor,
            lr=lr,
            lr_step=lr_step,
            lr_of=lr_of,
        )
        self.seg, self.sdm, self.k = seg, sdm, k
        lr0 = lr if lr_of is None else lr_of(0)
        self.seg_optimizer = torch.optim.SGD(
            seg.parameters(), lr=lr0, momentum=0.9, weight_decay=1e-4
        )
        self.sdm_optimizer = torch.optim.SGD(
            sdm.parameters(), lr=lr0, momentum=0.9, weight_decay=1e-4
        )
        self.optimizers = {"seg": self.seg_optimizer, "sdm": self.sdm_optimizer}

    def step(self, image: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
        lb = self.labelled_bs
        self.seg.train()
        self.sdm.train()
        sdm = self.sdm(image)["sdm"]
        logits = self.seg(image)["seg"]
        probs = torch.sigmoid(logits)
        loss_bce = F.binary_cross_entropy_with_logits(logits[:lb, 0], label[:lb].to(image.dtype))
        loss_dice = dice_loss(probs[:lb, 0], label[:lb] == 1)
        loss_seg = 0.5 * (loss_bce + loss_dice)
        sdm_mask = torch.sigmoid(-self.k * sdm)
        loss_sdm_dice = dice_loss(sdm_mask[:lb, 0], label[:lb] == 1)
        consistency = torch.mean((sdm_mask - probs) ** 2)
        weight = self.ramp_weight()
        sdm_net_loss = loss_sdm_dice + weight * consistency
        seg_net_loss = loss_seg + weight * consistency
        self.seg_optimizer.zero_grad()
        self.sdm_optimizer.zero_grad()
        seg_net_loss.backward(retain_graph=True)
        sdm_net_loss.backward()
        self.seg_optimizer.step()
        self.sdm_optimizer.step()
        self._finish([self.seg_optimizer, self.sdm_optimizer])
        return {
            "loss_seg": seg_net_loss.item(),
            "loss_sdm": sdm_net_loss.item(),
            "loss_dice": loss_dice.item(),
            "loss_bce": loss_bce.item(),
            "loss_sdm_dice": loss_sdm_dice.item(),
            "consistency": consistency.item(),
            "consistency_weight": weight,
        }


def use_biased_running_var(module: torch.nn.Module) -> torch.nn.Module:
    """Make every BatchNorm of ``module`` update its running variance with the *biased* batch
    variance, Flax's convention, instead of PyTorch's unbiased one: in training mode
    ``running_var = (1 - momentum) previous + momentum var_biased(batch)``. Returns ``module``.

    For a step that later evaluates the network in evaluation mode (SASSNet's discriminator
    update), so that both sides see the same running statistics.
    """

    def keep_previous(m, inputs):
        if m.training:
            m.previous_running_var = m.running_var.detach().clone()

    def biased_update(m, inputs, output):
        if m.training:
            x = inputs[0].detach()
            axes = [0, *range(2, x.ndim)]
            var = x.var(dim=axes, unbiased=False)
            # A new buffer: the one PyTorch just updated is held by the autograd graph.
            m.running_var = (1 - m.momentum) * m.previous_running_var + m.momentum * var

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(keep_previous)
            m.register_forward_hook(biased_update)
    return module
