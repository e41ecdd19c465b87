"""scaling: give frozen LLMs perception by training a tiny interface (eP-ALM, DePALM)."""

__version__ = "0.1.0"

