"""Experiment configs for ``train.py`` (``--config=configs/<name>.py[:smoke]``)."""
