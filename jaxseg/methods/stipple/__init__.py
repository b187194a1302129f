"""STIPPLE (Petit, Thome, Soler, IJCARS 2022): 3D spatial priors for semi-supervised organ
segmentation.

Model. A U-Net (Table 5; 2D on axial slices by default, 3D as an option) gives background and
organ logits; the spatial prior ``p`` of the organ (:mod:`jaxseg.priors`, Algorithm 1, built
from the labelled cases when training starts and kept in the state) enters only the final
activation, ``softmax(logits + log(1 - p, p))`` (eq. 2). Inside the network nothing changes, so
the same network runs with a uniform prior (``p = 0.5``: the plain softmax), which is how the
ablations without prior are trained and how the first pass of the positioning predicts.

Training (:mod:`~.model`). Loss: cross-entropy plus soft Dice of the prior-driven softmax over
the voxels that have a target (``loss.dice`` weighs the Dice; the compound loss is this
library's choice, the paper's text names the activation, not the loss). The prior is placed on
each labelled training case at its organ's centre (:mod:`~.cases`) and travels with the image
as a channel, so that it undergoes the same augmentation (:func:`transforms`): first the prior
alone is translated by up to ``prior.jitter`` voxels per axis (imperfect positioning, Appendix
B), then a slice (or patch) is cropped (centred on an organ voxel with probability
``augmentation.foreground_prob``, as nnU-Net's oversampling: most slices hold no organ),
then image, prior and label are translated by up to ``augmentation.translation`` voxels
in-plane, rotated by up to ``augmentation.rotation_deg``
about the axial axis and zoomed in-plane by ``1 +- augmentation.zoom`` (the paper's +-15 px,
+-6 deg and 0.9-1.1 on 512 x 512 slices). Optimizer ``optim.seg``: Adam 1e-4, inverse-time
decay to 1e-5 at the last iteration.

Positioning (section 3.2, :func:`~.cases.locate`). On a volume with no label the network's
probabilities without prior give a coarse centre (their centroid); the translation within
``prior.search`` voxels that minimises the KL divergence between those probabilities and the
prior's own window (the reference) gives the centre (``prior.positioning = "kl"``; "naive"
keeps the centroid, Table 4; "label" uses the test label's centre, an oracle for analysis).
Then ``prior.refine`` fixed-point steps (this library's addition): the prior is placed at the
centre, the prior-driven probabilities are predicted, and the centre moves to their centroid
less the offset of the prior's own centroid from its window's centre (the prior is centred on
bounding boxes, a centroid is not), until it stops moving. Why: a network trained only through
the prior-driven activation leaves the suppression of distant false positives to the prior; on
the phantoms its probabilities without prior exceeded 0.5 on about 48,000 voxels of a volume
whose organ has about 550, so their centroid sat near the volume's centre whatever the organ's
position (errors up to 9 slices), and the KL search within a few voxels could not recover.
Starting there, five steps brought the centre within 2 voxels, and the test Dice of a seed-0
run from 0.68 to 0.84 (0.89 at the label's centre; 0.74 without prior). Training the network
with a quarter of its items under a uniform prior instead (to make its prediction without prior
usable) did not help: 0.59.

Pseudo-labelling (Algorithm 2, :mod:`~.relabel`): ``relabel.iterations`` rounds in one run, each
adding the most confident voxels of every unlabelled case (a fraction ``relabel.gamma[t]``) as
targets. Until the first round the unlabelled items of a batch have no target, and items without
a target stay out of the batch-norm statistics (``batch_mask`` of
:func:`jaxseg.nn.layers.normalize`): the first round's network learns from the labelled items
alone, as Algorithm 2's first training does. With them in the statistics, two of three
relabelling runs without prior collapsed at 10 % labelled (experiments/stipple/README.md).

Outside the window the prior is ``prior.floor`` (1e-3): the organ logit is lowered by at most
``log(1e-3 / (1 - 1e-3)) = -6.9``, so a confident network can still find organ there (see
:func:`jaxseg.priors.place_prior`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import ml_collections

from jaxseg.configs import stipple as configs
from jaxseg.data.transforms import RandomAffine, RandomChannelShift, RandomCrop
from jaxseg.methods.stipple.cases import (
    PseudoLabels,
    host_prior,
    prepare_test_case,
    training_data,
)
from jaxseg.methods.stipple.model import (
    PRIOR,
    StippleState,
    create_state,
    make_train_step,
    predict,
)
from jaxseg.methods.stipple.relabel import prepare, round_steps
from jaxseg.train.method import Method

__all__ = [
    "METHOD",
    "StippleState",
    "create_state",
    "default_config",
    "make_train_step",
    "predict",
    "prepare",
    "prepare_test_case",
    "training_data",
    "transforms",
]


def default_config(setting: str = "paper") -> ml_collections.ConfigDict:
    """The shipped config (:mod:`jaxseg.configs.stipple`) in ``setting``."""
    return configs.get_config(setting)


def transforms(config: Any, state: Any, workdir: str | Path) -> tuple:
    """The training transforms: :class:`~.cases.PseudoLabels` for the unlabelled stream, then
    (with ``data.augment``) the augmentation of the module docstring, else the crop alone."""
    pseudo = PseudoLabels(
        config,
        host_prior(state),
        workdir,
        steps=round_steps(config),
        rounds=int(config.relabel.iterations),
    )
    patch = tuple(config.data.patch)
    if not config.data.augment:
        return pseudo, RandomCrop(patch)
    a = config.augmentation
    shift = float(a.translation)
    return (
        pseudo,
        RandomChannelShift((PRIOR,), tuple(config.prior.jitter), fill=float(config.prior.floor)),
        RandomCrop(patch, foreground_prob=float(a.foreground_prob)),
        RandomAffine(
            translation=(shift, shift, 0.0),
            rotation=(0.0, 0.0, math.radians(float(a.rotation_deg))),
            scaling=(float(a.zoom), float(a.zoom), 0.0),
        ),
    )


METHOD = Method(
    name="stipple",
    settings=configs.SETTINGS,
    default_config=configs.get_config,
    create_state=create_state,
    make_train_step=make_train_step,
    predict=predict,
    transforms=transforms,
    prepare=prepare,
    training_data=training_data,
    prepare_test_case=prepare_test_case,
)
