"""Low shared pieces that every package may import (it imports no other ``scaling`` package).

* ``media`` — :class:`~scaling.common.media.MediaSpec`: what an encoder expects as input (the models
  build it, the data pipeline reads it).
"""
