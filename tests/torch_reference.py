"""PyTorch reference networks for parity tests of the jaxseg modules.

The five reference architectures (V-Net with SDM head, the 3D fully convolutional
discriminator, the Atlas-ISTN UNet and FullSTN in 2D and 3D) are re-implemented here
compactly, with parameter names, order and shapes identical to the reference state
dicts listed in ``tests/data/torch-names.txt``. This is a test helper, not a test file.

API
---
``parse_torch_names(path=None)``
    ``{key: {"count": int, "shapes": {name: shape}, "header": str}}`` for the keys
    ``vnet, discriminator3d, unet2d, unet3d, stn2d, stn3d``, in file order.
``build(name)``
    The reference module configured as in the file's header line, in ``eval()`` mode.
``forward_outputs(name, module, *inputs)``
    Runs the module without gradients on channels-first inputs (numpy or torch) and
    returns its raw outputs as channels-last numpy arrays ``(batch, *spatial, channels)``:

    - vnet: ``image`` -> ``seg`` (logits of ``out_conv2``), ``sdm`` (``tanh(out_conv)``)
    - discriminator3d: ``(sdm, image)`` -> ``logits`` ``(B, 2)``
    - unet2d / unet3d: ``image`` -> ``logits``
    - stn2d / stn3d: ``x`` -> ``velocity`` (raw ``conv25`` output at half resolution),
      ``translation`` (tanh), ``rotation`` (tanh * pi/4), ``log_scale`` (tanh)
``randomize_(module, seed=0)``
    In place: every parameter and every BatchNorm buffer gets seeded random values
    (conv/linear weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), BN weight in
    [0.5, 1.5], BN running_var in [0.5, 1.5], running_mean ~ N(0, 0.1^2),
    num_batches_tracked a positive integer), so eval-mode BatchNorm is non-trivial.
    Non-BN buffers (the STN identity ``grid``) are left alone. Returns the module.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from reference_names import NETWORKS, parse_torch_names  # noqa: F401 (re-exported)
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

# ----------------------------------------------------------------------------- helpers


def _conv(nd: int, cin: int, cout: int, k: int = 3, stride: int = 1, pad: int | None = None):
    """A Conv2d/Conv3d with 'same' padding for odd kernels unless ``pad`` is given."""
    cls = nn.Conv2d if nd == 2 else nn.Conv3d
    return cls(cin, cout, k, stride, k // 2 if pad is None else pad)


def _up(x: torch.Tensor) -> torch.Tensor:
    """Scale-2 (bi/tri)linear upsampling, align_corners=False."""
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, scale_factor=2, mode=mode, align_corners=False)


class _Block(nn.Module):
    """A V-Net stage: an ``nn.Sequential`` held in the attribute ``conv``."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.conv(x)


def _bn_relu(first: nn.Module, cout: int) -> list[nn.Module]:
    return [first, nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _conv_block(n: int, cin: int, cout: int) -> _Block:
    layers = []
    for i in range(n):
        layers += _bn_relu(_conv(3, cin if i == 0 else cout, cout), cout)
    return _Block(*layers)


def _down_block(cin: int, cout: int) -> _Block:
    return _Block(*_bn_relu(nn.Conv3d(cin, cout, 2, 2, 0), cout))


def _up_block(cin: int, cout: int) -> _Block:
    return _Block(*_bn_relu(nn.ConvTranspose3d(cin, cout, 2, 2, 0), cout))


# ---------------------------------------------------------------------------- networks

_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class VNet(nn.Module):
    """SASSNet/DTML V-Net with a segmentation head (out_conv2) and a tanh SDM head (out_conv)."""

    def __init__(self, n_channels=1, n_classes=1, n_filters=16, has_dropout=True):
        super().__init__()
        f = n_filters
        stages = (1, 2, 3, 3, 3, 3, 3, 2, 1)
        widths = (f, 2 * f, 4 * f, 8 * f, 16 * f, 8 * f, 4 * f, 2 * f, f)
        cin = n_channels
        for i, (word, n, w) in enumerate(zip(_WORDS, stages, widths)):
            self.add_module(f"block_{word}", _conv_block(n, cin, w))
            if i < 4:
                cin = 2 * w
                self.add_module(f"block_{word}_dw", _down_block(w, cin))
            elif i < 8:
                cin = w // 2
                self.add_module(f"block_{word}_up", _up_block(w, cin))
        self.out_conv = nn.Conv3d(f, n_classes, 1)
        self.out_conv2 = nn.Conv3d(f, n_classes, 1)
        self.dropout = nn.Dropout3d(0.5) if has_dropout else nn.Identity()

    def forward(self, x):
        skips = []
        for i, word in enumerate(_WORDS):
            x = getattr(self, f"block_{word}")(x)
            if i < 4:
                skips.append(x)
                x = getattr(self, f"block_{word}_dw")(x)
            elif i < 8:
                if i == 4:
                    x = self.dropout(x)
                x = getattr(self, f"block_{word}_up")(x) + skips.pop()
        x = self.dropout(x)
        return {"seg": self.out_conv2(x), "sdm": torch.tanh(self.out_conv(x))}


class FC3DDiscriminator(nn.Module):
    """SASSNet discriminator on (SDM map, image); the final average pool is a global mean."""

    def __init__(self, num_classes=1, ndf=64, n_channel=1, dropout=0.5):
        super().__init__()
        self.conv0 = nn.Conv3d(num_classes, ndf, 4, 2, 1)
        self.conv1 = nn.Conv3d(n_channel, ndf, 4, 2, 1)
        self.conv2 = nn.Conv3d(ndf, 2 * ndf, 4, 2, 1)
        self.conv3 = nn.Conv3d(2 * ndf, 4 * ndf, 4, 2, 1)
        self.conv4 = nn.Conv3d(4 * ndf, 8 * ndf, 4, 2, 1)
        self.classifier = nn.Linear(8 * ndf, 2)
        # The reference always has Dropout3d(0.5); ``dropout=0`` (parity tests) removes it.
        self.dropout = nn.Dropout3d(dropout) if dropout else nn.Identity()

    def forward(self, sdm, image):
        act = lambda t: F.leaky_relu(t, 0.2)
        x = self.dropout(act(self.conv0(sdm) + self.conv1(image)))
        x = self.dropout(act(self.conv2(x)))
        x = self.dropout(act(self.conv3(x)))
        x = act(self.conv4(x))
        return {"logits": self.classifier(x.mean(dim=(2, 3, 4)))}


def _add_convs(module: nn.Module, nd: int, specs) -> None:
    """Register ``name: (cin, cout[, k[, stride]])`` convolutions in order."""
    for name, args in specs:
        module.add_module(name, _conv(nd, *args))


class AtlasUNet(nn.Module):
    """Atlas-ISTN ITN (UNet2D / UNet3D)."""

    def __init__(self, nd: int, num_classes: int, in_channels: int = 1):
        super().__init__()
        _add_convs(
            self,
            nd,
            [
                ("conv11", (in_channels, 8)),
                ("conv12", (8, 8)),
                ("down1", (8, 16, 3, 2)),
                ("conv21", (16, 16)),
                ("down2", (16, 32, 3, 2)),
                ("conv31", (32, 32)),
                ("down3", (32, 64, 3, 2)),
                ("conv41", (64, 64)),
                ("conv32", (96, 32)),
                ("conv22", (48, 16)),
                ("conv13", (24, 8)),
                ("conv14", (8, num_classes, 1)),
            ],
        )

    def forward(self, x):
        x1 = F.relu(self.conv12(F.relu(self.conv11(x))))
        x2 = F.relu(self.conv21(self.down1(x1)))
        x3 = F.relu(self.conv31(self.down2(x2)))
        x4 = F.relu(self.conv41(self.down3(x3)))
        x = F.relu(self.conv32(torch.cat([_up(x4), x3], 1)))
        x = F.relu(self.conv22(torch.cat([_up(x), x2], 1)))
        x = F.relu(self.conv13(torch.cat([_up(x), x1], 1)))
        return {"logits": self.conv14(x)}


def identity_grid(size) -> torch.Tensor:
    """``(N, *size)`` normalized identity grid; channel d is 2*i/(size[d]-1)-1 along axis d."""
    axes = [torch.arange(s, dtype=torch.float64) * 2 / (s - 1) - 1 for s in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).float()


class FullSTN(nn.Module):
    """Atlas-ISTN FullSTN (2D / 3D): half-resolution velocity plus an affine branch."""

    def __init__(self, input_size, input_channels: int):
        super().__init__()
        nd = len(input_size)
        self.register_buffer("grid", identity_grid(input_size))
        c = input_channels
        _add_convs(
            self,
            nd,
            [
                ("down1", (c, c, 3, 2)),
                ("conv21", (c, 16)),
                ("conv22", (16, 16)),
                ("down2", (16, 16, 3, 2)),
                ("conv31", (16, 16)),
                ("down3", (16, 32, 3, 2)),
                ("conv41", (32, 32)),
                ("conv32", (48, 16)),
                ("conv23", (32, 16)),
                ("conv24", (16, 8)),
                ("conv25", (8, nd)),
            ],
        )
        self.fc = nn.Linear(32 * math.prod(s // 16 for s in input_size), 32)
        self.translation = nn.Linear(32, nd)
        self.rotation = nn.Linear(32, 1 if nd == 2 else 3)
        self.scaling = nn.Linear(32, nd)
        for head in (self.translation, self.rotation, self.scaling):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x):
        x2 = F.relu(self.conv22(F.relu(self.conv21(self.down1(x)))))
        x3 = F.relu(self.conv31(self.down2(x2)))
        x4 = F.relu(self.conv41(self.down3(x3)))
        x = F.relu(self.conv32(torch.cat([_up(x4), x3], 1)))
        x = F.relu(self.conv23(torch.cat([_up(x), x2], 1)))
        velocity = self.conv25(F.relu(self.conv24(x)))
        pool = F.avg_pool2d if x4.ndim == 4 else F.avg_pool3d
        h = F.relu(self.fc(pool(x4, 2).flatten(1)))
        return {
            "velocity": velocity,
            "translation": torch.tanh(self.translation(h)),
            "rotation": torch.tanh(self.rotation(h)) * (math.pi / 4),
            "log_scale": torch.tanh(self.scaling(h)),
        }


_BUILDERS = {
    "vnet": lambda: VNet(n_channels=1, n_classes=1, n_filters=16, has_dropout=True),
    "discriminator3d": lambda: FC3DDiscriminator(num_classes=1, ndf=64, n_channel=1),
    "unet2d": lambda: AtlasUNet(2, num_classes=2),
    "unet3d": lambda: AtlasUNet(3, num_classes=6),
    "stn2d": lambda: FullSTN((64, 64), input_channels=2),
    "stn3d": lambda: FullSTN((64, 64, 64), input_channels=10),
}


def build(name: str) -> nn.Module:
    """The reference network ``name`` (one of ``NETWORKS``), configured as in the names file."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown reference network {name!r}; expected one of {NETWORKS}")
    return _BUILDERS[name]().eval()


def _channels_last(t: torch.Tensor) -> np.ndarray:
    if t.ndim > 2:
        t = t.movedim(1, -1)
    return t.detach().cpu().numpy()


def forward_outputs(name: str, module: nn.Module, *inputs) -> dict[str, np.ndarray]:
    """Channels-last numpy outputs of ``module`` (network ``name``) on channels-first inputs."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown reference network {name!r}; expected one of {NETWORKS}")
    args = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in inputs]
    with torch.no_grad():
        out = module(*args)
    return {k: _channels_last(v) for k, v in out.items()}


def _fan_in(m: nn.Module) -> float:
    w = m.weight
    if isinstance(m, _ConvTransposeNd):
        # each output position sees in_channels * prod(kernel) / prod(stride) inputs
        return w.shape[0] * math.prod(w.shape[2:]) / math.prod(m.stride)
    return w.shape[1] * math.prod(w.shape[2:])


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded random parameters and BatchNorm buffers, in place (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    def uniform(t, lo, hi):
        t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, _BatchNorm):
                uniform(m.weight, 0.5, 1.5)
                normal(m.bias, 0.1)
                normal(m.running_mean, 0.1)
                uniform(m.running_var, 0.5, 1.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (), generator=g)))
            elif isinstance(m, _ConvNd | nn.Linear):
                normal(m.weight, _fan_in(m) ** -0.5)
                if m.bias is not None:
                    normal(m.bias, 0.1)
            elif next(m.parameters(recurse=False), None) is not None:
                raise TypeError(f"randomize_ does not handle {type(m).__name__}")
    return module
