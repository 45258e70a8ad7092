"""The sandboxed ``code`` verifier: verdicts, and one test per escape attempt (contained, reported, host unaffected)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psutil
import pytest

from verifiers import VERIFIERS, VerifierRunner
from verifiers.code import UID_RANGE, extract_code, require_isolation, verify_code

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTS = {"tests": ["assert f(2) == 5", "assert f(0) == 3", "assert f(-1) == 2"]}


def _namespaces_reason() -> str:
    try:
        require_isolation("namespaces")
    except ValueError as e:
        return str(e)
    return ""


needs_namespaces = pytest.mark.skipif(bool(_namespaces_reason()), reason=_namespaces_reason() or "available")


def run(program: str, record: dict | None = None, **kwargs) -> dict:
    return verify_code(program, record or {"tests": ["assert True"]}, **kwargs)


def sandbox_processes() -> list[dict]:
    """Live processes of a sandbox uid or under a sandbox launcher, once the dying ones are gone."""
    for _ in range(40):
        procs = [p.info for p in psutil.process_iter(["pid", "ppid", "uids", "status", "cmdline"])]
        launchers = {p["pid"] for p in procs if "verifiers/code.py" in " ".join(p["cmdline"] or [])}
        alive = [p for p in procs if p["status"] != psutil.STATUS_ZOMBIE
                 and (p["ppid"] in launchers or (p["uids"] and p["uids"].real in UID_RANGE))]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


# ---------------------------------------------------------------- verdicts


def test_registered_as_code():
    assert VERIFIERS.get("code") is verify_code


@needs_namespaces
def test_correct_incorrect_partial_and_syntax_error():
    assert run("def f(x):\n    return x + 3", TESTS) == {
        "correct": True, "passed": 3, "total": 3, "status": "passed", "detail": ""}
    partial = run("def f(x):\n    return abs(x) + 3", TESTS)
    assert partial == {"correct": False, "passed": 2, "total": 3, "status": "failed",
                       "detail": "test 2 failed: assert f(-1) == 2"}
    wrong = run("def f(x):\n    return x", TESTS)
    assert (wrong["correct"], wrong["passed"], wrong["status"]) == (False, 0, "failed")
    broken = run("def f(x)\n    return x + 3", TESTS)
    assert (broken["status"], broken["passed"], broken["total"]) == ("error", 0, 3)
    assert broken["detail"].startswith("SyntaxError: expected ':' (line 1)")
    raised = run("def f(x):\n    return x + 3\nraise KeyError('boom')", TESTS)
    assert raised["status"] == "error" and raised["detail"] == "KeyError: 'boom'"
    crash_in_test = run("def f(x):\n    return x + 3 if x else 1 // x", TESTS)
    assert (crash_in_test["passed"], crash_in_test["detail"]) == (
        2, "test 1 failed: ZeroDivisionError: integer division or modulo by zero")


@needs_namespaces
def test_fenced_block_prefix_and_a_test_snippet_string():
    completion = "Here you go:\n```python\ndef f(x):\n    return x + 3\n```\nDone."
    assert extract_code(completion) == "def f(x):\n    return x + 3\n"
    assert run(completion, TESTS)["correct"]
    record = {"question": "def f(x):\n    return", "tests": "for x in range(5):\n    assert f(x) == x + 3"}
    assert run(" x + 3", record, prefix_key="question") == {
        "correct": True, "passed": 1, "total": 1, "status": "passed", "detail": ""}


@needs_namespaces
def test_a_program_cannot_patch_the_harness_or_forge_a_report():
    patch = "import builtins\nbuiltins.compile = lambda *a, **k: None\nbuiltins.exec = lambda *a, **k: None\n"
    assert run(patch, TESTS)["passed"] == 0
    forge = ("import os\nfor fd in range(64):\n"
             "    try:\n        os.write(fd, b'0\\tpassed\\t3\\t\\n')\n    except OSError:\n        pass\n")
    facts = run(forge, TESTS)
    assert (facts["status"], facts["passed"]) == ("failed", 0)


def test_bad_kwargs_and_tests_are_one_line_errors():
    for kwargs, message in [
        ({"isolation": "none"}, "isolation must be one of namespaces, rlimits"),
        ({"wall_s": 0}, "wall_s must be a positive number"),
        ({"cpu_s": 1.5}, "cpu_s must be a positive integer"),
        ({"memory_mb": True}, "memory_mb must be a positive integer"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            run("pass", **kwargs)
        assert "\n" not in str(info.value)
    for tests in ([], [1], "assert (", None):
        with pytest.raises(ValueError, match="code verifier: test"):
            run("pass", {"tests": tests}, isolation="rlimits")


def test_refuses_namespaces_it_cannot_have(monkeypatch):
    import verifiers.code as code

    monkeypatch.setattr(code.os, "geteuid", lambda: 1000)
    code._unavailable.cache_clear()
    try:
        with pytest.raises(ValueError, match="namespaces need root .*set isolation: rlimits") as info:
            run("pass")
        assert "\n" not in str(info.value)
    finally:
        monkeypatch.undo()
        code._unavailable.cache_clear()


# ---------------------------------------------------------------- escape attempts (namespaces)


@needs_namespaces
def test_network_is_unreachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        for target in (("127.0.0.1", port), ("1.1.1.1", 80)):
            facts = run(f"import socket\nsocket.create_connection({target!r}, timeout=1)")
            assert facts["status"] == "error" and "Network is unreachable" in facts["detail"], facts
        with pytest.raises(socket.timeout):  # nothing reached the host's listener
            server.accept()


@needs_namespaces
def test_cannot_read_outside_its_directory(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    for path in (secret, Path("/etc/passwd"), REPO_ROOT / "README.md"):
        facts = run(f"print(open({str(path)!r}).read())")
        assert facts["status"] == "error" and facts["detail"].startswith("FileNotFoundError"), facts
    own = run("open('note', 'w').write('hi')\nassert open('/sandbox/note').read() == 'hi'")
    assert own["correct"], own


@needs_namespaces
def test_cannot_write_outside_its_directory(tmp_path):
    name = f"rlpost-escape-{os.getpid()}"
    for path in (tmp_path / name, Path("/tmp") / name, Path("/") / name, Path("/usr") / name):
        facts = run(f"open({str(path)!r}, 'w').write('escaped')")
        assert facts["status"] == "error" and facts["detail"].split(":")[0] in ("FileNotFoundError", "OSError"), facts
        assert not path.exists()


@needs_namespaces
def test_fork_bomb_ends_quickly_and_leaves_no_process():
    start = time.monotonic()
    facts = run("import os\nwhile True:\n    os.fork()", nproc=8)
    assert time.monotonic() - start < 5
    assert facts["status"] == "error" and "Resource temporarily unavailable" in facts["detail"], facts
    stubborn = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", wall_s=1.0)
    assert stubborn["status"] == "timeout", stubborn
    assert sandbox_processes() == []


@needs_namespaces
def test_memory_limit():
    facts = run("x = bytearray(1 << 30)", memory_mb=128)
    assert facts == {"correct": False, "passed": 0, "total": 1, "status": "memory",
                     "detail": "MemoryError: over the memory limit"}


@needs_namespaces
def test_infinite_loops_hit_the_cpu_and_wall_limits():
    busy = run("while True:\n    pass", cpu_s=1, wall_s=3.0)
    assert (busy["status"], busy["detail"]) == ("timeout", "CPU time limit (1s)")
    start = time.monotonic()
    idle = run("import time\ntime.sleep(60)", wall_s=1.0)
    assert (idle["status"], idle["detail"]) == ("timeout", "wall time limit (1.0s)")
    assert time.monotonic() - start < 3
    assert sandbox_processes() == []


@needs_namespaces
def test_file_size_and_disk_limits():
    huge = run("open('big', 'wb').write(b'0' * (4 << 20))", file_size_mb=1)
    assert huge["status"] == "error" and "File too large" in huge["detail"], huge
    many = run("for i in range(64):\n    open(f'f{i}', 'wb').write(b'0' * (512 << 10))", file_size_mb=1, disk_mb=4)
    assert many["status"] == "error" and "No space left on device" in many["detail"], many


@needs_namespaces
def test_killing_its_parent_or_everything_touches_nothing_outside():
    for program in ("import os\nos.kill(os.getppid(), 9)", "import os\nos.kill(-1, 9)\nos.kill(0, 9)"):
        facts = run(program)
        assert facts["status"] in ("error", "killed") and not facts["correct"], facts
    assert run("def f(x):\n    return x + 3", TESTS)["correct"]  # this process and its launcher live on
    assert sandbox_processes() == []


# ---------------------------------------------------------------- in the verifier pool, and the weaker mode


@needs_namespaces
def test_runner_workers_run_it_and_survive_escapes():
    completions = ["def f(x):\n    return x + 3", "import os\nos.kill(os.getppid(), 9)", "while True:\n    pass"]
    with VerifierRunner([("code", "code", {"cpu_s": 1})], timeout_s=5.0, num_workers=1) as runner:
        out = runner.run(completions, [TESTS] * 3)
        assert [row["code"]["status"] for row in out] == ["passed", "error", "timeout"]
        assert runner.last_run_stats()["code"] == {"calls": 3, "errors": 0, "timeouts": 0}


def test_rlimits_mode_limits_and_cleans_up():
    assert run("def f(x):\n    return x + 3", TESTS, isolation="rlimits")["correct"]
    cwd = run("import os\nopen('note', 'w').write('x')\nraise SystemExit(os.getcwd())", isolation="rlimits")["detail"]
    assert cwd.startswith("SystemExit: /") and not Path(cwd.split(": ", 1)[1]).exists()  # its directory is removed
    idle = run("import os, time\nos.fork()\ntime.sleep(60)", isolation="rlimits", wall_s=1.0)
    assert idle["status"] == "timeout"
    assert run("x = bytearray(1 << 30)", isolation="rlimits", memory_mb=128)["status"] == "memory"
    assert sandbox_processes() == []


# ---------------------------------------------------------------- the code_functions task


def test_code_functions_task_is_seeded_disjoint_and_solvable():
    from rlpost.data import load_task

    train, test = load_task("code_functions", "train", n_train=300), load_task("code_functions", "test")
    assert load_task("code_functions", "test", n_train=5) == test  # the test split does not move with n_train
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    record = train[0]
    assert set(record) >= {"question", "answer", "solution", "tests", "level"} and len(record["tests"]) == 5
    assert record["question"].endswith("def f(x):\n    return ") and " " not in record["solution"]
    hard = load_task("code_functions", "train", terms=3, n_train=20)
    isolation = "rlimits" if _namespaces_reason() else "namespaces"
    for r in train[:20] + hard:
        assert verify_code(r["solution"], r, prefix_key="question", isolation=isolation)["correct"], r
        assert verify_code(r["answer"], r, isolation=isolation)["correct"], r
