"""Fixtures for the Python module's tests: the real `shmring` binary, a
private runtime directory per test (rendezvous sockets, owner files) and
ring names no other test uses.

Everything a test needs must be here: a missing binary or module fails the
test, it is never skipped.
"""

import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
_names = itertools.count()


def shmring_binary() -> pathlib.Path:
    """The `shmring` command (SHMRING_BIN, else the workspace's debug build)."""
    path = pathlib.Path(os.environ.get("SHMRING_BIN", REPO / "target" / "debug" / "shmring"))
    if not path.is_file():
        pytest.fail(f"the shmring binary is missing at {path}: run `cargo build -p shmring-cli` or set SHMRING_BIN")
    return path


class Sandbox:
    """One test's runtime directory, processes and ring names."""

    def __init__(self, tmp_path: pathlib.Path):
        self.dir = tmp_path
        self.runtime = tmp_path / "run"
        self.binary = shmring_binary()
        self.children: list[subprocess.Popen] = []
        self.prefix = f"py{os.getpid()}-{next(_names)}"

    def ring(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def env(self, **extra: str) -> dict:
        env = dict(os.environ, SHMRING_RUNTIME_DIR=str(self.runtime), RUST_LOG="warn")
        env.update(extra)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs `shmring ARGS` to completion."""
        done = subprocess.run(
            [str(self.binary), *args], env=self.env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if check and done.returncode != 0:
            raise AssertionError(f"shmring {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def spawn(self, *args: str, pass_fds=(), **env: str) -> subprocess.Popen:
        """Starts `shmring ARGS` in the background (stopped at teardown)."""
        child = subprocess.Popen(
            [str(self.binary), *args],
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        self.children.append(child)
        return child

    def python(self, code: str, pass_fds=(), **env: str) -> subprocess.Popen:
        """Starts this Python running `code` (stopped at teardown)."""
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=pass_fds,
        )
        self.children.append(child)
        return child

    def stat(self, name: str) -> dict:
        return json.loads(self.run("stat", name, "--json").stdout)

    def wait_for_consumer(self, name: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done = self.run("stat", name, "--json", check=False)
            if done.returncode == 0 and json.loads(done.stdout)["consumer"]["state"] == "attached":
                return
            time.sleep(0.025)
        raise AssertionError(f"no consumer attached to {name}")

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=30)
        # Holders started by `shmring create` live on their own: stop them.
        for owner in self.runtime.glob("**/*.owner") if self.runtime.exists() else []:
            words = owner.read_text().split()
            if words and words[0].isdigit() and int(words[0]) != os.getpid():
                try:
                    os.kill(int(words[0]), signal.SIGTERM)
                except ProcessLookupError:
                    pass


def frames_until_exit(consumer, child: subprocess.Popen, limit: float = 60):
    """Every frame `consumer` receives until producer `child` has exited
    and nothing more arrives."""
    import shmring

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            yield consumer.recv(timeout=0.5)
        except shmring.Timeout:
            if child.poll() is not None:
                return
    raise AssertionError(f"{child.args} still producing after {limit} s")


def finish(child: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """Waits for `child`, which must succeed; returns its output."""
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, f"{child.args} exited {child.returncode}: {err}"
    return out, err


def tally(out: str, role: str) -> dict:
    """The JSON line a `shmring camera`/`microphone` prints at exit."""
    for line in out.splitlines():
        if line.startswith("{"):
            fields = json.loads(line)
            if fields.get("role") == role:
                return fields
    raise AssertionError(f"no {role} tally in {out!r}")


def assert_sent_once_in_order(numbers: list, counts: dict, start: int = 0, released: int = 0):
    """`numbers` (frame numbers received from tick `start` on, after
    `released` frames were received and let go elsewhere) are every frame
    a `shmring camera` with tally `counts` sent, in order, each once. The
    camera skips a tick it is already late for (a loaded machine; counted
    as `late`), so with late ticks the numbers have those gaps; with none
    they are exactly `range(start, sent)`."""
    ticks = counts["sent"] + counts["late"] + counts["dropped"]
    assert counts["dropped"] == 0, counts
    assert numbers == sorted(set(numbers)), "in order, none twice"
    assert all(start <= n < ticks for n in numbers), (start, ticks, numbers)
    assert len(numbers) == counts["sent"] - released, (counts, len(numbers))


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    box = Sandbox(tmp_path)
    # The module reads the rendezvous directory from the environment too.
    monkeypatch.setenv("SHMRING_RUNTIME_DIR", str(box.runtime))
    yield box
    box.close()
