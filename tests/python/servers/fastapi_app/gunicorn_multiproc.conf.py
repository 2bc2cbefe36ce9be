# prometheus_client's own multiprocess mode, the way its documentation sets it up: the test sets
# PROMETHEUS_MULTIPROC_DIR to a fresh directory and reads it with MultiProcessCollector.
from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
