"""Where the grading jobs run: a Dask cluster (dask.distributed), local by default.

`make grade` starts a LocalCluster on this machine, JOBS worker processes of one thread
each; `make grade SCHEDULER=tcp://host:8786` uses an existing cluster whose workers have the
same checkout with `make setup` done (`dask scheduler`, then `dask worker tcp://host:8786
--nthreads 1` on each machine; on a SLURM or PBS cluster, dask-jobqueue's SLURMCluster or
PBSCluster starts the workers as batch jobs). Both take the same path: a job is a pure
function (grader.job.run_on_worker), the notebook's bytes and the course's cells in, the
result and its artifacts out, so nothing depends on a shared file system; only this process
writes the gradebook and the CSV.

Workers stay up between jobs, so what a job imports (nbclient, nbconvert, the feedback
template) is paid once per worker. A worker that dies mid-job loses nothing: the scheduler
runs the job again on another worker, and after allowed-failures deaths the submission gets
a row that says so.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable

from grader.course import ROOT, UsageError


class Pool:
    def __init__(self, jobs: int, scheduler: str | None = None):
        import dask
        from distributed import Client, LocalCluster

        # Workers import grader from this checkout, wherever they start.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        dask.config.set({"distributed.scheduler.allowed-failures": 2,
                         "distributed.admin.tick.limit": "1h"})  # a busy machine is no error
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="30s")
                self.client.wait_for_workers(1, timeout=120)
            except (OSError, TimeoutError) as e:
                raise UsageError(f"grade: no Dask cluster answers at {scheduler} ({e}). Start "
                                 f"one (`dask scheduler`, then `dask worker {scheduler}` on "
                                 "each machine) or leave SCHEDULER unset.") from None
            self.where = f"the Dask cluster at {scheduler}"
        else:
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None,
                                        memory_limit=0, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.where = f"a local Dask cluster of {jobs} worker(s)"
        self.started: dict[str, float] = {}
        self.labels: dict[str, str] = {}

    def run(self, jobs: Iterable[tuple[str, str, dict]], done: Callable[[str, object], None],
            window: int) -> None:
        """Submit (key, label, job) triples, at most `window` at a time, and call
        done(key, result or exception) as each ends. A window of one job per worker keeps a
        class of 300 out of memory and never queues a job behind a long one on a busy worker
        while another worker idles."""
        from distributed import as_completed

        from grader.job import run_on_worker

        def submit(key, label, job):
            self.labels[key] = label
            pending.add(self.client.submit(run_on_worker, job, key=key, pure=False))

        pending = as_completed()
        queued = iter(jobs)
        for key, label, job in queued:
            submit(key, label, job)
            if pending.count() >= window:
                break
        for future in pending:
            nxt = next(queued, None)
            if nxt is not None:  # first, so that the worker need not wait for done()
                submit(*nxt)
            try:
                result = future.result()
            except Exception as e:  # KilledWorker, or a bug of ours: still a row
                result = e
            self.started.pop(future.key, None)
            done(future.key, result)
            future.release()

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def running(self) -> dict[str, float]:
        """The jobs running now, with the seconds each has run (as far as we have seen)."""
        now = time.monotonic()
        try:
            keys = [k for ks in self.client.processing().values() for k in ks]
        except Exception:
            return {}
        for key in keys:
            self.started.setdefault(key, now)
        return {k: now - self.started[k] for k in keys}

    def workers(self) -> int:
        """How many jobs the cluster runs at once: its workers' threads."""
        workers = self.client.scheduler_info().get("workers", {}).values()
        return max(1, sum(w.get("nthreads", 1) for w in workers))

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
