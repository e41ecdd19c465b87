"""The project's build backend: setuptools' own (``setuptools.build_meta``), every hook unchanged, with one notice
silenced in ``build_editable``.

Why: ``pyproject.toml`` maps the package ``scaling.kernels`` to the top-level ``kernels/`` folder (the fixed layout,
and the reason ``kernels/`` never shadows the ``kernels`` distribution). With such a mapping, setuptools installs an
editable checkout through an import finder and, at the end of every ``pip install -e .``, prints an "Editable
installation ... Please be careful with folders in your working directory with the same name as your package" block
that ``pip -q`` does not hide. Here the folder of that name *is* the package, so the notice only alarms newcomers.
Only that notice is filtered (by its category and its first line); every other warning still reaches the user.
"""

from __future__ import annotations

import warnings

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 - the PEP 517 hooks, unchanged

try:
    from setuptools.warnings import InformationOnly as _Notice
except ImportError:  # an older setuptools: nothing to filter
    _Notice = None

NOTICE_FIRST_LINE = r"Editable installation\."


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660 ``build_editable`` of setuptools, without its "folders with the same name" notice."""
    with warnings.catch_warnings():
        if _Notice is not None:
            warnings.filterwarnings("ignore", message=NOTICE_FIRST_LINE, category=_Notice)
        return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
