"""The GPU machine's image, emulated on this machine: put this folder first on ``PYTHONPATH``.

The image has torch, transformers, triton, accelerate, peft, timm and tensorboard, but not these
(``tests/test_bench_gpu_script.py`` runs ``launch/bench_gpu.sh`` under it). Python imports
``sitecustomize`` at start-up; this one replaces the path finder in ``sys.meta_path`` with one that
does not see the hidden modules or their distributions' metadata, so ``import deepspeed`` raises
``ModuleNotFoundError`` and ``importlib.util.find_spec("kernels")`` / ``importlib.metadata.version``
answer "not installed", as on the image. It also drops an editable install of ``scaling`` (its
finder and metadata): the image has none, the tree runs from its own root.

``SCALING_HIDE`` (comma-separated import names) replaces the default list.
"""

import importlib.machinery
import os
import sys

HIDDEN_MODULES = set(filter(None, os.environ.get(
    "SCALING_HIDE", "deepspeed,webdataset,open_clip,pycocoevalcap,av,soundfile,kernels,liger_kernel,torchao").split(",")))
# distribution names (normalised) whose metadata is hidden too
HIDDEN_DISTS = {m.replace("_", "-") for m in HIDDEN_MODULES} | {"open-clip-torch", "liger-kernel", "scaling"}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


class HidingPathFinder(importlib.machinery.PathFinder):
    """``PathFinder`` that answers None for the hidden top-level modules and leaves their metadata out."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if path is None and fullname.partition(".")[0] in HIDDEN_MODULES:
            return None
        return super().find_spec(fullname, path, target)

    @classmethod
    def find_distributions(cls, *args, **kwargs):
        for dist in super().find_distributions(*args, **kwargs):
            if _norm(dist.metadata["Name"] or "") not in HIDDEN_DISTS:
                yield dist


sys.meta_path[:] = [
    HidingPathFinder if finder is importlib.machinery.PathFinder else finder
    for finder in sys.meta_path
    if "__editable__" not in getattr(finder, "__module__", "") and "__editable__" not in type(finder).__module__
]
for _name in [n for n in sys.modules if n.partition(".")[0] in HIDDEN_MODULES]:
    del sys.modules[_name]
