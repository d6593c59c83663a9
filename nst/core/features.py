"""VGG19 features: one multi-output Keras model returning the style and
content layers' activations, and where its weights come from.

The model takes RGB images in [0, 1], shaped (batch, height, width, 3) (a
single grey channel is repeated to three), applies Keras' own VGG19
preprocessing ("caffe": BGR, ImageNet mean subtracted, 0-255) and runs the
network only up to the deepest layer asked for. Its pooling layers can be
max (Keras'), average (the paper's) or L2 (crowsonkb's), and its first
convolution can pad with zeros or the edge pixels; the weights are the same. Pooling
is computed by Keras' layers or by `Pool2x2` (``pooling_op``: the same
values; which is faster depends on the machine, `nst.core.execution`). A given
extractor is built once per process (`get_extractor`) from its settings
(`Network`).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nst.base.backend import tf
from nst.base.config import PADDINGS, POOLING_OPS, POOLINGS, Config
from nst.base.geometry import VGG19_CONV_LAYERS, block
from nst.core.normalize import normalize as normalize_network
from nst.io.weights import WEIGHTS_ENV, WeightsError, check_weights, resolve_weights


class Features(NamedTuple):
    """Activations of the style layers and of the content layers, in the
    order the layers were given; each tensor is (batch, height, width, channels)."""

    style: list[tf.Tensor]
    content: list[tf.Tensor]


#: L2 pooling's output scale (crowsonkb/style-transfer-pytorch's): the norm of
#: a window of four is up to twice its maximum, and 0.78 x it keeps the deeper
#: activations, and so the weights' meaning, about max pooling's.
L2_SCALE = 0.78


class Pool2x2(tf.keras.layers.Layer):
    """VGG19's 2 x 2, stride 2 pooling, 'max', 'avg' or 'l2' (`L2_SCALE`
    x each window's L2 norm), as a reshape and a reduction: the values of
    Keras' pooling layers (an odd last row or column is dropped, as theirs
    do). XLA compiles Keras' max pooling gradient
    (select-and-scatter) with three index arrays the size of its input (more
    memory and time: BENCHMARKS.md, "Numbers behind the code's choices"); a reduction's gradient is one elementwise pass. Where a window's maximum is tied, the reduction splits
    the gradient among the ties (MaxPool gives it to one); after a ReLU such
    ties are zeros, whose gradient the ReLU sets to zero either way."""

    def __init__(self, mode: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        h, w = shape[1] // 2, shape[2] // 2
        windows = tf.reshape(x[:, : 2 * h, : 2 * w], [shape[0], h, 2, w, 2, x.shape[-1]])
        if self.mode == "l2":  # (the maximum keeps the gradient finite where a window is all zeros)
            return L2_SCALE * tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(windows), axis=(2, 4)), 1e-12))
        return (tf.reduce_max if self.mode == "max" else tf.reduce_mean)(windows, axis=(2, 4))


class ReplicateConv2D(tf.keras.layers.Conv2D):
    """A 3 x 3 convolution whose input is padded by repeating its edge pixels
    instead of with zeros (crowsonkb's first layer: fewer edge artefacts),
    so that its map keeps the input's size. A tile's input ends at the
    picture's edge only where it is not trimmed, so tiles see the same edges."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        # A reflection of one pixel that includes the edge repeats it.
        return super().call(tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC"))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.filters)


#: The layers that pool (`Extractor.__call__` trims a tile's halo before each).
POOLING_LAYERS = (Pool2x2, tf.keras.layers.MaxPooling2D, tf.keras.layers.AveragePooling2D)


@dataclasses.dataclass(frozen=True)
class Network:
    """What an extractor is: the VGG19 layers it returns, its weights (and
    the seed of random ones), its pooling and the op computing it, its first
    convolution's padding, its precision and the images it is normalised
    over (`nst.core.normalize`; ``None``: Keras' VGG19 as it is). The
    `nst.base.config.Config` fields of the same names (`of`)."""

    style_layers: tuple[str, ...]
    content_layers: tuple[str, ...] = ()
    weights: str = "imagenet"
    seed: int | None = None
    pooling: str = "max"
    precision: str = "float32"
    normalize: str | None = None
    pooling_op: str = "reshape"
    padding: str = "zero"

    def __post_init__(self) -> None:
        unknown = [name for name in self.layers if name not in VGG19_CONV_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; valid layers: {' '.join(VGG19_CONV_LAYERS)}")
        for name, value, allowed in (
            ("pooling", self.pooling, POOLINGS),
            ("padding", self.padding, PADDINGS),
            ("pooling_op", self.pooling_op, POOLING_OPS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

    @classmethod
    def of(cls, config: Config) -> Network:
        """``config``'s network. Settings of the path that `nst.core.execution`
        has not settled yet (a config made by hand) take float32 and the
        reshape pooling."""
        return cls(
            tuple(config.style_layers),
            tuple(config.content_layers),
            config.weights,
            config.seed,
            config.pooling,
            "float32" if config.precision == "auto" else config.precision,
            config.normalize,
            config.pooling_op or "reshape",
            config.padding,
        )

    @property
    def layers(self) -> list[str]:
        """The layers it returns, each once, style layers first."""
        return list(dict.fromkeys(self.style_layers + self.content_layers))


class Extractor:
    """Callable VGG19 feature extractor for fixed style and content layers.

    ``extractor(images)`` returns `Features` for images in [0, 1]. The Keras
    model (``extractor.model``) ends at the deepest layer used.
    """

    def __init__(self, network: Network) -> None:
        self.network = network
        """Its settings."""
        n = network
        # Under a mixed policy Keras keeps the weights in float32 and computes
        # each layer in float16 / bfloat16; __call__ hands float32 features to
        # the losses, so Gram matrices and losses stay in float32.
        previous = tf.keras.mixed_precision.global_policy()
        tf.keras.mixed_precision.set_global_policy(n.precision)
        try:
            self.model = self._build(_vgg19(n.weights), n.layers, n.pooling, n.pooling_op, n.padding)
        finally:
            tf.keras.mixed_precision.set_global_policy(previous)
        self.model.trainable = False
        if n.weights == "random":
            _randomise(self.model, n.seed)
        elif n.weights.lower().endswith(".npz"):
            _load_npz(self.model, n.weights)
        # The paper's network: each filter's mean activation made 1 (nst.core.normalize).
        self.normalization = None
        if n.normalize:
            convs = _conv_layers(self.model)
            network = f"{n.pooling}/{n.padding}"  # what the cached means depend on beside the weights
            self.normalization = normalize_network(convs, self.model.layers[1:], n.weights, network, n.normalize)
        self._index = {name: i for i, name in enumerate(n.layers)}

    @staticmethod
    def _build(vgg: tf.keras.Model, layers: list[str], pooling: str, pooling_op: str, padding: str) -> tf.keras.Model:
        # VGG19 is a chain: walk it up to the deepest layer asked for, reusing
        # its conv layers (and so their weights), with max, the paper's
        # average or L2 pooling where Keras has max pooling, computed by
        # Keras' pooling layers or by `Pool2x2` (``pooling_op``; L2 by
        # `Pool2x2` always), and the first convolution's edges replicated if asked.
        x = inputs = tf.keras.Input((None, None, 3))
        outputs = {}
        for layer in vgg.layers[1:]:
            if padding == "replicate" and layer is vgg.layers[1]:
                first = ReplicateConv2D(layer.filters, 3, activation="relu", name=layer.name)
                first.build((None, None, None, 3))
                first.set_weights(layer.get_weights())
                layer = first
            if isinstance(layer, tf.keras.layers.MaxPooling2D):
                name = layer.name if pooling == "max" else layer.name.replace("pool", f"{pooling}pool")
                if pooling_op == "reshape" or pooling == "l2":
                    layer = Pool2x2(pooling, name=name)
                else:
                    keras_pool = tf.keras.layers.MaxPooling2D if pooling == "max" else tf.keras.layers.AveragePooling2D
                    layer = keras_pool(2, strides=2, name=name)
            x = layer(x)
            if layer.name in layers:
                outputs[layer.name] = x
            if len(outputs) == len(layers):
                break
        return tf.keras.Model(inputs, [outputs[name] for name in layers], name="vgg19_features")

    def __call__(self, images: tf.Tensor, trim: Callable[[int, tf.Tensor], tf.Tensor] | None = None) -> Features:
        """The features of ``images``; with ``trim``, the map before each
        pooling is ``trim(block, map)`` (the block the pooling ends), so that
        a tile's halo can shrink as the layers stop needing it (`nst.core.tiles`)."""
        if images.shape[-1] == 1:
            images = tf.tile(images, [1, 1, 1, 3])
        x = tf.keras.applications.vgg19.preprocess_input(images * 255.0)
        if trim is None:
            outputs = self.model(x, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        else:  # the model is a chain: walk it layer by layer
            found = {}
            for layer in self.model.layers[1:]:
                if isinstance(layer, POOLING_LAYERS):
                    x = trim(block(layer.name), x)
                x = found[layer.name] = layer(x)
            outputs = [found[name] for name in self._index]
        outputs = [tf.cast(o, tf.float32) for o in outputs]
        return Features(
            style=[outputs[self._index[name]] for name in self.network.style_layers],
            content=[outputs[self._index[name]] for name in self.network.content_layers],
        )


@functools.lru_cache(maxsize=8)
def get_extractor(network: Network, device: str = "CPU") -> Extractor:
    """The extractor of ``network``, built once per process and device (a
    `tf.distribute` strategy's name), in that strategy's scope (so its
    weights live there); its weights resolved first (`nst.io.weights`)."""
    resolved = resolve_weights(network.weights)
    if resolved != network.weights:
        return get_extractor(dataclasses.replace(network, weights=resolved), device)
    if resolved != "random" and network.seed is not None:  # the seed makes only a random network
        return get_extractor(dataclasses.replace(network, seed=None), device)
    return Extractor(network)


def extractor_for(config: Config, device: str = "CPU") -> Extractor:
    """`get_extractor` of ``config``'s network (`Network.of`)."""
    return get_extractor(Network.of(config), device)


def _vgg19(weights: str) -> tf.keras.Model:
    """Keras' VGG19 without its dense layers, with ImageNet or .h5 weights
    loaded by Keras (other weights are set later, layer by layer)."""
    if weights == "imagenet":
        try:
            return tf.keras.applications.VGG19(include_top=False, weights="imagenet")
        except Exception as e:  # Keras raises a bare Exception when a download fails
            raise WeightsError(
                f"Could not download the VGG19 ImageNet weights ({e}). Keras fetches them once "
                f"(80 MB, cached in $KERAS_HOME/models or ~/.keras/models). Offline, download "
                f"vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (or get an .npz of VGG19's layers) "
                f"elsewhere and run `nst weights install PATH` once: every later run and notebook uses it "
                f"(or pass it: weights=PATH, ${WEIGHTS_ENV}=PATH); weights=random is for plumbing only."
            ) from None
    vgg = tf.keras.applications.VGG19(include_top=False, weights=None)
    if weights.lower().endswith(".h5"):
        try:
            vgg.load_weights(weights)
        except Exception as e:
            raise WeightsError(f"{weights}: not a VGG19 (no top) Keras weights file ({e}).") from None
    return vgg


def _conv_layers(model: tf.keras.Model) -> list[tf.keras.layers.Conv2D]:
    return [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]


def _load_npz(model: tf.keras.Model, path: str) -> None:
    """Set each conv layer from ``<layer>/kernel`` and ``<layer>/bias`` arrays."""
    check_weights(path, (_conv_layers(model)[-1].name,))  # it has every layer the model has
    arrays = np.load(path, allow_pickle=False)
    for layer in _conv_layers(model):
        kernel, bias = arrays[f"{layer.name}/kernel"], arrays[f"{layer.name}/bias"]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [kernel.shape, bias.shape] != expected:
            raise WeightsError(f"{path}: {layer.name} has shapes {kernel.shape}, {bias.shape}; expected {expected}.")
        layer.set_weights([kernel, bias])


def _randomise(model: tf.keras.Model, seed: int | None) -> None:
    """Glorot-uniform kernels and zero biases (Keras' defaults) from ``seed``."""
    warnings.warn(
        "VGG19 has random weights: the features mean nothing and the result is not art. "
        "Use this for testing and timing only.",
        stacklevel=3,
    )
    rng = np.random.default_rng(seed if seed is not None else 0)
    for layer in _conv_layers(model):
        kernel, bias = layer.get_weights()
        fan_in, fan_out = np.prod(kernel.shape[:-1]), np.prod(kernel.shape[:-2]) * kernel.shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        layer.set_weights([rng.uniform(-limit, limit, kernel.shape).astype(np.float32), np.zeros_like(bias)])
