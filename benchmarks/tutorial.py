"""The baseline: the TensorFlow tutorial's style transfer loop, written here
from its description (https://www.tensorflow.org/tutorials/generative/style_transfer).

Content layer block5_conv2, style layers block1_conv1 ... block5_conv1; Gram
matrices divided by the number of positions; mean squared errors weighted
1e4 (content) and 1e-2 (style), total variation 30; Adam(lr 0.02, beta_1
0.99, epsilon 0.1); one `tf.function` step (no XLA) that computes the loss,
applies the gradient and clips the image to [0, 1]. Nothing from `nst` is
used, so it measures what a user of the tutorial would run.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

CONTENT_LAYERS = ("block5_conv2",)
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


def vgg_model(layers: tuple[str, ...], weights: dict[str, np.ndarray] | None) -> tf.keras.Model:
    """VGG19 without its top, returning ``layers``; ``weights`` maps
    '<layer>/kernel' and '<layer>/bias' to arrays (None: Keras' random init)."""
    vgg = tf.keras.applications.VGG19(include_top=False, weights=None)
    vgg.trainable = False
    if weights is not None:
        for layer in vgg.layers:
            if f"{layer.name}/kernel" in weights:
                layer.set_weights([weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"]])
    return tf.keras.Model(vgg.input, [vgg.get_layer(name).output for name in layers])


def gram_matrix(x: tf.Tensor) -> tf.Tensor:
    result = tf.linalg.einsum("bijc,bijd->bcd", x, x)
    shape = tf.shape(x)
    return result / tf.cast(shape[1] * shape[2], tf.float32)


class Tutorial:
    """The tutorial's extractor, losses and training step for one image."""

    def __init__(
        self,
        content: np.ndarray,
        style: np.ndarray,
        *,
        style_layers: tuple[str, ...] = STYLE_LAYERS,
        content_layers: tuple[str, ...] = CONTENT_LAYERS,
        weights: dict[str, np.ndarray] | None = None,
        style_weight: float = 1e-2,
        content_weight: float = 1e4,
        tv_weight: float = 30.0,
    ) -> None:
        self.style_layers, self.content_layers = style_layers, content_layers
        self.model = vgg_model(style_layers + content_layers, weights)
        self.style_weight, self.content_weight, self.tv_weight = style_weight, content_weight, tv_weight
        self.style_targets = self.extract(tf.constant(style[None]))["style"]
        self.content_targets = self.extract(tf.constant(content[None]))["content"]
        self.image = tf.Variable(content[None])
        self.optimizer = tf.keras.optimizers.Adam(learning_rate=0.02, beta_1=0.99, epsilon=1e-1)
        self.step = tf.function(self._step)

    def extract(self, inputs: tf.Tensor) -> dict[str, list[tf.Tensor]]:
        x = tf.keras.applications.vgg19.preprocess_input(inputs * 255.0)
        outputs = self.model(x)
        n = len(self.style_layers)
        return {"style": [gram_matrix(o) for o in outputs[:n]], "content": list(outputs[n:])}

    def loss(self, image: tf.Tensor) -> tf.Tensor:
        outputs = self.extract(image)
        style = tf.add_n([tf.reduce_mean((o - t) ** 2) for o, t in zip(outputs["style"], self.style_targets)])
        content = tf.add_n([tf.reduce_mean((o - t) ** 2) for o, t in zip(outputs["content"], self.content_targets)])
        total = style * self.style_weight / len(self.style_layers) + content * self.content_weight / len(
            self.content_layers
        )
        return total + self.tv_weight * tf.image.total_variation(image)[0]

    def _step(self) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = self.loss(self.image)
        gradient = tape.gradient(loss, self.image)
        self.optimizer.apply_gradients([(gradient, self.image)])
        self.image.assign(tf.clip_by_value(self.image, 0.0, 1.0))
        return loss
