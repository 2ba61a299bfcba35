"""Faults over real DDS: a backend that raises mid-run, peers that restart, a node killed with SIGKILL.

Each node here runs the oracle lifter of :mod:`test.node_harness` (a fixed standing pose), so every
output can be checked for the right placement. One node at a time, one after the other.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from .conftest import require, requires_ros
from .node_harness import Client, assert_at, connected_client, good_person, start_lifter, stop

pytestmark = [pytest.mark.ros, requires_ros]

# The node with its real parameters and fallback chain, but the oracle backend wrapped so that it
# raises for batches of exactly FAIL_BATCH people: a stand-in for a GPU that fails mid-run.
FAULTY_NODE = """
import sys
from lbi_ros.ros import lift_node
from lbi_ros.runtime.factory import create_backend

class Faulty:
    name = "faulty"

    def __init__(self, inner, fail_batch):
        self.inner, self.fail_batch, self.io_spec = inner, fail_batch, inner.io_spec

    def infer(self, feeds):
        batch = next(iter(feeds.values())).shape[0]
        if batch == self.fail_batch:
            raise RuntimeError(f"injected fault for a batch of {batch}")
        return self.inner.infer(feeds)

sys.exit(lift_node.main(backend=Faulty(create_backend(sys.argv[1], "onnxruntime"), int(sys.argv[2]))))
"""
FAIL_BATCH = 5


def crowd(n: int = FAIL_BATCH):
    return [good_person(f"c{i}", root=(-0.8 + 0.4 * i, 0.0, 5.0)) for i in range(n)]


@pytest.fixture(scope="module")
def faulty(oracle_onnx, ros_domain, ros_log_dir, tmp_path_factory):  # noqa: F811 - the imported fixture
    log_path = tmp_path_factory.mktemp("faulty") / "lifter.log"
    proc = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_path, "fallback_backends:=[onnxruntime]",
                        "fallback_after_failures:=3",
                        prefix=["python", "-c", FAULTY_NODE, str(oracle_onnx), str(FAIL_BATCH), "--ros-args"])
    with connected_client(proc, log_path, "lbi_faults_client") as client:
        yield client


def test_backend_failures_drop_the_frame_then_fall_back(faulty):
    c = faulty
    assert c.counters["backend"] == "faulty" and c.counters["fallback_backends"] == "onnxruntime"
    failed = c.expect_counted("inference_failed", lambda: c.send(people=crowd()))
    c.expect_good_frame()  # a failure costs its frame only; a success resets the consecutive count
    assert c.fresh_count("backend_consecutive_failures") == 0
    for _ in range(3):  # three in a row: the third one switches to the fallback
        failed += c.expect_counted("inference_failed", lambda: c.send(people=crowd()))
    assert c.until(lambda: c.count("backend_fallbacks") == 1 and c.counters.get("backend") == "onnxruntime", 10)
    assert not set(failed) & set(c.outputs), "a frame whose inference failed was published"
    assert c.count("inference_failed") == 4 and c.count("frames_published") >= 1
    out = c.expect_output(lambda: c.send(people=crowd()))  # the same input now works, on the fallback
    assert sorted(s.id for s in out.skeletons) == [f"c{i}" for i in range(FAIL_BATCH)]
    for skeleton in out.skeletons:
        assert_at(skeleton, (-0.8 + 0.4 * int(skeleton.id[1:]), 0.0, 5.0))
    log = c.log_path.read_text()
    assert "[inference_failed]" in log and "faulty -> onnxruntime" in log
    assert c.proc.poll() is None


def test_publisher_and_subscriber_restarts(faulty):
    """A new participant (camera/detector driver restarted, a consumer restarted) is served without
    restarting the node: inputs from the new publishers are lifted, outputs reach the new subscriber."""
    faulty.expect_good_frame()
    for round_ in range(2):
        faulty.restart(f"lbi_faults_client_{round_}")  # the whole participant goes: publishers, subscriptions
        faulty.wait_ready()
        faulty.expect_good_frame()
    assert faulty.proc.poll() is None


def owned_segments(pid: int) -> set[str]:
    """The Fast DDS shared-memory segments a process owns: it holds their ``_el`` lock files open (it maps
    other participants' segments too, to read from them, but does not lock those)."""
    fds = Path(f"/proc/{pid}/fd")
    names = set()
    for fd in fds.iterdir():
        try:
            target = Path(os.readlink(fd)).name
        except OSError:
            continue
        if target.startswith("fastdds_") and not target.startswith("fastdds_port") and target.endswith("_el"):
            names.add(target[:-3])
    return names


def test_sigkill_leaves_nothing_that_blocks_the_next_start(oracle_onnx, ros_domain, ros_log_dir,  # noqa: F811
                                                           tmp_path):
    """SIGKILL skips every clean-up; the next node must start and work, and remove what the dead one left.

    Its own namespace and node name keep it apart from any other lifter of this run."""
    require(Path("/dev/shm").is_dir(), "no /dev/shm: Fast DDS shared memory is not in use")
    remaps = ("__ns:=/sigkill", "__node:=lbi_lifter_sigkill")
    log_b, log_c = tmp_path / "b.log", tmp_path / "c.log"
    proc_b = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_b, remaps=remaps)
    proc_c = None
    client = Client(proc_b, log_b, "lbi_sigkill_client", namespace="/sigkill", lifter="lbi_lifter_sigkill")
    try:
        client.wait_ready()
        client.expect_good_frame()
        segments = owned_segments(proc_b.pid)
        assert segments, "the node owns no Fast DDS segment: is shared memory off?"
        # A live peer's Fast DDS removes a dead participant's segment on its own; a node killed when no peer
        # is left (the whole robot stack restarted by a watchdog) is the case that leaks.
        client.close()
        os.kill(proc_b.pid, signal.SIGKILL)
        proc_b.wait(timeout=10)
        left_behind = {s for s in segments if (Path("/dev/shm") / s).exists()}
        assert left_behind, "SIGKILL left nothing in /dev/shm (Fast DDS cleans up after SIGKILL now?)"
        time.sleep(2.5)  # segments younger than 2 s are never touched (their owner may be creating them)
        # (another live participant of this domain, e.g. another test's node, may have removed them already)
        proc_c = start_lifter(oracle_onnx, ros_domain, ros_log_dir, log_c, remaps=remaps)
        client.proc, client.log_path = proc_c, log_c
        client.restart("lbi_sigkill_client_2")
        client.wait_ready()
        client.expect_good_frame()  # the next start works
        assert not {s for s in left_behind if (Path("/dev/shm") / s).exists()}, \
            f"segments of the killed node are still in /dev/shm: {left_behind}"
        # Who removed them is racy: the new node's start-up (it then logs "left by killed ROS processes"),
        # or any live participant of the domain meanwhile. Which segments the clean-up removes is checked
        # deterministically in test_stale_segment_clean_up_spares_live_and_young_segments.
        own = owned_segments(proc_c.pid)
        client.close()
        code = stop(proc_c)
        assert code == 0, log_c.read_text()[-2000:]
        assert not {s for s in own if (Path("/dev/shm") / s).exists()}, "a clean exit left its segment"
    finally:
        client.close()
        for proc in (proc_b, proc_c):
            if proc is not None and proc.poll() is None:
                proc.kill()


def test_stale_segment_clean_up_spares_live_and_young_segments(tmp_path):
    """The start-up clean-up removes a segment only when nobody holds its lock and it is old enough."""
    import fcntl

    from lbi_ros.ros.dds_shm import clean_stale_segments

    def segment(name: str, age_s: float) -> Path:
        (tmp_path / name).write_bytes(b"\0" * 64)
        lock = tmp_path / f"{name}_el"
        lock.touch()
        os.utime(lock, (time.time() - age_s, time.time() - age_s))
        return lock

    dead = segment("fastdds_0123456789abcdef", 60)
    young = segment("fastdds_1111111111111111", 0)
    live = segment("fastdds_2222222222222222", 60)
    port = tmp_path / "fastdds_port7411_el"
    port.touch()
    os.utime(port, (0, 0))
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a live owner holds its lock
        removed = clean_stale_segments(tmp_path)
    assert removed == ["fastdds_0123456789abcdef"]
    assert not dead.exists() and not (tmp_path / "fastdds_0123456789abcdef").exists()
    assert young.exists() and live.exists() and port.exists()


def test_fallback_backend_unit():
    """FallbackBackend without ROS: N consecutive failures switch, a fallback that cannot start is skipped,
    a success resets the count, and with nothing left the current backend keeps being tried."""
    import numpy as np

    from lbi_ros.model.config import ModelConfig
    from lbi_ros.runtime.fallback import FallbackBackend, InferenceFailed
    from lbi_ros.runtime.io_spec import build_io_spec

    spec = build_io_spec(ModelConfig(kind="lift2d"))

    class Stub:
        def __init__(self, name, fail):
            self.name, self.fail, self.io_spec, self.calls = name, fail, spec, 0

        def infer(self, feeds):
            self.calls += 1
            if self.fail:
                raise RuntimeError(f"{self.name} broke")
            return {"joints_3d": np.zeros((1, 17, 3), np.float32)}

    def cannot_start():
        raise RuntimeError("no GPU")

    primary, cpu = Stub("gpu", True), Stub("cpu", False)
    switches = []
    backend = FallbackBackend(primary, [("tensorrt", cannot_start), ("onnxruntime", lambda: cpu)], 2,
                              switches.append)
    with pytest.raises(InferenceFailed, match="gpu broke"):
        backend.infer({})
    primary.fail = False
    backend.infer({})  # success resets
    primary.fail = True
    for _ in range(2):
        with pytest.raises(InferenceFailed):
            backend.infer({})
    assert backend.name == "cpu" and [(s.from_backend, s.to_backend) for s in switches] == [("gpu", "cpu")]
    backend.infer({})
    assert cpu.calls == 1 and backend.total_failures == 3
    cpu.fail = True
    for _ in range(5):  # nothing left to fall back to: keep trying the current one
        with pytest.raises(InferenceFailed):
            backend.infer({})
    assert backend.name == "cpu" and cpu.calls == 6
    with pytest.raises(ValueError):
        FallbackBackend(primary, [], 0)


def test_no_unsafe_deserialisation_in_the_package():
    """Security: model files are read as safetensors; any torch.load passes weights_only=True; nothing calls
    pickle.load(s) or np.load(allow_pickle=True) (checked on the syntax tree, so docstrings do not count)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "lbi_ros"
    offenders = []
    for path in package.rglob("*.py"):
        for call in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)):
            name = ast.unparse(call.func)
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if (name == "torch.load" and keywords.get("weights_only") != "True") or name in (
                    "pickle.load", "pickle.loads") or keywords.get("allow_pickle") == "True":
                offenders.append(f"{path.relative_to(package)}:{call.lineno}: {ast.unparse(call)}")
    assert not offenders, offenders
