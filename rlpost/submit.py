"""`rlpost submit`: send a training run to a running Ray cluster as a Ray job (``ray job submit``).

The recipe is checked here first (a bad key fails in one line, before anything is sent). The job runs
``python -m rlpost.cli train RECIPE OVERRIDES cluster.address=auto`` on the head node, with the
current directory as its working directory (recipes, plug-in files and data paths resolve as they do
for ``rlpost train`` here). rlpost and its dependencies must be installed on every node.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from rlpost.actors import actor_env, check_reachable
from rlpost.config import ConfigError, load_config

DEFAULT_ADDRESS = "http://127.0.0.1:8265"  # the job server `ray start --head` runs beside the dashboard
# Never uploaded with the working directory: environments, run outputs, caches, VCS data.
EXCLUDES = [".venv", "venv", ".git", "runs", "__pycache__", "*.whl", ".whl", "*.gguf", "*.safetensors"]


def job_address(address: str | None) -> str:
    """The job server URL: --address, else RAY_ADDRESS when it is an http(s) URL, else the local head's."""
    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if "://" not in address:
        address = f"http://{address}"
    url = urlparse(address)
    if url.scheme not in ("http", "https") or not url.hostname or not url.port:
        raise ConfigError(f"--address {address}: expected the Ray job server's http://host:port (dashboard port, 8265 by default)")
    check_reachable(f"{url.hostname}:{url.port}", key="--address")
    return address


def entrypoint(recipe: str, overrides: list[str], python: str) -> str:
    cmd = [python, "-m", "rlpost.cli", "train", recipe, *overrides, "cluster.address=auto"]
    return " ".join(shlex.quote(c) for c in cmd)


def submit(recipe: str, overrides: list[str], address: str | None = None, working_dir: str = ".", python: str = "python",
           job_id: str | None = None, wait: bool = True, echo=print) -> int:
    """Submit the run; with ``wait`` stream its log here and return 0 if the job succeeded, else 1."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    cfg = load_config(recipe, overrides)  # a bad recipe fails here, not on the cluster
    if cfg.cluster.mode != "ray":
        raise ConfigError("rlpost submit runs the recipe on a Ray cluster: drop cluster.mode=local")
    if not Path(working_dir).is_dir():
        raise ConfigError(f"--working-dir {working_dir}: not a directory")
    if not Path(cfg.run.output_dir).is_absolute():
        echo(f"note: run.output_dir={cfg.output_dir} is relative: the run writes it under the job's working directory "
             "on the head node; give a path on storage you can read (e.g. a shared filesystem) to keep it")
    url = job_address(address)
    client = JobSubmissionClient(url)
    runtime_env = {"working_dir": str(Path(working_dir).resolve()), "excludes": EXCLUDES, "env_vars": actor_env()}
    job = when_agent_ready(lambda: client.submit_job(entrypoint=entrypoint(recipe, overrides, python), runtime_env=runtime_env,
                                                     submission_id=job_id), url)
    echo(f"submitted job {job} to {url}")
    if not wait:
        echo(f"watch it: ray job logs -f {job} --address {url}; stop it: ray job stop {job} --address {url}")
        return 0
    try:
        asyncio.run(_stream_logs(client, job, echo))
    except KeyboardInterrupt:
        echo(f"stopped watching; the job goes on (ray job stop {job} --address {url} to stop it)")
        return 130
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        time.sleep(0.5)
    if status != JobStatus.SUCCEEDED:
        echo(f"job {job} {status.value.lower()}: {why_failed(client.get_job_logs(job), client.get_job_info(job).message)}")
        return 1
    echo(f"job {job} succeeded")
    return 0


AGENT_WAIT_S = 60.0  # a head started moments ago answers "No available agent to submit job" until its agent is up


def when_agent_ready(send, url: str, wait_s: float = AGENT_WAIT_S, poll_s: float = 1.0):
    """``send()`` (a job submission), tried again while the job server has no agent to take it yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return send()
        except RuntimeError as e:
            if "No available agent" not in str(e):
                raise
            if time.monotonic() > deadline:
                raise ConfigError(f"--address {url}: the Ray job server had no agent to take the job for {wait_s:g} s; "
                                  "is the head node's dashboard agent running (its dashboard_agent.log; another Ray cluster on that machine "
                                  "holding the agent's port, 52365 by default, stops it: `ray start --dashboard-agent-listen-port`)?") from None
            time.sleep(poll_s)


async def _stream_logs(client, job: str, echo) -> None:
    async for lines in client.tail_job_logs(job):
        for line in lines.rstrip("\n").splitlines():
            echo(line)
        sys.stdout.flush()


def why_failed(logs: str, message: str | None) -> str:
    """The run's own one-line error when it printed one, else the end of Ray's message."""
    errors = [line for line in logs.splitlines() if line.startswith("rlpost: error:")]
    return errors[-1] if errors else " ".join((message or "").split())[-400:]
