"""Rank and world size from every launcher's environment (torchrun/accelerate/deepspeed, srun, none)."""

from scaling.training.distributed import DistEnv, read_env


def test_torchrun_accelerate_and_deepspeed_variables_win():
    env = {"RANK": "5", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0",
           "SLURM_STEP_NUM_TASKS": "2"}
    assert read_env(env) == DistEnv(5, 16, 1, "torch")


def test_srun_one_task_per_gpu():
    env = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "11", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "3", "SLURM_NTASKS": "16"}
    assert read_env(env) == DistEnv(11, 16, 3, "slurm")


def test_the_batch_shell_of_a_multi_task_allocation_is_one_process():
    # `python -m scaling train` typed in the sbatch script (no job step): not rank 0 of 16
    assert read_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_LOCALID": "0"}) == DistEnv()
    # srun with one task per node (the torchrun layout) without torchrun's variables: one process
    assert read_env({"SLURM_STEP_ID": "1", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) == DistEnv()


def test_nothing_is_a_single_process():
    assert read_env({}) == DistEnv(0, 1, 0, "single")
