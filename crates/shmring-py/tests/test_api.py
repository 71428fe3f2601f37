"""Errors with the Rust messages, stats as `stat --json`, producers'
policies, attaching by name and from inherited descriptors."""

import os
import sys

import pytest

import shmring
from conftest import assert_sent_once_in_order, finish, frames_until_exit, tally
from records import LAYOUT_VERSION, SecondMapping


def test_errors_carry_the_rust_messages_and_builtin_bases(sandbox):
    with pytest.raises(shmring.BadName) as bad:
        shmring.Consumer.create("no/slash")
    assert isinstance(bad.value, ValueError) and isinstance(bad.value, shmring.Error)
    assert str(bad.value) == (
        'bad ring name "no/slash": holds a character other than A-Z a-z 0-9 . _ - '
        "(use 1-48 characters from A-Z a-z 0-9 . _ -)"
    )
    with pytest.raises(shmring.BadCapacity, match=r"^bad capacity 1000 bytes: not a power of two$"):
        shmring.Consumer.create_anonymous(1000)
    name = sandbox.ring("nobody")
    with pytest.raises(shmring.OsError) as missing:
        shmring.Producer.attach(name)
    assert isinstance(missing.value, OSError)
    assert str(missing.value).startswith("connect to the ring's rendezvous socket (is its consumer running?) failed: ")
    with pytest.raises(shmring.BadDescriptorSpec, match="expected MEMFD"):
        shmring.Consumer.from_fds("1:2")


def test_a_refused_segment_says_what_shmring_stat_says(sandbox):
    name = sandbox.ring("version")
    with shmring.Consumer.create(name, capacity=1 << 20) as consumer:
        segment = SecondMapping(consumer.fds[0])
        (version,) = segment.get(LAYOUT_VERSION, "<I")
        segment.put(LAYOUT_VERSION, "<I", 99)
        with pytest.raises(shmring.VersionMismatch) as refused:
            shmring.Producer.attach(name)
        cli = sandbox.run("stat", name, check=False)
        assert cli.returncode == 4 and str(refused.value) in cli.stderr, (str(refused.value), cli.stderr)
        assert str(refused.value).startswith("segment layout version 99, this build speaks ")
        segment.put(LAYOUT_VERSION, "<I", version)
        segment.close()


def test_a_second_consumer_is_refused_with_in_use(sandbox):
    name = sandbox.ring("taken")
    with shmring.Consumer.create(name, capacity=1 << 20):
        with pytest.raises(shmring.InUse, match=f'ring "{name}" is in use by live process {os.getpid()}'):
            shmring.Consumer.attach(name)


def test_stats_are_the_fields_and_values_of_stat_json(sandbox):
    name = sandbox.ring("stats")
    with shmring.Consumer.create(name, capacity=1 << 20) as consumer:
        producer = shmring.Producer.attach(name)
        for n in range(3):
            producer.send(bytes(100 * n))
        frame = consumer.recv(timeout=1)
        del frame
        consumer.try_recv()
        cli = sandbox.stat(name)
        ours = consumer.stats()
        assert ours.keys() == cli.keys()
        # The stream table is the command's (its consumers publish it).
        assert cli["streams"] is None and cli["streams_state"].startswith("unknown")
        aside = ("streams", "streams_state")
        same = {key: value for key, value in cli.items() if key not in aside}
        assert {key: value for key, value in ours.items() if key not in aside} == same
        assert {key: value for key, value in producer.stats().items() if key not in aside} == same
        assert (ours["committed_frames"], ours["consumed_frames"], ours["name"]) == (3, 2, name)
        assert ours["producers"][0]["frames"] == 3 and ours["consumer"]["pid"] == os.getpid()


def test_full_ring_policies(sandbox):
    consumer = shmring.Consumer.create_anonymous(1 << 16)
    producer = consumer.producer()
    assert producer.full_policy == "drop"
    big = bytes(consumer.max_payload // 2)
    producer.send(big)
    with pytest.raises(shmring.Dropped, match="^ring full: frame dropped and counted$"):
        producer.send(big)
    producer.set_full_policy("fail")
    with pytest.raises(shmring.Full, match="^ring full$"):
        producer.send(big)
    producer.set_full_policy("block", timeout=0.05)
    with pytest.raises(shmring.Timeout, match="^timed out$"):
        producer.send(big)
    with pytest.raises(shmring.TooLarge, match="exceeds the ring's largest record"):
        producer.send(bytes(consumer.max_payload + 1))
    with pytest.raises(ValueError):
        producer.set_full_policy("sometimes")
    stats = consumer.stats()
    assert (stats["drops"], stats["rejected"]) == (2, 1)


def test_a_consumer_from_inherited_descriptors_reads_a_camera_it_spawned(sandbox):
    parent = shmring.Consumer.create_anonymous(16 << 20)
    spec = parent.fd_spec
    camera = sandbox.spawn(
        "camera", "--seconds", "1", "--size", "160x120", "--fps", "20", pass_fds=parent.fds, SHMRING_FD=spec
    )
    numbers = [frame.frame_number for frame in frames_until_exit(parent, camera)]
    counts = tally(finish(camera)[0], "camera")
    assert counts["sent"] + counts["late"] == 20
    assert_sent_once_in_order(numbers, counts)
    # A child Python takes the ring over from descriptors once the parent
    # has closed it: `Consumer.from_fds()` reads SHMRING_FD.
    fds = [os.dup(fd) for fd in parent.fds]
    parent.close()
    child = sandbox.python(
        "import shmring; c = shmring.Consumer.from_fds(); print(c.stats()['consumer']['generation'])",
        pass_fds=fds,
        SHMRING_FD=":".join(map(str, fds)),
    )
    out, _ = finish(child)
    assert out.strip() == "2"
    for fd in fds:
        os.close(fd)


def test_the_wheel_is_abi3_from_3_11_and_built_for_the_interpreter_before():
    extension = os.path.basename(shmring.shmring.__file__)
    if sys.version_info >= (3, 11):
        # One wheel for every CPython from 3.11 on (the stable ABI with the
        # buffer protocol).
        assert extension == "shmring.abi3.so", extension
    else:
        tag = "cpython-%d%d" % sys.version_info[:2]
        assert extension.startswith(f"shmring.{tag}-"), extension
