"""The ``cluster`` tests' cluster: real Slurm (munged, slurmctld, two slurmd) and one sshd per node, on this machine.

CI (``.ci/run``) starts it with ``tests/cluster/up.sh`` before the tests and exports ``SCALING_CLUSTER_DIR``; the
tests then use that one (and fail, rather than skip, when it does not answer). Without it, the session starts
its own when the software is installed and this is root, and stops every daemon by its pid at the end (also
when a test failed). Otherwise the tests skip, saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sshd", "pdsh")
INSTALL = "apt-get install -y slurm-wlm munge openssh-server pdsh"
NODES = ("scnode1", "scnode2")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")


def _env_of(cluster_dir: str) -> dict[str, str]:
    env = {}
    with open(os.path.join(cluster_dir, "env.sh")) as fh:
        for line in fh:
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


class Cluster:
    """Where the daemons live, and the environment that reaches them (SLURM_CONF, the ssh wrapper on PATH)."""

    def __init__(self, directory: str):
        self.dir = directory
        self.env = _env_of(directory)
        self.nodes = NODES

    def environ(self, **extra) -> dict[str, str]:
        env = dict(os.environ, **self.env)
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    given = os.environ.get("SCALING_CLUSTER_DIR")
    if given:  # started by .ci/run: it must work
        c = Cluster(given)
        done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=c.environ(), capture_output=True, text=True)
        assert done.returncode == 0, f"SCALING_CLUSTER_DIR={given}, but sinfo fails: {done.stderr}"
        yield c
        return
    missing = [t for t in TOOLS if _which(t) is None]
    if missing:
        pytest.skip(f"cluster software not installed ({', '.join(missing)} missing): {INSTALL}")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd and sshd needs root (or start them with tests/cluster/up.sh and export "
                    "SCALING_CLUSTER_DIR)")
    directory = str(tmp_path_factory.mktemp("cluster"))
    up = subprocess.run(["bash", os.path.join(HERE, "up.sh"), directory], capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, f"tests/cluster/up.sh failed:\n{up.stdout}\n{up.stderr}"
        yield Cluster(directory)
    finally:
        subprocess.run(["bash", os.path.join(HERE, "down.sh"), directory], capture_output=True, timeout=120)
