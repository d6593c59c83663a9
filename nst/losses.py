"""The losses of the report (Gatys et al. 2016), exactly as written there.

Each function takes tensors shaped (batch, height, width, channels) and
returns one value per batch element. With ``F`` a layer's activations
reshaped to N channels x M positions and ``P`` the content's:

- content loss   ``1/2 * sum (F - P)^2``
- Gram matrix    ``G = F F^T``  (N x N, summed over positions, unnormalised)
- style term     ``E_l = sum (G - A)^2 / (4 N^2 M^2)``
- total          ``alpha * content + beta * sum_l w_l E_l  (+ gamma * TV)``

(TV, off unless gamma > 0, is not the report's; see `total_variation_loss`.)

The TensorFlow tutorial normalises differently (Gram divided by M, mean
squared errors); its forms are kept beside these as `TUTORIAL` so its numbers
can be reproduced. The authors' own code (`GATYS`) uses the tutorial's
forms with each style term divided by N_l^2; unlike the report's, its
alpha/beta does not depend on the image size (both terms are means).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from nst.backend import tf
from nst.config import Config
from nst.features import Features


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """``G_ij = sum_k F_ik F_jk`` over positions k: (batch, channels, channels)."""
    return tf.einsum("bhwi,bhwj->bij", features, features)


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``1/2 * sum (F - P)^2`` per batch element."""
    return 0.5 * tf.reduce_sum(tf.square(features - target), axis=[1, 2, 3])


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """``E_l = sum (G - A)^2 / (4 N^2 M^2)`` per batch element.

    ``target_gram`` is A, the Gram matrix of the style image's activations at
    the same layer (for a style image of M positions too; see `style_target`).
    """
    shape = tf.shape(features)
    return style_loss_of_gram(gram_matrix(features), target_gram, shape[1] * shape[2])


def style_loss_of_gram(gram: tf.Tensor, target_gram: tf.Tensor, positions: tf.Tensor | int) -> tf.Tensor:
    """`style_loss` from G itself, for an output of ``positions`` (M)
    positions: what a tiled evaluation (`nst.tiles`), which sums G over
    tiles, needs."""
    n = tf.cast(tf.shape(gram)[-1], gram.dtype)
    m = tf.cast(positions, gram.dtype)
    # Dividing before squaring is the same sum and keeps values small in float32.
    return tf.reduce_sum(tf.square((gram - target_gram) / (2.0 * n * m)), axis=[1, 2])


def style_target(style_features: tf.Tensor, positions: int) -> tf.Tensor:
    """A for an output of ``positions`` (M) positions at this layer.

    The report's Gram matrix is a sum over positions, so it grows with image
    size. When the style image is not the output's size its Gram matrix is
    rescaled by ``M_output / M_style`` (a no-op when the sizes agree).
    """
    shape = tf.shape(style_features)
    return rescaled_gram(gram_matrix(style_features), shape[1] * shape[2], positions)


def rescaled_gram(gram: tf.Tensor, style_positions: tf.Tensor | int, positions: int) -> tf.Tensor:
    """A Gram matrix of ``style_positions`` positions, rescaled to stand for
    an output of ``positions`` (see `style_target`)."""
    return gram * (positions / tf.cast(style_positions, gram.dtype))


def guided_style_loss(features: tf.Tensor, target_grams: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """The style term with regions (`nst.regions`), per batch element:
    ``sum_r sum (G_r - A_r)^2 / (4 N^2 M_r M)`` with the guided Gram matrix
    ``G_r = (m_r F)^T (m_r F)`` and its mass ``M_r = sum m_r^2``.

    ``masks`` is (batch, regions, height, width) at this layer's resolution,
    ``target_grams`` (batch, regions, N, N), each A_r already rescaled to
    its region's mass. One region with a mask of ones is `style_loss`.
    """
    shape = tf.shape(features)
    mass = tf.reduce_sum(tf.square(masks), axis=[2, 3])
    return guided_loss_of_gram(guided_gram(features, masks), target_grams, mass, shape[1] * shape[2])


def guided_gram(features: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """``G_r = (m_r F)^T (m_r F)`` for each region: (batch, regions, N, N)."""
    return tf.einsum("brhwi,bhwj->brij", features[:, None] * tf.square(masks)[..., None], features)


def guided_loss_of_gram(grams: tf.Tensor, target_grams: tf.Tensor, mass: tf.Tensor, positions: tf.Tensor | int):
    """`guided_style_loss` from the G_r themselves and the regions' masses
    (batch, regions), for an output of ``positions`` (M) positions: what a
    tiled evaluation, which sums G_r over tiles, needs."""
    n = tf.cast(tf.shape(grams)[-1], grams.dtype)
    m = tf.cast(positions, grams.dtype)
    # An empty region has G_r = A_r = 0: its term is 0, not 0 / 0.
    per_region = tf.reduce_sum(tf.square((grams - target_grams) / (2.0 * n)), axis=[2, 3]) / tf.maximum(mass * m, 1e-12)
    return tf.reduce_sum(per_region, axis=1)


def total_variation_loss(image: tf.Tensor) -> tf.Tensor:
    """``1/2 * sum (x[i+1, j] - x[i, j])^2 + (x[i, j+1] - x[i, j])^2`` per
    batch element, with the pixels x on VGG19's 0-255 scale.

    Not in the report: a smoothness prior (Mahendran & Vedaldi's TV with
    exponent 2, as jcjohnson/neural-style's), written like the content loss
    (half a sum of squares, on the scale VGG19 sees) so that its gradient at
    a pixel does not depend on the image size and gamma reads on the same
    scale as alpha. Squared, it is smooth: the absolute value's kink flips
    the gradient wherever neighbours tie (8-bit inputs have many ties)."""
    x = image * 255.0
    dy = tf.square(x[:, 1:, :, :] - x[:, :-1, :, :])
    dx = tf.square(x[:, :, 1:, :] - x[:, :, :-1, :])
    return 0.5 * (tf.reduce_sum(dy, axis=[1, 2, 3]) + tf.reduce_sum(dx, axis=[1, 2, 3]))


def temporal_loss(image: tf.Tensor, previous: tf.Tensor, consistency: tf.Tensor) -> tf.Tensor:
    """``1/2 * sum c (x - w)^2`` per batch element: a video frame's pixels x
    held to the previous stylised frame w warped onto it, where the flow
    can be trusted (c, (batch, height, width, 1) in [0, 1]; `nst.flow`).

    Ruder et al.'s short-term temporal loss, written like the TV loss here
    (half a sum of squares on VGG19's 0-255 scale, not a mean): its gradient
    at a pixel does not depend on the image size, so its weight reads on the
    same scale as alpha at any size."""
    return 0.5 * tf.reduce_sum(consistency * tf.square((image - previous) * 255.0), axis=[1, 2, 3])


def tutorial_total_variation(image: tf.Tensor) -> tf.Tensor:
    """The tutorial's TV, `tf.image.total_variation`: the sum of absolute
    differences between neighbouring pixels in [0, 1]."""
    return tf.image.total_variation(image)


def tutorial_content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """The tutorial's content loss: mean of ``(F - P)^2``."""
    return tf.reduce_mean(tf.square(features - target), axis=[1, 2, 3])


def tutorial_gram(features: tf.Tensor) -> tf.Tensor:
    """The tutorial's Gram matrix: ``F F^T / M`` (independent of image size)."""
    shape = tf.shape(features)
    return gram_matrix(features) / tf.cast(shape[1] * shape[2], features.dtype)


def tutorial_style_target(style_features: tf.Tensor, positions: int) -> tf.Tensor:
    """The tutorial's target: its Gram matrix of the style image (needs no rescaling)."""
    return tutorial_gram(style_features)


def tutorial_style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """The tutorial's style loss: mean of ``(F F^T / M - A)^2``."""
    return tf.reduce_mean(tf.square(tutorial_gram(features) - target_gram), axis=[1, 2])


def gatys_style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """The authors' code's style term (leongatys/PytorchNeuralStyleTransfer):
    ``mean (G/M - A)^2 / N^2``, the tutorial's divided by N^2 (their style
    weights are ``1e3 / N_l^2``: beta = 1e3 times this, w_l = 1). It is
    ``4 E_l / N^2`` in the report's terms."""
    n = tf.cast(tf.shape(features)[3], features.dtype)
    return tutorial_style_loss(features, target_gram) / (n * n)


class LossForm(NamedTuple):
    """One normalisation of the losses: content loss, style target, style
    loss, total variation."""

    content: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    style_target: Callable[[tf.Tensor, int], tf.Tensor]
    style: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    tv: Callable[[tf.Tensor], tf.Tensor]


REPORT = LossForm(content_loss, style_target, style_loss, total_variation_loss)
TUTORIAL = LossForm(tutorial_content_loss, tutorial_style_target, tutorial_style_loss, tutorial_total_variation)
#: The authors' own code: the tutorial's content term and Gram matrices, their
#: style term (`gatys_style_loss`), the report's smooth TV.
GATYS = LossForm(tutorial_content_loss, tutorial_style_target, gatys_style_loss, total_variation_loss)
LOSS_FORMS = {"report": REPORT, "tutorial": TUTORIAL, "gatys": GATYS}


class Targets(NamedTuple):
    """What the output must match: P per content layer, A per style layer;
    with regions (`nst.regions`), A_r per region and the regions' masks at
    each style layer, (batch, regions, height, width); for a video frame
    (`nst.video`), the previous output warped onto it, the consistency c
    and the temporal weight (see `temporal_loss`)."""

    content: list[tf.Tensor]
    style: list[tf.Tensor]
    masks: Sequence[tf.Tensor] = ()
    temporal: Sequence[tf.Tensor] = ()

    def map(self, fn: Callable[[tf.Tensor], tf.Tensor]) -> Targets:
        """``fn`` applied to every tensor (to make variables of them, or take a replica's share)."""
        return Targets(*([fn(t) for t in field] for field in self))

    @staticmethod
    def concat(batch: Sequence[Targets]) -> Targets:
        """The targets of several batch elements as one batch."""
        return Targets(*([tf.concat(layer, 0) for layer in zip(*fields)] for fields in zip(*batch)))


def make_targets(content: Features, style: Features, config: Config) -> Targets:
    """Content targets from the content image's features, Gram targets from
    the style image's, sized for an output the size of the content image."""
    form = LOSS_FORMS[config.loss_form]
    positions = [int(f.shape[1]) * int(f.shape[2]) for f in content.style]
    return Targets(
        content=[tf.constant(f) for f in content.content],
        style=[form.style_target(f, m) for f, m in zip(style.style, positions)],
    )


class Weights(NamedTuple):
    """alpha, beta, gamma and the style layer weights w_l of each batch
    element: shapes (batch,) and (batch, layers). A batch of independent runs
    (`nst.stylize_many`) may weigh each element differently."""

    content: tf.Tensor
    style: tf.Tensor
    tv: tf.Tensor
    layers: tf.Tensor

    @classmethod
    def of(cls, configs: Sequence[Config]) -> Weights:
        """The weights of ``configs``, one batch element each."""
        return cls(
            content=tf.constant([c.content_weight for c in configs], tf.float32),
            style=tf.constant([c.style_weight for c in configs], tf.float32),
            tv=tf.constant([c.tv_weight for c in configs], tf.float32),
            layers=tf.constant(
                [c.layer_weights for c in configs], tf.float32, shape=[len(configs), len(configs[0].style_layers)]
            ),
        )


def objective(
    image: tf.Tensor, features: Features, targets: Targets, config: Config, weights: Weights | None = None
) -> dict[str, tf.Tensor]:
    """Every term of the total loss, per batch element.

    Keys: 'total', 'content' (mean over content layers), 'style'
    (``sum_l w_l E_l``), 'tv' (always computed; weighted by gamma in the
    total), 'temporal' (for a video frame, `temporal_loss`, unweighted) and
    'style/<layer>' (each unweighted E_l). The weights are ``config``'s
    unless ``weights`` gives them per batch element.
    """
    form = LOSS_FORMS[config.loss_form]
    weights = Weights(*(tf.cast(w, image.dtype) for w in weights or Weights.of([config])))
    zero = tf.zeros(tf.shape(image)[:1], image.dtype)
    content = zero
    for f, p in zip(features.content, targets.content):
        content += form.content(f, p) / len(targets.content)
    terms = {}
    style = zero
    for i, (layer, f, a) in enumerate(zip(config.style_layers, features.style, targets.style)):
        terms[f"style/{layer}"] = guided_style_loss(f, a, targets.masks[i]) if targets.masks else form.style(f, a)
        style += weights.layers[:, i] * terms[f"style/{layer}"]
    tv = form.tv(image)
    total = weights.content * content + weights.style * style + weights.tv * tv
    if targets.temporal:
        total += temporal_term(image, targets.temporal, terms)
    return {"total": total, "content": content, "style": style, "tv": tv, **terms}


def temporal_term(image: tf.Tensor, temporal: Sequence[tf.Tensor], terms: dict[str, tf.Tensor]) -> tf.Tensor:
    """The weighted temporal loss of a video frame (`Targets.temporal`);
    records the unweighted one in ``terms`` as 'temporal'."""
    previous, consistency, weight = temporal
    terms["temporal"] = temporal_loss(image, tf.cast(previous, image.dtype), tf.cast(consistency, image.dtype))
    return tf.cast(weight, image.dtype) * terms["temporal"]
