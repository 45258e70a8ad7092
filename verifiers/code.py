"""The ``code`` verifier: model-written Python run against the record's tests in a sandbox.

The program is the completion, or the first fenced ```python block in it, preceded by
``record[prefix_key]`` when given (for prompts that are the start of the code). ``record[tests_key]``
holds the tests: a list of Python snippets, usually one ``assert`` each, run in order in the
program's namespace after the program; a string is a single test. Every call runs in a fresh
sandbox (docs/sandbox.md):

- ``isolation="namespaces"`` (default; Linux, as root): new mount, PID, network, IPC and UTS
  namespaces; a chroot into an empty read-only tmpfs holding read-only binds of /usr, the Python
  install, /etc/ld.so.cache and /dev/{null,zero,random,urandom}, and a private, size-limited,
  writable /sandbox (the cwd); a fresh unprivileged uid, no capabilities, no_new_privs; rlimits.
- ``isolation="rlimits"``: opt-in, weaker: rlimits, a private temporary directory as cwd and, as
  root, a fresh uid; no file-system or network isolation.

This file also runs as the sandbox launcher (``python -I -S code.py <host pid>``), a warm process
that forks the sandboxes, so it imports only the standard library; ``verifiers.builtin`` registers it.
"""
from __future__ import annotations

import builtins
import ctypes
import functools
import inspect
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

ISOLATIONS = ("namespaces", "rlimits")
# Each sandbox runs as a random uid from here: its process limit and its signals touch only itself.
UID_RANGE = range(1 << 30, 1 << 31)
SANDBOX_DIR = "/sandbox"  # the cwd inside the namespaces sandbox

_PYTHON = os.path.realpath(sys.executable)  # the base interpreter, not a venv's wrapper
_OUTPUT_CAP = 1 << 16  # bytes of the sandbox's report pipe kept (the last ones: the report ends it)
_DETAIL_CHARS = 200
_SETUP_FAILED = 121  # exit code after a setup error, explained on the sandbox's stderr
_WALL_TIMEOUT = 124  # exit code when the sandbox's own wall clock ran out
_GRACE_S = 1.0  # the host's backstop waits this much longer than the sandbox's own wall clock
_FENCE = re.compile(r"```(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)

# Linux constants (<sched.h>, <sys/mount.h>, <sys/prctl.h>).
_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000,
)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18,
)
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_READONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache")


@dataclass(frozen=True)
class Limits:
    """Per-call resource limits; ``memory_mb`` and ``file_size_mb`` apply to each process."""

    wall_s: float = 2.0
    cpu_s: int = 1
    memory_mb: int = 256
    file_size_mb: int = 1
    disk_mb: int = 8
    nproc: int = 8

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            kind = "number" if name == "wall_s" else "integer"
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind == "number" else int) or value <= 0:
                raise ValueError(f"code verifier: {name} must be a positive {kind}, got {value!r}")


# ---------------------------------------------------------------------------------------- host side


def verify_code(
    completion: str,
    record: dict[str, Any],
    tests_key: str = "tests",
    prefix_key: str | None = None,
    isolation: str = "namespaces",
    wall_s: float = 2.0,
    cpu_s: int = 1,
    memory_mb: int = 256,
    file_size_mb: int = 1,
    disk_mb: int = 8,
    nproc: int = 8,
) -> dict[str, Any]:
    """Run the completion's program and ``record[tests_key]`` in a sandbox.

    Facts: ``correct`` (every test passed), ``passed``, ``total``, ``status`` (passed, failed,
    error, timeout, memory or killed) and a one-line ``detail``. Keep ``wall_s`` below
    ``verify.timeout_s``. Raises ValueError for bad kwargs or tests, or when ``isolation`` is not
    available here; RuntimeError when the sandbox itself fails.
    """
    limits = Limits(wall_s, cpu_s, memory_mb, file_size_mb, disk_mb, nproc)
    require_isolation(isolation)
    tests = parse_tests(record[tests_key])
    prefix = str(record[prefix_key]) if prefix_key is not None else ""
    return run_sandboxed(prefix + extract_code(completion), tests, limits, isolation)


def check_kwargs(**kwargs: Any) -> None:
    """At start-up, before any model loads: the limits are valid and the isolation works here (a trial run)."""
    bound = inspect.signature(verify_code).bind("", {}, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    Limits(a["wall_s"], a["cpu_s"], a["memory_mb"], a["file_size_mb"], a["disk_mb"], a["nproc"])
    require_isolation(a["isolation"])


verify_code.check_kwargs = check_kwargs  # type: ignore[attr-defined]  # called when the recipe's verifiers resolve


def extract_code(completion: str) -> str:
    """The first fenced ``python`` (or ``py``, or untagged) block of ``completion``, else all of it."""
    match = _FENCE.search(completion)
    return match.group(1) if match else completion


def parse_tests(value: Any) -> list[str]:
    """A list of test snippets (a string is one), each checked to compile; ValueError otherwise."""
    tests = [value] if isinstance(value, str) else value
    if not isinstance(tests, (list, tuple)) or not tests or not all(isinstance(t, str) for t in tests):
        raise ValueError(f"code verifier: tests must be a non-empty list of strings or a string, got {value!r:.100}")
    for i, test in enumerate(tests):
        try:
            compile(test, f"<test {i}>", "exec")
        except SyntaxError as e:
            raise ValueError(f"code verifier: test {i} does not compile: {e.msg} ({test!r:.80})") from None
    return list(tests)


def require_isolation(isolation: str) -> None:
    """Refuse (ValueError, one line) an unknown isolation or one this machine cannot provide."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"code verifier: isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    reason = _unavailable(isolation)
    if reason:
        hint = "; set isolation: rlimits to run with resource limits only (no file-system or network isolation)"
        raise ValueError(f"code verifier: isolation '{isolation}' is not available here: {reason}"
                         + (hint if isolation == "namespaces" else ""))


@functools.lru_cache(maxsize=None)
def _unavailable(isolation: str) -> str:
    """Why ``isolation`` cannot run here ("" if it can): checked once per process by a trial run."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux, this is {sys.platform}"
    if isolation == "namespaces" and os.geteuid() != 0:
        return f"namespaces need root (euid is {os.geteuid()})"
    try:
        facts = run_sandboxed("", ["assert True"], Limits(wall_s=10.0), isolation)
    except (OSError, RuntimeError) as e:
        return str(e)
    return "" if facts["correct"] else f"a trial run ended with {facts['status']}: {facts['detail']}"


def run_sandboxed(program: str, tests: list[str], limits: Limits, isolation: str = "namespaces") -> dict[str, Any]:
    """Run ``program`` then ``tests`` in a fresh sandbox and return the facts."""
    job = {"program": program, "tests": tests, "limits": asdict(limits), "isolation": isolation}
    result = _LAUNCHERS.setdefault(os.getpid(), _Launcher()).run(job, limits.wall_s + 2 * _GRACE_S)
    if "setup_error" in result:
        raise RuntimeError(f"code verifier: {result['setup_error']}")
    return {"correct": result["status"] == "passed", "passed": result["passed"], "total": len(tests),
            "status": result["status"], "detail": result["detail"]}


class _Launcher:
    """The host's handle on its launcher: a warm process (this file as a script) that forks one sandbox per job.

    Forking a warm interpreter costs a few ms where starting one costs tens. Each process gets its
    own launcher on first use; a dead one is restarted, and it dies with the thread that started it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def run(self, job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen(
                    [_PYTHON, "-I", "-S", os.path.abspath(__file__), str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"}, cwd="/",
                    start_new_session=True,
                )
            try:
                _write_frame(self.proc.stdin.fileno(), job)
                return _read_frame(self.proc.stdout.fileno(), time.monotonic() + timeout_s)
            except (OSError, EOFError, TimeoutError) as e:
                self.proc.kill()  # its sandboxes die with it
                self.proc.wait()
                raise RuntimeError(f"code verifier: the sandbox launcher failed: {type(e).__name__}: {e}") from None


_LAUNCHERS: dict[int, _Launcher] = {}  # by pid: a forked copy of this module starts its own


def _write_frame(fd: int, message: Any) -> None:
    data = json.dumps(message).encode()
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data):]


def _read_frame(fd: int, deadline: float | None) -> Any:
    """One length-prefixed JSON message; EOFError when the pipe closes, TimeoutError past ``deadline``."""
    size = int.from_bytes(_read_exact(fd, 4, deadline), "big")
    return json.loads(_read_exact(fd, size, deadline))


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    data = bytearray()
    while len(data) < size:
        if deadline is not None and not _readable(fd, deadline - time.monotonic()):
            raise TimeoutError("no answer in time")
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("the pipe closed")
        data += chunk
    return bytes(data)


def _readable(fd: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return timeout_s > 0 and bool(poller.poll(timeout_s * 1000))


# ------------------------------------------------------------------------------------ launcher side


def _serve(host: int) -> None:
    """The launcher's loop: a job in, a sandbox run, a result out, until the host goes away."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != host:  # the host died before the death signal was armed
        return
    while True:
        try:
            job = _read_frame(0, None)
        except EOFError:
            return
        _write_frame(1, _run_job(job))


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Fork the sandbox's root process for ``job``, wait for it (killing it past the wall time), read its report."""
    limits = Limits(**job["limits"])
    nonce = os.urandom(16).hex()
    report_r, report_w = os.pipe()
    errors_r, errors_w = os.pipe()
    launcher = os.getpid()
    pid = _fork(lambda: _sandbox_root(job, nonce, report_w, errors_w, launcher))
    os.close(report_w)
    os.close(errors_w)
    errors = bytearray()
    try:
        output, timed_out = _read_until_exit(pid, report_r, limits.wall_s + _GRACE_S)
        os.kill(pid, signal.SIGKILL)  # no-op unless it is still running
        _, status = os.waitpid(pid, 0)
        os.set_blocking(errors_r, False)
        _drain(errors_r, errors)
    finally:
        os.close(report_r)
        os.close(errors_r)
    if errors:
        return {"setup_error": errors.decode(errors="replace").strip().splitlines()[-1]}
    if timed_out:
        outcome = "timeout", 0, f"wall time limit ({limits.wall_s}s)"
    else:
        outcome = _report(output, nonce) or _no_report(_exit_code(status), limits)
    return dict(zip(("status", "passed", "detail"), outcome))


def _read_until_exit(pid: int, fd: int, timeout_s: float) -> tuple[bytes, bool]:
    """What ``pid``'s tree writes to ``fd`` until ``pid`` exits (the last ``_OUTPUT_CAP`` bytes), and whether time ran out."""
    os.set_blocking(fd, False)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    output = bytearray()
    try:
        while True:
            remaining = deadline - time.monotonic()
            events = dict(poller.poll(remaining * 1000)) if remaining > 0 else {}
            if fd in events and _drain(fd, output):
                poller.unregister(fd)  # end of file: every writer is gone
            if pidfd in events or not events:  # exited, or out of time
                _drain(fd, output)
                return bytes(output), pidfd not in events
    finally:
        os.close(pidfd)


def _drain(fd: int, output: bytearray) -> bool:
    """Append what can be read now to ``output``, keeping its last ``_OUTPUT_CAP`` bytes; True at end of file."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        output += chunk
        del output[:-_OUTPUT_CAP]


def _report(output: bytes, nonce: str) -> tuple[str, int, str] | None:
    """The harness's ``(status, passed, detail)``: its last line that starts with this job's nonce."""
    prefix = nonce.encode() + b"\t"
    for line in reversed(output.split(b"\n")):
        fields = line[len(prefix):].decode(errors="replace").split("\t", 2)
        if line.startswith(prefix) and len(fields) == 3 and fields[1].isdigit():
            return fields[0], int(fields[1]), fields[2]
    return None


def _no_report(code: int, limits: Limits) -> tuple[str, int, str]:
    """What the sandbox's exit code says when it ended without a report."""
    if code == _WALL_TIMEOUT:
        return "timeout", 0, f"wall time limit ({limits.wall_s}s)"
    if code == 128 + signal.SIGXCPU:
        return "timeout", 0, f"CPU time limit ({limits.cpu_s}s)"
    if 128 < code < 128 + signal.NSIG:
        return "killed", 0, f"killed by {_signal_name(code - 128)}"
    return "error", 0, f"exited with code {code} before the tests finished"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # most real-time signals have no name
        return f"signal {number}"


# ------------------------------------------------------------------------------------- sandbox side


def _sandbox_root(job: dict[str, Any], nonce: str, report_fd: int, errors_fd: int, launcher: int) -> None:
    """The sandbox's root process: fds, then namespaces (or a private directory), then an init that runs the harness."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd, target in ((null, 0), (report_fd, 1), (errors_fd, 2)):
        os.dup2(fd, target)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # the launcher's pipes to the host
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher:
        _fail("the launcher died")
    limits = Limits(**job["limits"])
    uid = UID_RANGE.start + int.from_bytes(os.urandom(4), "big") % len(UID_RANGE) if os.geteuid() == 0 else None
    try:
        if job["isolation"] == "namespaces":
            root, workdir = _build_namespaces(uid, limits), SANDBOX_DIR
        else:
            root, workdir = None, _private_dir(uid)
    except OSError as e:
        _fail(f"sandbox setup failed: {e}")
    init = _fork(lambda: _init(lambda: _harness_main(job, nonce, root, workdir, uid, limits), uid, limits.wall_s))
    _, status = os.waitpid(init, 0)
    if root is None:
        shutil.rmtree(workdir, ignore_errors=True)
    os._exit(_exit_code(status))


def _fork(child: Callable[[], None]) -> int:
    """Fork a process that runs ``child`` and exits, whatever happens: it never returns into the caller's code."""
    pid = os.fork()
    if pid == 0:
        try:
            child()
        except BaseException as e:
            _fail(f"sandbox process failed: {type(e).__name__}: {e}")
        finally:
            os._exit(_SETUP_FAILED)
    return pid


def _build_namespaces(uid: int | None, limits: Limits) -> str:
    """Enter new namespaces and build the sandbox's root file system; return its path (outside the chroot)."""
    if uid is None:
        raise OSError("namespaces need root")
    _libc_check("unshare", _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS)
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing mounted here propagates to the host
    root = "/tmp"
    sources = [p for p in (*_READONLY, *_python_dirs()) if os.path.lexists(p)]
    if any(p == root or p.startswith(root + "/") for p in sources):
        raise OSError(f"the Python install is under {root}, which the sandbox's root hides")
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,nr_inodes=256,mode=755")
    for source in dict.fromkeys(sources):
        if os.path.islink(source):  # e.g. /lib -> usr/lib on merged-/usr systems
            os.symlink(os.readlink(source), root + source)
        elif not any(source.startswith(p + "/") for p in sources if not os.path.islink(p)):
            _bind(source, root + source, _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    for device in _DEVICES:
        _bind(device, root + device, _MS_NOSUID | _MS_NOEXEC)
    os.mkdir(root + SANDBOX_DIR)
    _mount("tmpfs", root + SANDBOX_DIR, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
           f"size={limits.disk_mb}m,nr_inodes=1024,mode=700,uid={uid},gid={uid}")
    _mount(None, root, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    return root


def _python_dirs() -> list[str]:
    """Where this interpreter's standard library lives (bound at the same paths: ``sys.path`` points there)."""
    return [os.path.abspath(sys.base_prefix), os.path.abspath(sys.base_exec_prefix)]


def _bind(source: str, target: str, flags: int) -> None:
    """Bind ``source`` at ``target`` (created), then remount it with ``flags``."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(source, target, None, _MS_BIND)
    _mount(None, target, None, _MS_BIND | _MS_REMOUNT | flags)


def _private_dir(uid: int | None) -> str:
    path = tempfile.mkdtemp(prefix="rlpost-sandbox-")
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def _init(harness: Callable[[], None], uid: int | None, wall_s: float) -> None:
    """Run ``harness`` in a child under a wall clock, reap every orphan, exit with the child's status.

    Under namespaces this is the PID namespace's init: when it exits the kernel kills every process
    left in the namespace. Under rlimits, leftovers are killed by uid (or by process group).
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    child = _fork(harness)
    signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    code = _WALL_TIMEOUT
    try:
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                code = _exit_code(status)
                break
    except TimeoutError:
        os.kill(child, signal.SIGKILL)
    if os.getpid() != 1:  # not a PID namespace's init, so nothing kills the leftovers for us
        _kill_leftovers(child, uid)
    os._exit(code)


def _raise_timeout(signum: int, frame: Any) -> None:
    raise TimeoutError


def _kill_leftovers(child: int, uid: int | None) -> None:
    if uid is None:
        try:
            os.killpg(child, signal.SIGKILL)
        except OSError:
            pass
        return

    def kill_all() -> None:
        os.setresuid(uid, uid, uid)
        os.kill(-1, signal.SIGKILL)  # every process of this uid but the caller

    os.waitpid(_fork(kill_all), 0)


def _exit_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _harness_main(job: dict[str, Any], nonce: str, root: str | None, workdir: str, uid: int | None, limits: Limits) -> None:
    """Enter the sandbox, run the program and tests, write the report, exit."""
    try:
        os.setsid()
        if root is not None:
            os.chroot(root)
        os.chdir(workdir)
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)  # from root to a non-zero uid: every capability is dropped
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change clears it
        _set_limits(limits)
        os.environ.clear()
        os.environ.update(PATH="/usr/bin:/bin", HOME=workdir, TMPDIR=workdir, LANG="C.UTF-8")
        report_fd = os.dup(1)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
    except OSError as e:
        _fail(f"sandbox setup failed: {e}")
    _harness(job["program"], job["tests"], nonce, report_fd)


def _set_limits(limits: Limits) -> None:
    mib = 1 << 20
    for which, value in (
        (resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),  # SIGXCPU, then SIGKILL a second later
        (resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2),
        (resource.RLIMIT_FSIZE, (limits.file_size_mb * mib,) * 2),
        (resource.RLIMIT_NPROC, (limits.nproc,) * 2),
        (resource.RLIMIT_NOFILE, (64, 64)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(which, value)


def _harness(program: str, tests: list[str], nonce: str, report_fd: int) -> None:
    """Run the program, then each test in its namespace; report ``nonce, status, passed, detail``.

    Everything the report depends on is bound before the program runs, so a program that patches
    builtins or modules cannot change how its tests are run or reported. Only this process
    reports: a program that forks leaves its children silent.
    """
    run, write, exit_, getpid = exec, os.write, os._exit, os.getpid
    pid, total = getpid(), len(tests)
    status, passed, detail = "error", 0, ""
    try:
        compiled = [(i, compile(test, f"<test {i}>", "exec"), test) for i, test in enumerate(tests)]
        code = compile(program, "<program>", "exec")
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        run(code, namespace)
        for i, test, source in compiled:
            try:
                run(test, namespace)
                passed += 1
            except MemoryError:
                raise
            except BaseException as e:  # SystemExit and KeyboardInterrupt are test failures too
                detail = detail or f"test {i} failed: {_describe(e) if e.args else source}"
        status = "passed" if passed == total else "failed"
    except MemoryError:
        status, detail = "memory", "MemoryError: over the memory limit"
    except BaseException as e:
        status, detail = "error", _describe(e)
    if getpid() == pid:
        write(report_fd, f"{nonce}\t{status}\t{passed}\t{' '.join(detail.split())[:_DETAIL_CHARS]}\n".encode())
    exit_(0)


def _describe(e: BaseException) -> str:
    """``"Type: message"``, with the line for syntax errors; never raises."""
    try:
        if isinstance(e, SyntaxError):
            return f"SyntaxError: {e.msg} (line {e.lineno})"
        return f"{type(e).__name__}: {e}"[:_DETAIL_CHARS]
    except BaseException:
        return type(e).__name__


def _fail(message: str) -> None:
    os.write(2, f"{message}\n".encode())
    os._exit(_SETUP_FAILED)


_LIBC = ctypes.CDLL(None, use_errno=True)


def _libc_check(name: str, *args: Any) -> None:
    if getattr(_LIBC, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _libc_check("mount", _c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(data))


def _c(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def _prctl(option: int, value: int) -> None:
    _libc_check("prctl", option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
