"""The geometry of VGG19's layers, in one place: which block a layer is in,
its stride and channels, how far its receptive field reaches (the margins a
tile needs, `nst.core.tiles`) and how a mask reaches its resolution (regions,
`nst.io.regions`).

VGG19 is a chain of 3 x 3 convolutions (padding 1) in five blocks, with a
2 x 2, stride 2 pooling before each block after the first, so a layer of
block b works at 1 / 2^(b-1) of the input size. Nothing here imports
TensorFlow (the command line checks sizes with it before TensorFlow loads).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The convolution layers of VGG19, in network order. Any of them can be a
#: content or style layer; the network is evaluated up to the deepest one used.
VGG19_CONV_LAYERS: tuple[str, ...] = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block3_conv4",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block4_conv4",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
    "block5_conv4",
)
#: The paper's style layers (its content layer is block4_conv2).
PAPER_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
#: Channels of each VGG19 block.
VGG19_BLOCK_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}


def block(layer: str) -> int:
    """The block of a layer or pooling named ``block<b>_...`` (1 ... 5)."""
    return int(layer[5])


def stride(layer: str) -> int:
    """Input pixels per position of ``layer``'s map: 2^(b-1) after b - 1 poolings."""
    return 2 ** (block(layer) - 1)


def channels(layer: str) -> int:
    """N, the number of channels (filters) of ``layer``."""
    return VGG19_BLOCK_CHANNELS[block(layer)]


def deepest(layers: Sequence[str]) -> int:
    """The index in `VGG19_CONV_LAYERS` of the deepest of ``layers`` (-1 for none)."""
    return max((VGG19_CONV_LAYERS.index(layer) for layer in layers), default=-1)


def min_side(layers: Sequence[str]) -> int:
    """The shortest image side ``layers`` can take: each pooling before the
    deepest layer halves the image, and it must stay >= 1 px."""
    return 2 ** (max(block(layer) for layer in layers) - 1)


def margins(layers: Sequence[str]) -> tuple[int, ...]:
    """How far beyond a tile's core (see `nst.core.tiles`) VGG19's maps must be
    exact for the deepest of ``layers`` to be exact on the core: first the
    input's (the halo, in pixels), then the map's before each pooling (in
    that block's positions; what a tile keeps of its halo there). Walking
    back from the deepest layer, each 3 x 3 convolution needs one position
    more and each 2 x 2 pooling twice as many: (70, 68, 32, 12, 2) up to
    block5_conv1, whose receptive field reaches 70 px beyond its own
    16 x 16 px."""
    margin, before_poolings = 0, []
    for layer in reversed(VGG19_CONV_LAYERS[: deepest(layers) + 1]):
        margin += 1  # a 3 x 3 convolution reads one position around each of its outputs
        if layer.endswith("_conv1") and block(layer) > 1:  # a pooling before it
            margin *= 2
            before_poolings.insert(0, margin)
    return (margin, *before_poolings)


def kept_margin(all_margins: tuple[int, ...], layer_block: int) -> int:
    """Positions beyond a tile's core that its map keeps in ``layer_block``
    on a trimmed side (``all_margins`` from `margins`): the halo in block 1,
    then what the last pooling left of the margin before it."""
    return all_margins[0] if layer_block == 1 else all_margins[layer_block - 1] // 2


def layer_masks(masks: np.ndarray, layers: Sequence[str], mode: str) -> list[np.ndarray]:
    """``masks`` (regions, height, width) at each of ``layers``' resolution.

    'propagate' (Gatys et al.'s way): the masks go through the network's
    structure, each 3 x 3 convolution a 3 x 3 mean and each pooling a 2 x 2
    mean, so a position's value is the share of its receptive field inside
    the region and borders are soft. 'erode': each pooling a 2 x 2 mean (a
    plain resize), then at each layer a 3 x 3 minimum, so positions whose
    3 x 3 window leaves the region get no style from it."""
    import scipy.ndimage  # (only with masks: the command line starts without it)

    current, at_block, at = masks.astype(np.float32), 1, {}
    for layer in VGG19_CONV_LAYERS[: deepest(layers) + 1]:
        if block(layer) > at_block:  # VGG19's pooling (an odd last row or column dropped)
            r, h, w = current.shape[0], current.shape[1] // 2, current.shape[2] // 2
            current = current[:, : 2 * h, : 2 * w].reshape(r, h, 2, w, 2).mean(axis=(2, 4))
            at_block = block(layer)
        if mode == "propagate":
            current = scipy.ndimage.uniform_filter(current, size=(1, 3, 3), mode="nearest")
            at[layer] = current
        else:
            at[layer] = scipy.ndimage.grey_erosion(current, size=(1, 3, 3), mode="nearest")
    return [at[layer].clip(0, 1) for layer in layers]
