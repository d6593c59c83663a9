"""The baseline a user writes by hand: a plain Keras loop for the report's objective.

Keras' VGG19 (its own max pooling) with the given weights, the report's
losses (content 1/2 sum (F - P)^2; E_l = sum (G - A)^2 / (4 N^2 M^2), A
from the style image scaled to the output's number of positions,
style sum w_l E_l with w_l = 1/L; total alpha content + beta style), Adam
with Keras' defaults and nst's learning rate, one `tf.function` step
without XLA, float32, the image clipped to [0, 1]. Nothing from `nst` is
used. `objective` evaluates any image the same way, in float32, so the
outputs of nst and of this loop are scored by one and the same code.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class Plain:
    """The loop for one content and style image (arrays in [0, 1], HxWx3)."""

    def __init__(
        self,
        content: np.ndarray,
        style: np.ndarray,
        *,
        style_layers: tuple[str, ...],
        content_layers: tuple[str, ...],
        weights: dict[str, np.ndarray],
        alpha: float,
        beta: float,
        learning_rate: float = 0.02,
    ) -> None:
        vgg = tf.keras.applications.VGG19(include_top=False, weights=None)
        for layer in vgg.layers:
            if f"{layer.name}/kernel" in weights:
                layer.set_weights([weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"]])
        self.model = tf.keras.Model(vgg.input, [vgg.get_layer(n).output for n in style_layers + content_layers])
        self.model.trainable = False
        self.n_style, self.alpha, self.beta = len(style_layers), alpha, beta
        # The style's Gram matrices, scaled to the output's number of
        # positions (the style image has its own shape), as nst's targets are.
        styles, contents = self.features(style[None]), self.features(content[None])
        self.grams = [gram(s) * positions(c) / positions(s) for s, c in zip(styles, contents[: self.n_style])]
        self.contents = contents[self.n_style :]
        self.image = tf.Variable(content[None])
        self.optimizer = tf.keras.optimizers.Adam(learning_rate)
        self.step = tf.function(self._step)
        self.objective = tf.function(self._objective)

    def features(self, image: tf.Tensor) -> list[tf.Tensor]:
        return self.model(tf.keras.applications.vgg19.preprocess_input(tf.cast(image, tf.float32) * 255.0))

    def _objective(self, image: tf.Tensor) -> tf.Tensor:
        found = self.features(image)
        content = tf.add_n([0.5 * tf.reduce_sum((f - p) ** 2) for f, p in zip(found[self.n_style :], self.contents)])
        style = 0.0
        for f, a in zip(found[: self.n_style], self.grams):
            n, m = f.shape[-1], tf.cast(tf.shape(f)[1] * tf.shape(f)[2], tf.float32)
            style += tf.reduce_sum((gram(f) - a) ** 2) / (4.0 * n**2 * m**2) / self.n_style
        return self.alpha * content + self.beta * style

    def _step(self) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = self._objective(self.image)
        self.optimizer.apply_gradients([(tape.gradient(loss, self.image), self.image)])
        self.image.assign(tf.clip_by_value(self.image, 0.0, 1.0))
        return loss


def positions(features: tf.Tensor) -> float:
    return float(features.shape[1] * features.shape[2])


def gram(features: tf.Tensor) -> tf.Tensor:
    """G = F F^T over positions, per image."""
    return tf.einsum("bijc,bijd->bcd", features, features)
