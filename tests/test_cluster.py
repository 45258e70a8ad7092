"""A two-node Ray cluster on one machine (`ray start --head` and a second `ray start --address`, each with
its own resources and temp dir), a run with two rollout workers submitted to it as a Ray job with
`rlpost submit` (a 2-rank gloo learner group, one-step-off rollouts), and a recipe asking for more than the cluster has refused in one line. The test
stops the cluster by ending the `ray start --block` processes it started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rlpost.submit import submit
from test_controller import PLUGIN, SMALL, metrics

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not up within {timeout_s:g} s")
        time.sleep(1)


def nodes_alive(gcs: str, env: dict) -> int:
    out = subprocess.run([RAY, "status", f"--address={gcs}"], capture_output=True, text=True, env=env).stdout
    active = out.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(line.strip().startswith("1 node_") for line in active.splitlines())


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def two_nodes():
    """The job server address of a head (2 CPUs) and a worker node (2 CPUs); both stopped after the test."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port, dash = free_port(), free_port()
    gcs = f"127.0.0.1:{port}"
    procs = []
    try:
        # each node's dashboard agent on a free port: Ray's default (52365) is taken by any other cluster on this machine,
        # and a head whose agent cannot bind it refuses every job ("No available agent to submit job")
        head = [RAY, "start", "--head", f"--port={port}", f"--dashboard-port={dash}", "--include-dashboard=true", "--num-cpus=2",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--temp-dir={tempfile.mkdtemp(prefix='rh', dir='/tmp')}", "--block"]
        procs.append(subprocess.Popen(head, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for(lambda: answers(dash), "the head's job server")
        node = [RAY, "start", f"--address={gcs}", "--num-cpus=2", f"--dashboard-agent-listen-port={free_port()}",
                f"--temp-dir={tempfile.mkdtemp(prefix='rn', dir='/tmp')}", "--block"]
        procs.append(subprocess.Popen(node, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        wait_for(lambda: nodes_alive(gcs, env) == 2, "the second node")
        os.environ["RAY_AUTH_MODE"] = "disabled"  # the client side of this cluster
        yield f"http://127.0.0.1:{dash}"
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        for p in reversed(procs):  # `ray start --block` takes its node's processes down with it
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_run_submitted_to_a_two_node_cluster_trains_with_two_workers_and_two_ranks(two_nodes, tmp_path):
    run = tmp_path / "run"
    base = SMALL + ["cluster.mode=ray", "train.parity_check_every=1"]
    check = f"callbacks=[{{name: ranks, fn: '{PLUGIN}:identical_ranks'}}]"
    log: list[str] = []
    rc = submit("quickstart", base + [f"run.output_dir={run}", "cluster.rollout_workers=2", "cluster.learner_ranks=2",
                                      "train.async_rollout=true", "train.steps=4", check],
                address=two_nodes, working_dir=str(REPO), python=sys.executable, echo=log.append)
    assert rc == 0, "\n".join(log[-30:])
    rows = metrics(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and rows[-1]["rollout/total"] == 4 * 4 * 4
    assert [r["test/ranks_identical"] for r in rows] == [2.0] * 4  # the ranks' weights, bitwise, after every step
    assert max(r["sync/parity_max_diff"] for r in rows if "sync/parity_max_diff" in r) < 1e-3  # both workers synced
    gaps = [v for r in rows for k, v in r.items() if k.startswith("learner/logprob_mismatch_worker")]
    assert gaps and max(gaps) < 1.0  # one-step-off: each worker's gap reported, and bounded

    log.clear()  # the cluster has 4 CPUs: a learner and 4 workers do not fit, said in one line, not a hang
    rc = submit("quickstart", base + [f"run.output_dir={tmp_path / 'big'}", "cluster.rollout_workers=4"],
                address=two_nodes, working_dir=str(REPO), python=sys.executable, echo=log.append)
    assert rc == 1 and "the run starts 5 actors" in log[-1] and "has 4 CPUs" in log[-1]


def test_a_submission_waits_for_the_job_servers_agent_then_says_why_in_one_line():
    """A head started moments ago refuses jobs ("No available agent to submit job, please try again later")
    until its agent is up: submit tries again for a while; any other error is raised at once."""
    from rlpost.config import ConfigError
    from rlpost.submit import when_agent_ready

    answers = iter([RuntimeError("Request failed with status code 500: No available agent to submit job, please try again later.")] * 2 + ["job-1"])

    def send():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert when_agent_ready(send, "http://h:8265", wait_s=5, poll_s=0.01) == "job-1"
    with pytest.raises(ConfigError, match="had no agent to take the job for 0.05 s"):
        when_agent_ready(lambda: (_ for _ in ()).throw(RuntimeError("No available agent")), "http://h:8265", wait_s=0.05, poll_s=0.01)
    with pytest.raises(RuntimeError, match="status code 400"):
        when_agent_ready(lambda: (_ for _ in ()).throw(RuntimeError("Request failed with status code 400")), "http://h:8265", wait_s=5)
