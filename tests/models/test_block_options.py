"""The config's tables of the ``map``/``inject`` options (scaling.config.blocks) agree with the model registries.

The config validates a ``map`` or ``inject`` section without importing the models (the layering); the classes of
``MAPPERS``/``INJECTIONS`` take those options as keyword arguments. A mapper added to one side only fails here.
"""

import pytest

from scaling.config import ConfigError
from scaling.config.blocks import INJECTION_OPTIONS, MAPPER_OPTIONS
from scaling.models.injection import INJECTIONS, build_injection, injection_options
from scaling.models.mapping import MAPPERS, build_mapper, mapper_options


def test_every_mapper_and_its_options_are_in_the_config_table():
    assert list(MAPPER_OPTIONS) == list(MAPPERS)
    for name in MAPPERS:
        assert MAPPER_OPTIONS[name] == mapper_options(name), name


def test_every_injection_and_its_options_are_in_the_config_table():
    assert list(INJECTION_OPTIONS) == list(INJECTIONS)
    for name in INJECTIONS:
        assert INJECTION_OPTIONS[name] == injection_options(name), name


def test_the_builders_refuse_what_the_config_refuses():
    with pytest.raises(ConfigError, match=r"mapper 'qpmapper' has no option 'n_query' \(did you mean 'n_queries'\?\)"):
        build_mapper("qpmapper", {"n_query": 4}, d_in=8, d_out=8, n_levels=1, grid=(2, 2), block=(1, 1), has_cls=True)
    with pytest.raises(ConfigError, match=r"unknown injection 'inners' \(did you mean 'inner'\?\)"):
        build_injection("inners", {}, d_llm=8)
