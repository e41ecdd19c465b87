"""scaling: give frozen LLMs perception by training a tiny interface (eP-ALM, DePALM)."""

__version__ = "0.1.0"


def _find_kernels() -> None:
    """``kernels/`` (repository root) is installed as ``scaling.kernels`` by setuptools' package-dir
    mapping. Old-style editable installs (and a checkout on PYTHONPATH) skip that mapping; then the
    repository root is added to this package's search path so ``scaling.kernels`` still resolves.
    No top-level ``kernels`` module is created either way."""
    import importlib.util
    import os

    try:
        if importlib.util.find_spec(__name__ + ".kernels") is not None:
            return
    except (ImportError, ValueError):
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "kernels", "__init__.py")):
        __path__.append(root)  # noqa: F821 - the package's own __path__


_find_kernels()
