"""``scaling train``: train the interface of a config (CPU, one GPU, DDP or DeepSpeed; resumable).

    scaling train --config configs/coco_depalm.yaml [key=value ...]
    torchrun --nproc_per_node 8 -m scaling train --config ... train.deepspeed=ds_configs/zero2_bf16.json
    deepspeed --no_local_rank --hostfile HOSTFILE --module scaling train --config ...
    sbatch launch/slurm_train.sbatch          (srun + torchrun on every node; requeued on preemption)

Rank and world size come from the launcher's environment. ``--check`` validates the config for the
world size of the environment (or ``--world-size N``), prints the batch geometry (micro × accumulation ×
world = global) and whether it would resume ``train.output_dir`` (refusing a checkpoint of another world size
or strategy), and exits before loading any model.
Exit codes: 0 done, 2 configuration problem, 124 (``train.requeue_exit_code``) checkpointed after
SIGTERM/SIGUSR1 and should be requeued, 3 stopped after train.max_skipped_in_a_row optimizer steps in a row
skipped for non-finite gradients (diverged: the message says what to change), 130 Ctrl-C (the first one checkpoints at the end of the current step;
rerun the same command to resume; a second Ctrl-C aborts at once). The end-of-run summary (steps, samples,
time, losses, best checkpoint, skipped samples/steps, next commands) goes to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train (or resume) the interface of a config", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", "-c", metavar="YAML", help="experiment config (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=4e-4 model.frozen_dtype=fp16")
    p.add_argument("--check", action="store_true", help="validate config, batch geometry, precision and DeepSpeed JSON; load nothing")
    p.add_argument("--world-size", type=int, default=None, help="with --check: validate for this many ranks")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--json", action="store_true", help="with --check: print the result as JSON on stdout")
    from scaling.cli.plan import add_arguments

    add_arguments(p.add_argument_group("with --check: the memory/time plan of `scaling plan` (on a CUDA machine for "
                                       "its GPU, elsewhere when --gpu or --gpu-mem is given)"), with_config=False)
    p.set_defaults(func=run)


def _evaluate_fn(cfg):
    """The evaluation hook ``scaling.evaluation.hook.build_evaluate_fn(cfg)``, where it applies.

    Not for a synthetic source without references (scaling.data.sources) or a shape-name LLM (no
    tokenizer): the hook reads real shards and decodes text. Validation loss and samples are logged either way.
    """
    from scaling.data.sources import source_for
    from scaling.models.shapes import LLM_SHAPES

    source = source_for(cfg.data.val)
    if (source is not None and not source.references) or cfg.model.llm in LLM_SHAPES:
        return None
    try:
        from scaling.evaluation.hook import build_evaluate_fn
    except ImportError:
        return None
    return build_evaluate_fn(cfg)


def _memory_plan(cfg, args, world: int, device: str) -> dict:
    """`scaling plan`'s table on stderr (for the --gpu given, else this machine's GPU), its summary for the JSON."""
    from scaling.cli.plan import plan_for

    if not (args.gpu or args.gpu_mem) and device == "cuda":
        import torch

        from scaling.plan.gpus import match_gpu

        args.gpu, args.gpu_mem, args.peak_tflops, args.gpu_arch = match_gpu(torch.cuda.get_device_name(),
                                                                            torch.cuda.get_device_properties(0))
    if not (args.gpu or args.gpu_mem):
        print("memory plan: add --gpu v100-32 (or a100-80, h100-80, ..., --gpu-mem GB --peak-tflops N) for the table of "
              "`scaling plan`", file=sys.stderr)
        return {}
    args.gpus_per_node = min(args.gpus_per_node, world)
    args.nodes = -(-world // args.gpus_per_node)
    from scaling.plan.render import render

    result = plan_for(cfg, args.config, args)
    print(render(result), file=sys.stderr)
    rec, own = result["recommendation"], result["as_written"]
    return {"memory_plan": {"gpu": result["gpu"]["name"], "as_written_fits": own["fits"], "as_written_peak": own["memory"]["peak"],
                            "reason": own["reason"], "recommendation": rec["label"] if rec else None,
                            "launch": rec["launch"] if rec else None}}


def run(args) -> int:
    import yaml

    from scaling.config import load_config, to_dict
    from scaling.config.base import ConfigError

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    if args.check:
        import torch

        from scaling.training import distributed, validate

        env = distributed.read_env()
        world = args.world_size or env.world_size
        device = "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"
        from scaling.training import resume_check

        plan = validate.plan_run(cfg, world, device)
        problem = resume_check.resume_problem(cfg, plan)
        if problem:
            raise ConfigError(problem)
        found, _ = resume_check.latest_state(cfg.train.output_dir) if cfg.train.resume == "auto" else (None, None)
        geometry = (f"micro batch {cfg.train.micro_batch} × accumulation {plan.accumulation} × world {plan.world_size} "
                    f"= global batch {cfg.train.global_batch}")
        print(f"batch geometry: {geometry}; output {cfg.train.output_dir}"
              + (f" (resumes {found})" if found else ""), file=sys.stderr)
        result = {
            "world_size": plan.world_size, "global_batch": cfg.train.global_batch, "micro_batch": cfg.train.micro_batch,
            "accumulation": plan.accumulation, "batch_geometry": geometry, "precision": plan.precision,
            "device": plan.device_type, "zero_stage": plan.zero_stage if plan.deepspeed else None,
            "deepspeed": plan.deepspeed, "output_dir": cfg.train.output_dir, "resumes": found, "notes": plan.notes,
            **_memory_plan(cfg, args, world, device),
        }
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        print(f"config OK for {plan.world_size} rank(s) on {plan.device_type}: {geometry}; precision {plan.precision}"
              + (f", DeepSpeed ZeRO-{plan.zero_stage}" if plan.deepspeed else "")
              + f"; output {cfg.train.output_dir}" + (f" (resumes {found})" if found else ""))
        for note in plan.notes:
            print(f"  note: {note}")
        mem = result.get("memory_plan")
        if mem:
            print(f"  memory plan on {mem['gpu']}: as written {'fits' if mem['as_written_fits'] else 'does not fit'}"
                  + (f"; recommended: {mem['recommendation']}" if mem.get("recommendation") else ""))
        print("(--json prints this as JSON)")
        return 0

    import faulthandler

    from scaling.training import distributed
    from scaling.training.loop import train

    # a rank killed by a fatal signal (SIGABRT from a C++ library, SIGSEGV) prints every thread's Python stack
    # first: under a launcher the death is otherwise a bare "exitcode -6" with no cause
    try:  # (the process's own stderr: an in-process caller may have replaced sys.stderr with a file-less stream)
        faulthandler.enable(file=sys.__stderr__, all_threads=True)
    except (AttributeError, ValueError, OSError):  # no usable stderr (closed, or none): run without it
        pass
    try:
        result = train(cfg, evaluate_fn=_evaluate_fn(cfg))
    except BaseException:
        distributed.shutdown(clean=False)
        raise
    distributed.shutdown()
    if result.preempted and not result.interrupted:
        print(f"checkpointed at step {result.state.step} after a preemption signal; exit {result.exit_code} "
              f"(requeue: the job resumes from {result.output_dir}/checkpoints/latest)", file=sys.stderr)
    if result.summary is not None:  # rank 0
        from scaling.cli.summary import train_block

        print(train_block(result, cfg), flush=True)
    return result.exit_code
