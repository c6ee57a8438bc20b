"""Interoperability with other T-TAME implementations.

* ``reference``  import the reference implementation's trained PyTorch Lightning
  checkpoints (``.ckpt``) into a workdir that ``ttame_jax.load``, ``evaluate.py`` and
  ``ttame explain`` accept.
"""

from ttame_jax.interop.reference import ReferenceCheckpointError, import_reference

__all__ = ["ReferenceCheckpointError", "import_reference"]
