"""The same generator in PyTorch on the CPU, the peer row of bench/inference.py (optional: needs torch).

`torch_upscaler(keras_generator)` rebuilds a generator of `srgan_tf.models.build_generator` (any depth,
width and scale, with or without BatchNorm and the bicubic skip) as a torch module with the same weights,
in inference mode, and wraps it as an `srgan_tf.loader.Upscaler`, so that it is timed and scored by the
same code as every exported artifact.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from srgan_tf.loader import Upscaler
from srgan_tf.models import BicubicUpsample


def _conv(layer: keras.layers.Conv2D, out_order: np.ndarray | None = None) -> nn.Conv2d:
    kernel, bias = layer.get_weights()
    k, _, cin, cout = kernel.shape
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    kernel = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if out_order is not None:
        kernel, bias = kernel[out_order], bias[out_order]
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel))
    conv.bias.data = torch.from_numpy(np.ascontiguousarray(bias))
    return conv


def _shuffle_order(channels_out: int, r: int) -> np.ndarray:
    # TF's depth_to_space reads input channel (i*r + j)*C + c for output channel c at sub-pixel (i, j);
    # torch's pixel_shuffle reads channel c*r*r + i*r + j. Reordering the conv's outputs makes them agree.
    c = channels_out // (r * r)
    k = np.arange(channels_out)
    return (k % (r * r)) * c + k // (r * r)


def _bn(layer: keras.layers.BatchNormalization | None) -> nn.Module:
    if layer is None:
        return nn.Identity()
    gamma, beta, mean, var = layer.get_weights()
    bn = nn.BatchNorm2d(len(gamma), eps=layer.epsilon)
    for name, value in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
        getattr(bn, name).data = torch.from_numpy(value)
    return bn


def _prelu(layer: keras.layers.PReLU) -> nn.PReLU:
    alpha = layer.get_weights()[0].reshape(-1)
    prelu = nn.PReLU(len(alpha))
    prelu.weight.data = torch.from_numpy(alpha.copy())
    return prelu


class TorchSRResNet(nn.Module):
    """float32 NCHW [N, 3, h, w] in [0, 1] -> [N, 3, s*h, s*w] in the Keras model's output range."""

    def __init__(self, g: keras.Model):
        super().__init__()
        names = {layer.name for layer in g.layers}

        def get(name):
            return g.get_layer(name) if name in names else None

        blocks = sum(1 for n in names if n.startswith("res") and n.endswith("_conv1"))
        ups = sum(1 for n in names if n.startswith("up") and n.endswith("_conv"))
        self.head = nn.Sequential(_conv(get("conv_in")), _prelu(get("prelu_in")))
        self.blocks = nn.ModuleList(
            nn.Sequential(_conv(get(f"res{b}_conv1")), _bn(get(f"res{b}_bn1")), _prelu(get(f"res{b}_prelu")),
                          _conv(get(f"res{b}_conv2")), _bn(get(f"res{b}_bn2")))
            for b in range(1, blocks + 1))
        self.mid = nn.Sequential(_conv(get("conv_mid")), _bn(get("bn_mid")))
        self.up = nn.Sequential(*(
            nn.Sequential(_conv(get(f"up{u}_conv"), _shuffle_order(get(f"up{u}_conv").filters, 2)),
                          nn.PixelShuffle(2), _prelu(get(f"up{u}_prelu")))
            for u in range(1, ups + 1)))
        self.tail = _conv(get("conv_out"))
        bicubic = get("bicubic")
        self.bicubic = None
        if isinstance(bicubic, BicubicUpsample):
            r = bicubic.factor
            self.bicubic = _BicubicTorch(bicubic._kernel(3), r, _shuffle_order(3 * r * r, r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = skip = self.head(x)
        for block in self.blocks:
            y = y + block(y)
        y = self.up(skip + self.mid(y))
        y = self.tail(y)
        if self.bicubic is None:
            return torch.tanh(y)
        return y + 2.0 * self.bicubic(x) - 1.0


class _BicubicTorch(nn.Module):
    def __init__(self, kernel_hwio: np.ndarray, r: int, order: np.ndarray):
        super().__init__()
        self.register_buffer("kernel", torch.from_numpy(np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1)[order])))
        self.r = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.pad(x, (2, 2, 2, 2), mode="replicate")
        return functional.pixel_shuffle(functional.conv2d(x, self.kernel), self.r)


def torch_upscaler(g: keras.Model, scale: int, channels_last: bool = False) -> Upscaler:
    """`g` as a torch module on the CPU (all cores), wrapped as an Upscaler named "pytorch"."""
    torch.set_num_threads(os.cpu_count() or 1)
    module = TorchSRResNet(g).eval()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    module = module.to(memory_format=memory)

    def predict_float(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(memory_format=memory)
            y = module(t).numpy().transpose(0, 2, 3, 1)
        return (y + 1.0) / 2.0

    return Upscaler("pytorch" + (" channels_last" if channels_last else ""), scale, predict_float)
