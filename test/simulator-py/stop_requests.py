"""Checks driver.StopRequests against a stop that lands where a lock-waiting main thread never sees it.

Run by driver.test.ts as: /usr/bin/python3 stop_requests.py SIGNAL|stdin. For a signal, the signal is
sent to this script's second thread (signal.pthread_kill), as the kernel may hand a SIGTERM to one of
gRPC's threads; for stdin, the other end of stdin is closed. Prints the reason StopRequests.wait()
gives, or exits 1 if the main thread is still waiting after 5 s.
"""
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'plugins', 'simulator-py'))
os.environ.setdefault('GRPC_VERBOSITY', 'NONE')
import driver  # noqa: E402

how = sys.argv[1]
read_end, write_end = os.pipe()
os.dup2(read_end, 0)  # Our own stdin, whose other end only this script holds.
stops = driver.StopRequests()
MAIN = threading.main_thread().native_id


def main_thread_state():
    with open('/proc/self/task/%d/stat' % MAIN) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


def stop_from_elsewhere():
    # Only once the main thread sleeps in wait(): a signal while it still runs bytecode would reach it anyway.
    while main_thread_state() != 'S':
        time.sleep(0.01)
    if how == 'stdin':
        os.close(write_end)
    else:
        signal.pthread_kill(threading.get_ident(), getattr(signal, how))
    time.sleep(5)
    print('still waiting 5 s after the stop was asked for', flush=True)
    os._exit(1)


threading.Thread(target=stop_from_elsewhere, daemon=True).start()
print(stops.wait(), flush=True)
