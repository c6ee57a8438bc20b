"""Input checks shared by every backbone module (run at trace time: shapes are static)."""

from __future__ import annotations


def check_input(x, name: str, size: int | None, channels: int = 3) -> None:
    """Raises ``ValueError`` unless ``x`` is an NHWC batch the backbone accepts.

    Args:
      x: the input array (anything with ``.shape``).
      name: backbone name, for the message.
      size: required square resolution, or ``None`` when any size works.
      channels: required number of channels.
    """
    shape = tuple(x.shape)
    if len(shape) != 4:
        raise ValueError(
            f"{name} expects a 4-D NHWC batch (batch, height, width, {channels}), got shape "
            f"{shape}; add a batch axis with x[None] for a single image"
        )
    if shape[-1] != channels:
        hint = (
            " (this looks like NCHW: transpose with x.transpose(0, 2, 3, 1))"
            if shape[1] == channels
            else ""
        )
        raise ValueError(
            f"{name} expects {channels} channels in the last axis (NHWC), got shape {shape}{hint}"
        )
    if size is not None and shape[1:3] != (size, size):
        raise ValueError(
            f"{name} expects {size}x{size} images, got {shape[1]}x{shape[2]}; resize and "
            f"centre-crop them first (ttame_jax.data.preprocess)"
        )
