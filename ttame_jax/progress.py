"""Progress bars: tqdm's when it is installed, otherwise silent.

tqdm is optional (an accelerator image may lack it): training, evaluation and
``explain`` run the same without it, only without bars.
"""

from __future__ import annotations


class _Silent:
    """What the library calls on a tqdm bar, doing nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, text: str = "") -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(**kwargs):
    """``tqdm.auto.tqdm(**kwargs)``, or a silent stand-in when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Silent()
    return tqdm(**kwargs)


def write_line(text: str) -> None:
    """Prints a line without breaking an open bar (``tqdm.write``; ``print`` without tqdm)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(text, flush=True)
        return
    tqdm.write(text)
