"""One preflight: what can fail in a job before TensorFlow loads, checked as
its run would meet it. The command line (a still, a sweep, a clip's first
frame), `nst batch` and its cluster driver all check a job here, so a
mistake is named at once, with the file and the fix, and never minutes in.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from nst.base.config import INITS, Config, ConfigError
from nst.core.normalize import stats_images
from nst.io.images import ImageError, check_source, load_image, require_side
from nst.io.jobs import Job, known, listed
from nst.io.weights import check_weights
from nst.run.resources import auto_tile, check_memory

#: An image whose readability is all that matters here (an init image, a PNG to resume) is test-decoded at this size.
CHECK_SIZE = 16


def preflight(
    job: Job, config: Config, *, tile_auto: bool = False, memory: bool = True, name: str | None = None
) -> Config:
    """Check ``job`` with the shared settings ``config`` and return its whole
    `Config`: its own settings known and valid, the style blend, the weights
    file for its layers, the images a normalised network needs, the content
    and each style image (readable, and large enough for the layers at the
    first scale), an init image, the masks (found; their shapes are checked
    when they load), and, with ``memory``, whether the run fits in this
    machine's memory (not where it runs elsewhere: a cluster's workers).
    ``tile_auto``: tile only where the whole image would not fit (the config
    returned says which tile). ``name``: the content's name in errors (a
    clip's first frame)."""
    known(job.settings)
    config = config.replace(**job.settings)
    styles = listed(job.style)
    config.blend(len(styles))
    check_weights(config.weights, config.content_layers + config.style_layers)
    if config.normalize:
        stats_images(config.normalize)
    first = config.schedule[0].size
    content = load_image(job.content, first, config.max_pixels)
    require_side(content, config.min_side, name or job.content)
    height, width = (round(n * config.size / first) for n in content.shape[:2])
    if tile_auto:
        config = config.replace(tile=auto_tile(config, height, width))
    if memory and config.device in ("auto", "cpu"):
        check_memory(config, height, width)
    for style in styles:
        style_size = max(round(first * config.style_scale), 1)
        require_side(load_image(style, style_size, config.max_pixels), config.min_side, style)
    if config.init not in INITS:
        try:
            load_image(config.init, CHECK_SIZE, config.max_pixels)
        except ImageError as e:
            raise ImageError(f"init: {e} (give {', '.join(INITS)} or an image)") from None
    if job.style_masks and job.masks is None:
        raise ConfigError("style_masks go with masks (the regions they fill)")
    for source in [*listed(job.masks), *listed(job.style_masks)]:
        check_source(source)
    return config
