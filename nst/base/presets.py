"""The presets: named starting settings, as data.

Each is a description and the `nst.base.config.Config` settings that differ from
its defaults; `nst.base.config.preset` turns one into a Config. Nothing here
imports anything heavy (the command line lists them before TensorFlow loads).
"""

from __future__ import annotations

from typing import Any

from nst.base.geometry import PAPER_STYLE_LAYERS

#: The scale-free preset's alpha and gamma (its beta is 1). crowsonkb's are
#: 0.015 and 2 on torchvision's VGG19, whose inputs are about 1/58 of Keras'
#: (0-1 divided by ImageNet's deviation, against 0-255). Content terms scale
#: with the features and W2 with their square, which would make alpha 0.87,
#: but at 181 px (8-bit weights, Tuebingen and The Starry Night) that lost
#: the photo, 40 kept little of the painting, and 10 had both (checked by
#: eye). gamma is 2 x 58^2: about 1% of the objective there.
SCALE_FREE_CONTENT_WEIGHT, SCALE_FREE_TV_WEIGHT = 10.0, 6.7e3

PRESETS: dict[str, dict[str, Any]] = {
    "report": {
        "description": "The report / Gatys et al. 2016: content block4_conv2, style block1-5_conv1, alpha/beta 1e-3, Adam.",
        "settings": {},
    },
    "gatys": {
        "description": "The paper's network and balance, as in the authors' code: VGG19 normalised over the "
        "sample images, Gram matrices and errors averaged, each style term divided by N_l^2 (loss form 'gatys'), "
        "alpha/beta 1e-3, L-BFGS, 500 evaluations.",
        "settings": {
            "normalize": "samples",
            # leongatys/PytorchNeuralStyleTransfer: style weights 1e3 / N_l^2
            # on MSE(G / M, A / M), content weight 1 on MSE(F, P).
            "loss_form": "gatys",
            "style_layer_weights": (1.0,) * len(PAPER_STYLE_LAYERS),
            "style_weight": 1e3,
            "optimizer": "lbfgs",
            "steps": 500,
        },
    },
    "blocks1-3": {
        "description": "The report's losses on VGG19 blocks 1-3 only (content block3_conv2, style "
        "block1-3_conv1, beta 1e4): works with the partial block 1-3 weights file.",
        "settings": {
            "content_layers": ("block3_conv2",),
            "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1"),
            # Checked by eye at 256 px, 300 steps, real weights: beta 1e3 (the
            # paper's ratio) stylises only mildly at these layers, 1e4 fully.
            "style_weight": 1e4,
        },
    },
    "tutorial": {
        "description": "The TensorFlow tutorial: content block5_conv2, style block1-5_conv1, its own loss "
        "normalisation, content 1e4, style 1e-2, TV 30, Adam lr 0.02, beta_1 0.99, eps 0.1, 1000 steps.",
        "settings": {
            "content_layers": ("block5_conv2",),
            "content_weight": 1e4,
            "style_weight": 1e-2,
            "tv_weight": 30.0,
            "loss_form": "tutorial",
            "learning_rate": 0.02,
            "beta_1": 0.99,
            "epsilon": 0.1,
            "steps": 1000,
        },
    },
    "scale-free": {
        "description": "crowsonkb/style-transfer-pytorch's recipe, whose weights hold at every size: each term "
        "sum d^2 / sum |d| (loss form 'scaled'), Wasserstein-2 style statistics, style layers weighted "
        "256:64:16:4:1, coarse to fine from 128 px by factors of sqrt(2) with Adam carried across, the output "
        "the average of the iterates (decay 0.99), replicate padding.",
        "settings": {
            "loss_form": "scaled",
            "style_loss": "w2",
            "style_layer_weights": tuple(w / 341 for w in (256, 64, 16, 4, 1)),
            "content_weight": SCALE_FREE_CONTENT_WEIGHT,
            "style_weight": 1.0,
            "tv_weight": SCALE_FREE_TV_WEIGHT,
            "scales": "auto",
            "scale_warm_start": True,
            "ema": 0.99,
            "padding": "replicate",
            "steps": 500,
        },
    },
}
