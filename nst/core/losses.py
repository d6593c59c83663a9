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

crowsonkb's ``SCALED`` form makes each term ``sum d^2 / sum |d|``, so that
its weights hold at any size; any form can take the Wasserstein-2 style
term instead of its Gram matrices (`form_of`, `nst.core.wasserstein`).

Each form is written over sums (`LossForm`): the content term from sums
over positions (``sum (F - P)^2``, and for the scaled form ``sum |F - P|``),
E_l from a Gram matrix summed over M positions, and a rule for A. Tiles
(`nst.core.tiles`) and regions (`nst.io.regions`) change only how the sums are
made, so every form works with both; `Objective` weighs the terms into the
total and is the only objective, whole image or tiled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

from nst.base.backend import tf
from nst.base.config import Config
from nst.core.features import Features
from nst.core.wasserstein import moment_features, prepared_target, w2_style


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """``G_ij = sum_k F_ik F_jk`` over positions k: (batch, channels, channels)."""
    return tf.einsum("bhwi,bhwj->bij", features, features)


def guided_gram(features: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """``G_r = (m_r F)^T (m_r F)`` for each region: (batch, regions, N, N)."""
    return tf.einsum("brhwi,bhwj->brij", features[:, None] * tf.square(masks)[..., None], features)


def squared_error(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``sum (F - P)^2`` per batch element: what every content form is made of."""
    return tf.reduce_sum(tf.square(features - target), axis=[1, 2, 3])


def squared_sums(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``[sum (F - P)^2]``, (1, batch): the sums a content term is made of."""
    return squared_error(features, target)[None]


def squared_and_absolute(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``[sum (F - P)^2, sum |F - P|]``, (2, batch): the scaled form's sums."""
    d = features - target
    return tf.stack([tf.reduce_sum(tf.square(d), axis=[1, 2, 3]), tf.reduce_sum(tf.abs(d), axis=[1, 2, 3])])


def _positions(features: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(features)
    return shape[1] * shape[2]


def _per_matrix(m: tf.Tensor | int, dtype: tf.DType) -> tf.Tensor:
    """A number of positions (or masses, (batch, regions)) to divide (..., N, N) matrices by."""
    return tf.cast(m, dtype)[..., None, None]


# Each loss form over sums: the content term from its content sums
# (`squared_sums`: ``[sum (F - P)^2]``; `squared_and_absolute`), the
# style term E from a Gram matrix G summed over M positions (its target A,
# N channels), and the target rule that makes A from a style image's Gram
# sum over its own M_s positions for an output of M. Tiles (`nst.core.tiles`)
# and regions (`nst.io.regions`) only change how the sums are made.


def _report_content(sums: tf.Tensor, n: int, m: int) -> tf.Tensor:
    return 0.5 * sums[0]


def _report_style(gram: tf.Tensor, target: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    # Dividing before squaring is the same sum and keeps values small in float32.
    return tf.reduce_sum(tf.square((gram - target) / (2.0 * n * _per_matrix(m, gram.dtype))), axis=[-2, -1])


def _report_target(gram: tf.Tensor, style_positions: tf.Tensor | float, positions: tf.Tensor | float) -> tf.Tensor:
    return gram * (tf.cast(positions, gram.dtype) / tf.cast(style_positions, gram.dtype))


def _mean_content(sums: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    return sums[0] / tf.cast(n * m, sums.dtype)


#: Keeps the scaled form's ``sum d^2 / sum |d|`` finite where d is 0.
SCALED_EPSILON = 1e-8


def _scaled_content(sums: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    return sums[0] / (sums[1] + SCALED_EPSILON)


def _scaled_style(gram: tf.Tensor, target: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    d = gram / _per_matrix(m, gram.dtype) - target
    return tf.reduce_sum(tf.square(d), axis=[-2, -1]) / (tf.reduce_sum(tf.abs(d), axis=[-2, -1]) + SCALED_EPSILON)


def _tutorial_style(gram: tf.Tensor, target: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    return tf.reduce_sum(tf.square(gram / _per_matrix(m, gram.dtype) - target), axis=[-2, -1]) / float(n * n)


def _gatys_style(gram: tf.Tensor, target: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    return _tutorial_style(gram, target, n, m) / float(n * n)


def _normalised_target(gram: tf.Tensor, style_positions: tf.Tensor | float, positions: tf.Tensor | float):
    return gram / tf.cast(style_positions, gram.dtype)


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
    can be trusted (c, (batch, height, width, 1) in [0, 1]; `nst.io.flow`).

    Ruder et al.'s short-term temporal loss, written like the TV loss here
    (half a sum of squares on VGG19's 0-255 scale, not a mean): its gradient
    at a pixel does not depend on the image size, so its weight reads on the
    same scale as alpha at any size."""
    return 0.5 * tf.reduce_sum(consistency * tf.square((image - previous) * 255.0), axis=[1, 2, 3])


def mean_total_variation(image: tf.Tensor) -> tf.Tensor:
    """The mean over pixels of ``(x[i+1, j] - x[i, j])^2 + (x[i, j+1] - x[i, j])^2``,
    pixels in [0, 1], the last row and column repeated (crowsonkb's TV: it
    does not grow with the image, as the scaled form's terms do not)."""
    x = tf.concat([image, image[:, -1:]], axis=1)
    x = tf.concat([x, x[:, :, -1:]], axis=2)
    dy, dx = x[:, 1:, :-1] - x[:, :-1, :-1], x[:, :-1, 1:] - x[:, :-1, :-1]
    return tf.reduce_mean(tf.square(dy) + tf.square(dx), axis=[1, 2, 3])


def tutorial_total_variation(image: tf.Tensor) -> tf.Tensor:
    """The tutorial's TV, `tf.image.total_variation`: the sum of absolute
    differences between neighbouring pixels in [0, 1]."""
    return tf.image.total_variation(image)


class LossForm(NamedTuple):
    """One normalisation of the losses, written over sums (so that tiles and
    regions, which change only how the sums are made, work with any form):

    - ``content_of(sum (F - P)^2, N, M)``: the content term of a layer;
    - ``style_of(G, A, N, M)``: E_l from G summed over M positions;
    - ``target_of(G_s, M_s, M)``: A from a style image's Gram sum over its
      own M_s positions (or a style mask's mass), for an output of M;
    - ``tv(image)``: the total variation;
    - ``statistics(F)``: what the Gram matrices are taken of (W2's moments
      need a channel of ones, `moment_features`);
    - ``prepare(A)``: what a target becomes once blended, before the run
      (W2 takes its covariance's square root here once, `prepared_target`).
    """

    content_of: Callable[[tf.Tensor, int, int], tf.Tensor]
    style_of: Callable[..., tf.Tensor]
    target_of: Callable[..., tf.Tensor]
    tv: Callable[[tf.Tensor], tf.Tensor]
    content_sums: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] = squared_sums
    statistics: Callable[[tf.Tensor], tf.Tensor] = tf.identity
    prepare: Callable[[tf.Tensor], tf.Tensor] = tf.identity

    def content(self, features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """The content term of ``features`` against ``target`` (P), per batch element."""
        return self.content_of(self.content_sums(features, target), features.shape[-1], _positions(features))

    def style(self, features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
        """E_l of ``features`` against A (made by `style_target` for their size, then `prepare`)."""
        features = self.statistics(features)
        return self.style_of(gram_matrix(features), target_gram, features.shape[-1], _positions(features))

    def style_target(self, style_features: tf.Tensor, positions: int) -> tf.Tensor:
        """A from a style image's features, for an output of ``positions`` (M)."""
        return self.target_of(gram_matrix(self.statistics(style_features)), _positions(style_features), positions)

    def guided_style(self, grams: tf.Tensor, targets: tf.Tensor, mass: tf.Tensor, positions: tf.Tensor | int):
        """The style term with regions from the guided G_r (batch, regions,
        N, N), their targets A_r and masses M_r (batch, regions), for an
        output of M positions: ``sum_r (M_r / M) E(G_r, A_r, M_r)``, each
        region the form's E over its own positions, weighed by the share of
        the image it covers (one region of all ones is `style`'s E)."""
        n, m = grams.shape[-1], tf.cast(positions, grams.dtype)
        # An empty region has G_r = 0 and weight 0: its term is 0, not 0 / 0.
        per_region = self.style_of(grams, targets, n, tf.maximum(mass, 1e-12))
        return tf.reduce_sum(mass / m * per_region, axis=1)


REPORT = LossForm(_report_content, _report_style, _report_target, total_variation_loss)
#: The TensorFlow tutorial's: Gram matrices divided by M, mean squared errors.
TUTORIAL = LossForm(_mean_content, _tutorial_style, _normalised_target, tutorial_total_variation)
#: The authors' own code: the tutorial's content term and Gram matrices, their
#: style term (the tutorial's divided by N^2), the report's smooth TV.
GATYS = LossForm(_mean_content, _gatys_style, _normalised_target, total_variation_loss)
#: crowsonkb/style-transfer-pytorch's: each term ``sum d^2 / sum |d|`` (its
#: gradient's L1 norm is about 1), of F - P and of G / M - A, and the mean TV.
#: The weights then mean the same at every image size and layer.
SCALED = LossForm(_scaled_content, _scaled_style, _normalised_target, mean_total_variation, squared_and_absolute)
LOSS_FORMS = {"report": REPORT, "tutorial": TUTORIAL, "gatys": GATYS, "scaled": SCALED}


def form_of(config: Config) -> LossForm:
    """``config``'s loss form, its style terms W2's (`w2_style`) if ``config.style_loss`` says so."""
    form = LOSS_FORMS[config.loss_form]
    if config.style_loss == "w2":
        form = form._replace(
            style_of=w2_style, target_of=_normalised_target, statistics=moment_features, prepare=prepared_target
        )
    return form


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``1/2 * sum (F - P)^2`` per batch element."""
    return REPORT.content(features, target)


def style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """``E_l = sum (G - A)^2 / (4 N^2 M^2)`` per batch element.

    ``target_gram`` is A, the Gram matrix of the style image's activations at
    the same layer (for a style image of M positions too; see `style_target`).
    """
    return REPORT.style(features, target_gram)


def style_target(style_features: tf.Tensor, positions: int) -> tf.Tensor:
    """A for an output of ``positions`` (M) positions at this layer.

    The report's Gram matrix is a sum over positions, so it grows with image
    size. When the style image is not the output's size its Gram matrix is
    rescaled by ``M_output / M_style`` (a no-op when the sizes agree).
    """
    return REPORT.style_target(style_features, positions)


def guided_style_loss(features: tf.Tensor, target_grams: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """The report's style term with regions (`nst.io.regions`), per batch
    element: ``sum_r sum (G_r - A_r)^2 / (4 N^2 M_r M)`` with the guided
    Gram matrix ``G_r = (m_r F)^T (m_r F)`` and its mass ``M_r = sum m_r^2``.

    ``masks`` is (batch, regions, height, width) at this layer's resolution,
    ``target_grams`` (batch, regions, N, N), each A_r already rescaled to
    its region's mass. One region with a mask of ones is `style_loss`.
    """
    mass = tf.reduce_sum(tf.square(masks), axis=[2, 3])
    return REPORT.guided_style(guided_gram(features, masks), target_grams, mass, _positions(features))


def tutorial_content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """The tutorial's content loss: mean of ``(F - P)^2``."""
    return TUTORIAL.content(features, target)


def tutorial_gram(features: tf.Tensor) -> tf.Tensor:
    """The tutorial's Gram matrix: ``F F^T / M`` (independent of image size)."""
    return gram_matrix(features) / tf.cast(_positions(features), features.dtype)


def tutorial_style_target(style_features: tf.Tensor, positions: int) -> tf.Tensor:
    """The tutorial's target: its Gram matrix of the style image (needs no rescaling)."""
    return TUTORIAL.style_target(style_features, positions)


def tutorial_style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """The tutorial's style loss: mean of ``(F F^T / M - A)^2``."""
    return TUTORIAL.style(features, target_gram)


def gatys_style_loss(features: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """The authors' code's style term (leongatys/PytorchNeuralStyleTransfer):
    ``mean (G/M - A)^2 / N^2``, the tutorial's divided by N^2 (their style
    weights are ``1e3 / N_l^2``: beta = 1e3 times this, w_l = 1). It is
    ``4 E_l / N^2`` in the report's terms."""
    return GATYS.style(features, target_gram)


class Targets(NamedTuple):
    """What the output must match: P per content layer, A per style layer;
    with regions (`nst.io.regions`), A_r per region and the regions' masks at
    each style layer, (batch, regions, height, width); for a video frame
    (`nst.modes.video`), the previous output warped onto it, the consistency c
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
    """`Objective.targets` of ``config``: the targets of one content and one style image."""
    return Objective.of(config).targets(content, style)


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


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a run minimises, built once per run (`of`) and used by `Problem`,
    `TiledProblem` (`nst.core.tiles`) and the targets (`nst.core.targets`):
    the loss form (its statistics, terms, targets and TV; W2's style terms
    where the settings ask) and the style layers its terms are named after.
    The weights and targets (with their regions' masks) are its inputs, per
    batch element: a run holds them in variables, so that a live run changes
    them between two steps without compiling again. The terms are weighed
    here only (`weighed`, `combine`), for whole images and tiles alike."""

    form: LossForm
    style_layers: tuple[str, ...]

    @classmethod
    def of(cls, config: Config) -> Objective:
        """``config``'s objective."""
        return cls(form_of(config), tuple(config.style_layers))

    def __call__(
        self, image: tf.Tensor, features: Features, targets: Targets, weights: Weights
    ) -> dict[str, tf.Tensor]:
        """Every term of the total loss, per batch element (see `combine`),
        from the features of the whole image."""
        form = self.form
        sums = [form.content_sums(f, p) for f, p in zip(features.content, targets.content)]
        grams = style_grams([form.statistics(f) for f in features.style], targets.masks)
        positions = [_positions(f) for f in features.style]
        return self.combine(
            image, self.content_term(sums, targets), self.style_terms(grams, positions, targets), targets, weights
        )

    def targets(self, content: Features, style: Features) -> Targets:
        """Content targets from the content image's features, Gram targets
        from the style image's, sized for an output the size of the content
        image (whole images, one style; `nst.core.targets` makes every other kind)."""
        positions = [int(f.shape[1]) * int(f.shape[2]) for f in content.style]
        return Targets(
            content=[tf.constant(f) for f in content.content],
            style=[self.form.prepare(self.form.style_target(f, m)) for f, m in zip(style.style, positions)],
        )

    def content_term(self, sums: Sequence[tf.Tensor], targets: Targets) -> tf.Tensor | float:
        """The content term from each content layer's `LossForm.content_sums`
        over the whole image (tiles add theirs up): their form's terms' mean
        over the content layers."""
        terms = [
            self.form.content_of(s, p.shape[-1], int(p.shape[1]) * int(p.shape[2]))
            for s, p in zip(sums, targets.content)
        ]
        return tf.add_n(terms) / len(terms) if terms else 0.0

    def style_terms(
        self, grams: Sequence[tf.Tensor], positions: Sequence[tf.Tensor | int], targets: Targets
    ) -> list[tf.Tensor]:
        """Each style layer's E_l from the whole image's Gram matrices (summed
        over its M positions; with regions, each region's guided one)."""
        form = self.form
        if targets.masks:
            masses = [tf.reduce_sum(tf.square(m), axis=[2, 3]) for m in targets.masks]
            return [form.guided_style(g, a, mass, m) for g, a, mass, m in zip(grams, targets.style, masses, positions)]
        return [form.style_of(g, a, g.shape[-1], m) for g, a, m in zip(grams, targets.style, positions)]

    @staticmethod
    def weighed(content: tf.Tensor | float, style: tf.Tensor | float, weights: Weights) -> tf.Tensor:
        """``alpha * content + beta * style`` (``style``: `weighted_style`'s
        sum): the features' terms weighed, for whole images (`combine`) and
        for the gradient of tiles."""
        return weights.content * content + weights.style * style

    def combine(
        self,
        image: tf.Tensor,
        content: tf.Tensor | float,
        style: Sequence[tf.Tensor],
        targets: Targets,
        weights: Weights,
    ) -> dict[str, tf.Tensor]:
        """The objective: the weighted total of the content term, the style
        terms E_l, the total variation and, for a video frame, the temporal
        term.

        Keys: 'total', 'content' (mean over content layers), 'style'
        (``sum_l w_l E_l``), 'tv' (always computed; weighted by gamma in the
        total), 'style/<layer>' (each unweighted E_l) and, for a video frame,
        'temporal' (`temporal_loss`, unweighted)."""
        weights = Weights(*(tf.cast(w, image.dtype) for w in weights))
        zero = tf.zeros(tf.shape(image)[:1], image.dtype)
        content = content + zero
        terms = {f"style/{layer}": e for layer, e in zip(self.style_layers, style)}
        style_term = weighted_style(style, weights) + zero
        tv = self.form.tv(image)
        total = self.weighed(content, style_term, weights) + weights.tv * tv
        if targets.temporal:
            total += temporal_term(image, targets.temporal, terms)
        return {"total": total, "content": content, "style": style_term, "tv": tv, **terms}


def objective(
    image: tf.Tensor, features: Features, targets: Targets, config: Config, weights: Weights | None = None
) -> dict[str, tf.Tensor]:
    """`Objective` of ``config`` at ``image``: every term of the total loss,
    per batch element. The weights are ``config``'s unless ``weights`` gives
    them per batch element."""
    return Objective.of(config)(image, features, targets, weights or Weights.of([config]))


def style_grams(statistics: Sequence[tf.Tensor], masks: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """The Gram matrix of each style layer's `LossForm.statistics`, summed
    over the positions given; with regions (``masks``), each region's guided one."""
    return [guided_gram(f, m) for f, m in zip(statistics, masks)] if masks else [gram_matrix(f) for f in statistics]


def weighted_style(terms: Sequence[tf.Tensor], weights: Weights) -> tf.Tensor | float:
    """The style term, ``sum_l w_l E_l``."""
    return tf.add_n([weights.layers[:, i] * e for i, e in enumerate(terms)]) if terms else 0.0


def temporal_term(image: tf.Tensor, temporal: Sequence[tf.Tensor], terms: dict[str, tf.Tensor]) -> tf.Tensor:
    """The weighted temporal loss of a video frame (`Targets.temporal`);
    records the unweighted one in ``terms`` as 'temporal'."""
    previous, consistency, weight = temporal
    terms["temporal"] = temporal_loss(image, tf.cast(previous, image.dtype), tf.cast(consistency, image.dtype))
    return tf.cast(weight, image.dtype) * terms["temporal"]
