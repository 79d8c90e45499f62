"""Training-step time of two checkouts at the same weights, alternating (issue 14's A/B).

    python tools/ab_training_step.py --config CFG --state STATE.pt --make-state 300      # once
    python tools/ab_training_step.py --config CFG --state STATE.pt OLD_CHECKOUT NEW_CHECKOUT

Each checkout is a source tree with its extension built in place (`python setup.py build_ext
--inplace`), e.g. a `git worktree` of an older commit. Every measurement is a fresh process that
imports that checkout's msrcnn_fast, builds CFG's model, loads STATE and runs --steps training
steps (forward, backward, optimizer) at learning rate 0 on the same batches of CFG's training
data, after 8 warm-up steps; the checkouts alternate for --rounds rounds.

Why the weights must be held: two runs that train from the same seed part after the first step
(float rounding), and the mask and MaskIoU heads' work depends on the weights (how many
positive RoIs there are). At learning rate 0 both codes run the same workload: the first
losses printed agree (to float tolerance) and so do the positives per step. conv3x3's filters
kept for unchanged weights are turned off (MSRCNN_CONV3X3_KEEP_FILTERS=0): training's weights
change at every step.

--make-state N trains N steps (lr 0.005) with the checkout this file is in and writes STATE.
Config overrides go after --set (`--set data.root=out/shapes -- OLD NEW`). Prints one line per
run (its weights must not have moved: 0) and the median of each checkout; the malloc setting of
msrcnn_fast.engine.host_memory is used where the checkout has it (as its trainer does).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHES = 20
WARMUP = 8


def measure(root, config, overrides, state, steps, make_state=0):
    """In this process: the checkout `root`'s ms per step (or write `state` after `make_state`
    steps); returns (ms, positives per step, first losses)."""
    sys.path.insert(0, root)
    import torch

    try:
        from msrcnn_fast.engine.host_memory import keep_freed_memory
    except ImportError:  # a checkout from before it: its trainer did not set it either
        keep_freed_memory = None
    if keep_freed_memory is not None:
        keep_freed_memory()
    from msrcnn_fast.engine import build
    from msrcnn_fast.engine.config import load_config
    from msrcnn_fast.model import roi_heads

    positives = []
    heads = roi_heads.MaskScoringRoIHeads
    if hasattr(heads, "positives"):  # counted where the checkout has the method
        original = heads.positives

        def counted(*args, **kwargs):
            out = original(*args, **kwargs)
            positives.append(sum(len(p) for p in out[0]))
            return out

        heads.positives = staticmethod(counted)
    cfg = load_config(config, overrides)
    torch.manual_seed(0)
    dataset = build.build_dataset(cfg, "train", training=True)
    model = build.build_model(cfg, num_classes=dataset.num_classes).train()
    optimizer = build.build_optimizer(cfg, model)
    samples = [dataset[i] for i in range(min(2 * BATCHES, len(dataset)))]

    def step(i):
        a, b = samples[(2 * i) % len(samples)], samples[(2 * i + 1) % len(samples)]
        optimizer.zero_grad()
        total = sum(model([a[0], b[0]], [a[1], b[1]]).values())
        total.backward()
        optimizer.step()
        return total.item()

    if make_state:
        for group in optimizer.param_groups:
            group["lr"] = 0.005
        for i in range(make_state):
            step(i)
        torch.save(model.state_dict(), state)
        return None
    loaded = torch.load(state)
    model.load_state_dict(loaded)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    first = [round(step(i), 5) for i in range(3)]
    for i in range(3, WARMUP):
        step(i)
    positives.clear()
    start = time.perf_counter()
    for i in range(WARMUP, WARMUP + steps):
        step(i)
    ms = (time.perf_counter() - start) / steps * 1e3
    moved = max((p - loaded[n]).abs().max().item() for n, p in model.state_dict().items() if p.is_floating_point())
    return ms, (sum(positives) / len(positives) if positives else float("nan")), moved, first


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--state", required=True, help="the weights both checkouts run (a state dict)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--make-state", type=int, default=0, metavar="N")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("checkouts", nargs="*")
    args = parser.parse_args(argv)
    if args.child:
        ms, positives, moved, first = measure(args.child, args.config, args.set, args.state, args.steps)
        print(f"{ms:.1f} {positives:.1f} {moved:.3g} {first}")
        return 0
    if args.make_state:
        measure(HERE, args.config, args.set, args.state, 0, make_state=args.make_state)
        print(f"wrote {args.state} after {args.make_state} steps")
        return 0
    if not args.checkouts:
        parser.error("checkouts: give one or more source trees to time (or --make-state N)")
    times = {root: [] for root in args.checkouts}
    for _ in range(args.rounds):
        for root in args.checkouts:
            command = [sys.executable, os.path.abspath(__file__), "--child", os.path.abspath(root)]
            command += ["--config", args.config, "--state", args.state, "--steps", str(args.steps), "--set", *args.set]
            # At learning rate 0 the weights do not change, and conv3x3 would keep their
            # transformed filters (as for inference): training cannot, so neither does this.
            env = {**os.environ, "MSRCNN_CONV3X3_KEEP_FILTERS": "0"}
            done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            line = done.stdout.split("\n")[-2]
            ms, positives, moved, first = line.split(" ", 3)
            times[root].append(float(ms))
            print(
                f"{root}: {ms} ms per step, {positives} positives per step, weights moved by {moved}, "
                f"first losses {first}",
                flush=True,
            )
    for root, values in times.items():
        print(f"{root}: median {statistics.median(values):.1f} ms per step over {len(values)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
