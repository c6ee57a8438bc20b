"""The ``ttame`` command line: ``train``, ``evaluate``, ``explain`` and ``sanity``."""
