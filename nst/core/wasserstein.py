"""The Wasserstein-2 style loss (crowsonkb/style-transfer-pytorch's later
one): each style layer's features are fitted by a Gaussian, their mean and
covariance over positions, and compared with the style's by the squared W2
distance between the two Gaussians. Where a Gram matrix mixes the mean with
the spread, these keep colour and contrast apart.

The moments are sums over positions (`moment_features`), like a Gram
matrix, so the loss forms (`nst.core.losses.form_of`), tiles and regions take
it as they take Gram matrices.
"""

from __future__ import annotations

from nst.base.backend import tf

#: The Wasserstein-2 style loss (`w2_style`) adds ``W2_EPSILON * I`` to the
#: covariances: activations are on Keras' 0-255 scale, whose covariances
#: reach 1e4-1e7, and this keeps them invertible where a layer has more
#: channels than positions.
W2_EPSILON = 1.0


def root_trace(a: tf.Tensor) -> tf.Tensor:
    """``tr(A^1/2)`` of symmetric positive semi-definite matrices (..., N, N):
    the sum of the square roots of their eigenvalues, by an eigendecomposition.

    On a CPU this is faster than the Newton-Schulz iterations that reach
    SciPy's ``sqrtm`` to 0.1% (in float32 they cannot: the products of two
    covariances reach a condition number of 1e9, and rounding gives them
    negative eigenvalues that the iterations blow up); XLA's
    eigendecomposition is far slower on a CPU, so W2 runs there on
    TensorFlow's kernels (`nst.core.execution`; BENCHMARKS.md, "Numbers behind the code's choices")."""
    return tf.reduce_sum(tf.sqrt(tf.maximum(tf.linalg.eigh(a)[0], 1e-30)), axis=-1)


def root(a: tf.Tensor) -> tf.Tensor:
    """``A^1/2`` of symmetric positive semi-definite matrices, by an eigendecomposition."""
    values, vectors = tf.linalg.eigh(a)
    return vectors * tf.sqrt(tf.maximum(values, 0.0))[..., None, :] @ tf.linalg.adjoint(vectors)


def moment_features(features: tf.Tensor) -> tf.Tensor:
    """``features`` with a channel of ones after the last: its Gram matrix
    summed over positions is then ``[[sum F F^T, sum F], [sum F^T, M]]``,
    every moment W2 needs, summed over positions (so tiles add them up and
    regions weigh them by their masks, as for any Gram matrix)."""
    return tf.concat([features, tf.ones_like(features[..., :1])], axis=-1)


def gaussian(moments: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The mean (..., N) and covariance (..., N, N), plus `W2_EPSILON` I, of
    moments made by `moment_features` divided by their mass (the corner)."""
    n = moments.shape[-1] - 1
    mean = moments[..., :n, n]
    covariance = moments[..., :n, :n] - mean[..., :, None] * mean[..., None, :]
    return mean, covariance + W2_EPSILON * tf.eye(n, dtype=moments.dtype)


def prepared_target(moments: tf.Tensor) -> tf.Tensor:
    """The style's moments (`moment_features`' Gram matrix divided by its
    mass, blended if need be) made ready for `w2_style`, once per run: the
    covariance block replaced by the covariance's square root, taken here
    in float64 since the target is a constant. The mean stays in the last
    column; ``tr(S_s)`` is the root's squared Frobenius norm."""
    mean, covariance = gaussian(tf.cast(moments, tf.float64))
    top = tf.concat([root(covariance), mean[..., :, None]], axis=-1)
    bottom = tf.concat([mean[..., None, :], tf.ones_like(mean[..., :1])[..., None, :]], axis=-1)
    return tf.cast(tf.concat([top, bottom], axis=-2), moments.dtype)


def w2_style(gram: tf.Tensor, target: tf.Tensor, n: int, m: tf.Tensor | int) -> tf.Tensor:
    """The Wasserstein-2 style term (crowsonkb/style-transfer-pytorch's
    later loss) from `moment_features`' Gram matrix ``gram`` summed over M
    positions (or a region's mass) and the style's `prepared_target`: with
    the means mu and covariances Sigma (`gaussian`),
    ``(|mu_x - mu_s|^2 + tr(S_x + S_s - 2 (S_s^1/2 S_x S_s^1/2)^1/2)) / N``,
    the squared W2 distance between the two Gaussians per channel. (``n``,
    the form's N, counts the ones channel: N is one less.) The square roots
    are taken by eigendecompositions in float64 (`root_trace`)."""
    # In float64: the covariances' products reach condition numbers of 1e9.
    mean, covariance = gaussian(tf.cast(gram / tf.cast(m, gram.dtype)[..., None, None], tf.float64))
    k = gram.shape[-1] - 1
    target = tf.cast(target, tf.float64)
    target_root, target_mean = target[..., :k, :k], target[..., :k, k]
    cross = root_trace(target_root @ covariance @ target_root)
    traces = tf.linalg.trace(covariance) + tf.reduce_sum(tf.square(target_root), axis=[-2, -1])
    w2 = tf.reduce_sum(tf.square(mean - target_mean), axis=-1) + traces - 2.0 * cross
    return tf.cast(w2, gram.dtype) / float(k)
