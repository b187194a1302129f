"""Atlas-ISTN (Sinclair et al., Medical Image Analysis 2022): joint segmentation and registration
to an atlas built during training, with test-time refinement of the registration.

Model (eq. 4-9)
---------------
The image transformer network (ITN, :meth:`jaxseg.nn.UNet.itn`) maps an image ``(B, *S, 1)`` to
``K`` channels regressed onto the one-hot labels. The spatial transformer network (STN,
:class:`jaxseg.nn.AtlasSTN`) takes the foreground channels of the ITN output and of the atlas
labelmap (``2 (K - 1)`` channels; the VML variant takes the image and the atlas image instead)
and predicts

* a stationary velocity field at half resolution. Its raw output is read as a velocity in
  *full-resolution* voxels (what the reference's rescaling to ``grid_sample`` units amounts to),
  halved to the half-resolution grid, integrated there by scaling and squaring
  (``stn.integration_steps``, 6 as the reference) and upsampled with
  :func:`jaxseg.geometry.resize_field`: the non-rigid displacement ``u`` and its inverse
  ``u_inv`` (from ``-v``);
* an affine ``A = S R T`` from translation, rotation and scaling. As in the reference these act
  on coordinates normalised to ``[-1, 1]`` along each axis (``align_corners=True``: voxel ``x``
  at ``(x - c) / h`` with ``c = h = (n - 1) / 2``); :func:`affine_voxel_matrix` conjugates the
  matrix of :func:`jaxseg.geometry.affine_matrix` into voxel units. (3D rotations use jaxseg's
  Euler convention ``R_0 R_1 R_2``; the reference uses Z-X-Z. Both cover the same rotations.)

The forward transform maps atlas to subject, ``Phi(x) = phi(A x)``, the inverse maps subject to
atlas, ``Phi^-1(x) = A^-1 phi^-1(x)``; both are pull-back displacement fields
(``fwd = compose(u, a)``, ``inv = compose(a_inv, u_inv)``), so ``warp(atlas, fwd)`` is the atlas
in subject space and ``warp(subject, inv)`` the subject in atlas space, as the letter-B script.

Losses (eq. 10-14)
------------------
``L = L_s + omega (L_a2s + L_s2a + lambda L_reg)`` with, as in the released code, mean squared
errors over all voxels and channels: ``L_s`` of the ITN output to the one-hot labels;
``L_a2s`` of the warped atlas labelmap to the labels and ``L_s2a`` of the warped labels to the
atlas labelmap, both over the foreground channels; ``L_reg`` the diffusion regulariser
(:func:`jaxseg.losses.smoothness`) of the upsampled non-rigid displacement ``u`` only, in the
reference's normalised units (component ``i`` times ``2 / (S_i - 1)``) so that the papers'
``lambda`` (500 for letter B, 800 for CT) keep their meaning. ``omega`` is 1 or the fade-in of
eq. 24, ``1 / (1 + exp(-(epoch - loss.fade_epoch) / loss.fade_width))`` with 1-based epochs
(``loss.fade_epoch = -1``: constant 1). During training the registration terms use the
*reference* labels (the reference code's ``loss_seg2atl``/``loss_atl2seg``); the STN input is
the ITN output, not detached, so these terms also train the ITN.

Atlas (eq. 15-16)
-----------------
The atlas (image ``(*S, 1)`` and labelmap ``(*S, K)``, soft) lives in the training state
(:class:`AtlasState`), so it is checkpointed with the networks. It starts as the mean of the
training images and one-hot labels; after every epoch (a :class:`jaxseg.train.Hook` every
``steps_per_epoch`` steps) it becomes ``(1 - eta) atlas + eta mean_i warp(x_i, inv_i)`` (and the
same for the labels) with ``eta = atlas.rate``, the training cases warped to atlas space by the
current networks. ``atlas.fixed = True`` keeps the initial atlas (an ablation of the paper). The
atlas is also written as NIfTI to ``<workdir>/atlas/`` and drawn in ``<workdir>/figures/atlas.png``
after every update.

Test time (eq. 17-21)
---------------------
Three outputs per case: the ITN prediction (``argmax`` of its output), the 1-pass atlas warp
(the atlas labelmap warped by the trained STN's transform) and the refined warp: ``refine.steps``
Adam iterations (learning rate ``refine.lr``) on the STN parameters only, for that one case, of
``beta L*_a2s + gamma L*_s2a + lambda* L_reg`` against the (fixed) ITN output (the reference
code: ``beta = 1``, ``gamma = 0``, 50 iterations, the training learning rate). The loop is one
compiled ``lax.scan``, mapped (``lax.map``) over the cases of a chunk. ``jaxseg predict`` writes
one of the three for images of any size (:func:`~.protocol.predict_source`, chosen by
``eval.predict_output``). ``refine.from_scratch``
starts from freshly initialised STN weights instead of the trained ones (the paper's "ITN +
refinement from scratch" ablation, with ``loss.omega`` 0 in training).

Variants (``model.variant``): ``"istn"`` (the default), ``"vml"`` (STN only, on the image and
the atlas image; no ITN loss; its 1-pass warp is the prediction). ``stn.transform``:
``"full"`` (affine + SVF), ``"svf"`` or ``"affine"``. ``loss.affine_from_epoch``: the affine is
the identity before that epoch.

Data and units
--------------
The engine loads the cases with :func:`jaxseg.data.sources.load_split` and passes each through
:func:`prepare_case` (resampled to the fixed grid ``data.size``, z-scored; labels checked against
``data.num_classes``); every training case is labelled. Epoch counts (``train.epochs``,
``train.decay_epochs``, ``loss.fade_epoch``, ``loss.fade_width``, ``loss.affine_from_epoch``)
are the paper's unit and stay in epochs; ``train.steps`` follows ``train.epochs`` (see
:mod:`jaxseg.methods.atlas_istn.config`). The learning rate is ``train.lr`` halved every
``train.decay_epochs`` epochs, logged by the step as ``lr``.

Modules: :mod:`~.config` (config, epochs, schedules), :mod:`~.model` (networks, transforms,
forward pass, registration loss, state), :mod:`~.step` (training step), :mod:`~.cases`
(preprocessing), :mod:`~.atlas` (atlas construction, the epoch-end hook), :mod:`~.refine`
(test-time refinement), :mod:`~.protocol` (evaluation); :data:`METHOD` is the record the engine
calls.
"""

from jaxseg.methods.atlas_istn.atlas import initial_atlas, prepare, update_atlas, write_atlas
from jaxseg.methods.atlas_istn.cases import prepare_case
from jaxseg.methods.atlas_istn.config import (
    SETTINGS,
    default_config,
    learning_rate,
    omega,
    steps_per_epoch,
)
from jaxseg.methods.atlas_istn.model import (
    AtlasState,
    affine_voxel_matrix,
    create_state,
    forward,
    predict,
    registration_loss,
    transforms,
)
from jaxseg.methods.atlas_istn.protocol import PREDICT_OUTPUTS, evaluate, predict_source
from jaxseg.methods.atlas_istn.refine import make_refine, subject_to_subject
from jaxseg.methods.atlas_istn.step import make_train_step
from jaxseg.train.method import Method

__all__ = [
    "METHOD",
    "PREDICT_OUTPUTS",
    "SETTINGS",
    "AtlasState",
    "affine_voxel_matrix",
    "create_state",
    "default_config",
    "evaluate",
    "forward",
    "initial_atlas",
    "learning_rate",
    "make_refine",
    "make_train_step",
    "omega",
    "predict",
    "predict_source",
    "prepare",
    "prepare_case",
    "registration_loss",
    "steps_per_epoch",
    "subject_to_subject",
    "transforms",
    "update_atlas",
    "write_atlas",
]

#: Atlas-ISTN as the engine sees it.
METHOD = Method(
    name="atlas_istn",
    settings=SETTINGS,
    default_config=default_config,
    create_state=create_state,
    make_train_step=make_train_step,
    predict=predict,
    prepare_case=prepare_case,
    prepare=prepare,
    evaluate=evaluate,
    predict_source=predict_source,
)
