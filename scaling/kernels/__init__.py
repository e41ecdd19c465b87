"""``scaling.kernels``: the project's Triton kernels (kernel + launcher + autograd Function + reference).

Their sources live in the repository's top-level ``kernels/`` folder, as the project's layout asks. That
folder deliberately has **no** ``__init__.py``: it is never a regular top-level package, so when the
repository root is first on ``sys.path`` (``python -m ...``, ``python -c``, a notebook started there) the
unrelated ``kernels`` distribution that transformers imports (``transformers/integrations/hub_kernels.py``)
is still the one found, because a regular package anywhere on ``sys.path`` wins over a folder without
``__init__.py``.

How ``scaling.kernels.<op>`` resolves:

- a checkout (on ``PYTHONPATH`` or as an editable install): this package appends ``<repo>/kernels`` to its
  search path below;
- a wheel / plain install: setuptools' ``package-dir`` mapping (``pyproject.toml``) copies the kernel
  modules into ``scaling/kernels/`` itself.

Always import them as ``scaling.kernels.<op>``, never as ``kernels.<op>``.
"""

import os as _os

_SOURCES = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))), "kernels")
if _os.path.isfile(_os.path.join(_SOURCES, "dispatch.py")) and _SOURCES not in __path__:
    __path__.append(_SOURCES)  # noqa: F821 - the package's own search path
