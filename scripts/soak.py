"""Soak test: a long RL run on the tiny model (Ray actors) with failures injected all along, which must
end on its own with every step done once, the prompt stream where an undisturbed run leaves it, and no
process left behind.

Injected (scripts/soak_plugins.py): a verifier that raises on ~5% of completions and hangs past the
timeout on ~0.5%; a reward that raises on ~10% of its calls (weight 0.1, so a raise drops the rows of
that call); one rollout-worker kill (Ray restarts it) and one learner kill (the run resumes from its
last checkpoint). Run from the repository root:

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python scripts/soak.py                 # 100 steps
    python scripts/soak.py --steps 30 --kill-rollout 10 --kill-learner 20     # a quick one

Writes <out>/soak.json and prints a table; exits 1 if any check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE / "bench"))

PLUGINS = HERE / "soak_plugins.py"


def overrides(args: argparse.Namespace, out: Path) -> list[str]:
    p = PLUGINS
    return [
        f"run.output_dir={out / 'run'}", "cluster.mode=ray", f"train.steps={args.steps}", f"train.save_every={args.save_every}",
        "train.eval_before=false", "train.eval_every=0", "log.progress=false", f"verify.timeout_s={args.verify_timeout}",
        f"verify.verifiers=[{{name: flaky, fn: '{p}:flaky_verifier', kwargs: {{fail: {args.verify_fail}, hang: {args.verify_hang}}}}}]",
        "rewards=[{name: correctness, kwargs: {verifier: flaky}}, "
        f"{{name: digits, fn: '{p}:flaky_reward', weight: 0.1, kwargs: {{p: {args.reward_fail}}}}}]",
        "callbacks=["
        f"{{name: stream, fn: '{p}:record_stream', kwargs: {{path: '{out / 'stream.jsonl'}'}}}}, "
        f"{{name: kill_rollout, fn: '{p}:kill_rollout', kwargs: {{at: {args.kill_rollout}, wait: false}}}}, "
        f"{{name: kill_learner, fn: '{p}:kill_learner', kwargs: {{at: {args.kill_learner}, marker: '{out / 'learner_killed'}'}}}}]",
        *args.set,
    ]


def descendants() -> list[str]:
    """This process's living children, but multiprocessing's resource tracker (one per Python process
    that ever spawned: it ends with its parent)."""
    import psutil

    out = []
    for c in psutil.Process().children(recursive=True):
        cmd = " ".join(c.cmdline()) if c.is_running() else ""
        if cmd and "multiprocessing.resource_tracker" not in cmd:
            out.append(f"{c.pid} {cmd[:80]}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="quickstart")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--kill-rollout", type=int, default=30, help="kill the rollout worker after this step")
    p.add_argument("--kill-learner", type=int, default=65, help="kill the learner after this step")
    p.add_argument("--verify-fail", type=float, default=0.05)
    p.add_argument("--verify-hang", type=float, default=0.005)
    p.add_argument("--verify-timeout", type=float, default=2.0)
    p.add_argument("--reward-fail", type=float, default=0.1)
    p.add_argument("--out", default=str(REPO / "runs" / "soak"))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides (key=value)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("stream.jsonl", "learner_killed"):
        (out / stale).unlink(missing_ok=True)

    import ray

    from common import loadavg, machine_info, print_table, write_json
    from rlpost.config import load_config
    from rlpost.controller import train

    load, t0 = loadavg(), time.time()
    cfg = load_config(args.recipe, overrides(args, out))
    state = train(cfg, resume=False)
    wall = time.time() - t0
    ray.shutdown()
    time.sleep(2)  # let Ray's processes exit
    left = descendants()

    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    stream = {}
    for line in (out / "stream.jsonl").read_text().splitlines():
        r = json.loads(line)
        stream[r["step"]] = r  # a step redone after the learner's restart: the last record counts
    per = cfg.train.prompts_per_step
    # where the stream must be after each step: the same position an undisturbed run reaches
    expected = {s: divmod((s + 1) * per, next(iter(stream.values()))["num_records"]) for s in range(args.steps)}
    misplaced = [s for s, (epoch, pos) in expected.items() if (stream.get(s, {}).get("epoch"), stream.get(s, {}).get("position")) != (epoch, pos)]
    total = lambda key: sum(r.get(key, 0.0) or 0.0 for r in rows)  # noqa: E731
    result = {
        "steps": state["step"], "logged_steps": [r["step"] for r in rows] == list(range(args.steps)),
        "stream_ok": not misplaced, "misplaced_steps": misplaced, "leaked_processes": left,
        "rollout_restarts": rows[-1].get("failures/rollout_restarts"), "learner_restarts": rows[-1].get("failures/learner_restarts"),
        "verifier_errors": total("verify/errors/flaky"), "verifier_timeouts": total("verify/timeouts/flaky"),
        "reward_raises": total("reward/raised/digits"), "rows_dropped": total("reward/dropped"),
        "completions": rows[-1]["rollout/total"], "wall_s": wall, "final_accuracy": state["evals"].get("after", {}).get("greedy_accuracy"),
    }
    checks = {
        "every step done": result["steps"] == args.steps and result["logged_steps"],
        "prompt stream as undisturbed": result["stream_ok"],
        "no process left": not left,
        "rollout worker restarted once": result["rollout_restarts"] == 1.0,
        "learner replaced once": result["learner_restarts"] == 1.0,
    }
    print_table(f"soak: {args.steps} steps, {wall:.0f} s", [{"check": k, "ok": v} for k, v in checks.items()], ["check", "ok"])
    print_table("injected and survived", [{k: v for k, v in result.items() if not isinstance(v, (list, bool))}], [
        k for k, v in result.items() if not isinstance(v, (list, bool))])
    write_json(out / "soak.json", {"args": vars(args), "result": result, "checks": checks, "machine": machine_info(load, threads=1)})
    print(f"wrote {out / 'soak.json'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
