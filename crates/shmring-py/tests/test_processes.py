"""Across processes: a consumer killed while it holds frames is replaced
and the frames come again; a waiting recv lets other threads run and
gives way to Ctrl-C."""

import os
import select
import signal
import time

import shmring
from conftest import assert_sent_once_in_order, finish, frames_until_exit, tally

HOLDER = """
import shmring, time
consumer = shmring.Consumer.from_fds(max_frames=16)
held = []
for n in range(15):
    frame = consumer.recv(timeout=10)
    if n >= 10:
        held.append(frame)
    del frame
print("holding", held[0].frame_number, len(held), consumer.frames_held, flush=True)
time.sleep(60)
"""


def test_a_consumer_killed_holding_frames_is_replaced_and_they_are_delivered_again(sandbox):
    first = shmring.Consumer.create_anonymous(64 << 20)
    camera = sandbox.spawn(
        "camera", "--seconds", "3", "--size", "320x240", pass_fds=first.fds, SHMRING_FD=first.fd_spec
    )
    for_holder = [os.dup(fd) for fd in first.fds]
    for_successor = ":".join(str(os.dup(fd)) for fd in first.fds)
    first.close()
    holder = sandbox.python(HOLDER, pass_fds=for_holder, SHMRING_FD=":".join(map(str, for_holder)))
    line = holder.stdout.readline().split()
    assert line[0] == "holding", holder.stderr.read() if not line else line
    first_held, count, held = map(int, line[1:])
    assert (count, held) == (5, 5)
    holder.kill()
    holder.wait()
    for fd in for_holder:
        os.close(fd)

    second = shmring.Consumer.from_fds(for_successor)
    numbers = []
    for frame in frames_until_exit(second, camera):
        numbers.append(frame.frame_number)
        assert frame.y.shape == (240, 320)
        del frame
    out, _ = finish(camera)
    # The five frames the dead consumer held come first, then the rest,
    # none lost and none twice; the ten it released are gone.
    assert numbers[0] == first_held
    assert_sent_once_in_order(numbers, tally(out, "camera"), start=first_held, released=10)
    assert second.stats()["consumer"]["generation"] == 3, "created, attached, re-attached"


WAITER = """
import shmring, threading, time
consumer = shmring.Consumer.create_anonymous(1 << 20)
ticks = 0
def count():
    global ticks
    while True:
        ticks += 1
        time.sleep(0.001)
threading.Thread(target=count, daemon=True).start()
print("waiting", flush=True)
began = time.monotonic()
try:
    consumer.recv()
except KeyboardInterrupt:
    print("interrupted", ticks, time.monotonic() - began, flush=True)
"""


def test_a_waiting_recv_releases_the_gil_and_yields_to_ctrl_c(sandbox):
    waiter = sandbox.python(WAITER)
    assert waiter.stdout.readline().strip() == "waiting"
    time.sleep(1.0)
    sent = time.monotonic()
    waiter.send_signal(signal.SIGINT)
    # A hang guard, not a speed target (the latency is printed): a wait
    # deaf to signals would never answer.
    ready, _, _ = select.select([waiter.stdout], [], [], 30)
    assert ready, "recv() did not give way to SIGINT"
    line = waiter.stdout.readline().split()
    latency = time.monotonic() - sent
    out, err = finish(waiter)
    assert line and line[0] == "interrupted", err
    ticks, waited = int(line[1]), float(line[2])
    print(f"KeyboardInterrupt {latency * 1000:.0f} ms after SIGINT; another thread ticked {ticks} times in {waited:.2f} s")
    # The other thread ran all along: with the GIL held through the wait it
    # could tick only between wait slices (50 ms each), once per slice.
    slices = waited / 0.05
    assert waited >= 1.0 and ticks > 3 * slices, (ticks, waited)
