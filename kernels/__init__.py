"""Triton kernels of `scaling`, installed as the sub-package ``scaling.kernels``.

This folder sits at the repository root (the project's layout) but is packaged by setuptools'
``package-dir`` mapping as ``scaling.kernels``: no top-level ``kernels`` module is installed, so the
unrelated ``kernels`` distribution that transformers probes for is never shadowed. Import from
``scaling.kernels``, never from ``kernels``. This module deliberately defines no ``__version__``:
even when the repository root itself is on ``sys.path``, transformers' probe sees a package
without a version and treats the ``kernels`` distribution as absent.
"""
