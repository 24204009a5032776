"""Where the grading jobs run: a Dask cluster (dask.distributed), local by default.

`make grade` starts a LocalCluster on this machine, JOBS worker processes of one thread
each; `make grade SCHEDULER=tcp://host:8786` uses an existing cluster whose machines have the
same checkout at the same path with `make setup` done (`dask scheduler`, then `dask worker
tcp://host:8786 --nthreads 1 --memory-limit 2GiB` on each machine, exactly as
exercises/README.md shows; on a SLURM or PBS cluster, dask-jobqueue's SLURMCluster or
PBSCluster starts the workers as batch jobs). Both take the same path: a job is a pure
function (grader.job.run_on_worker), the notebook's bytes and the course's cells in, the
result and its artifacts out, so nothing depends on a shared file system; only this process
writes the gradebook and the CSV.

The scheduler unpickles the task graph, so it imports grader.job as the workers do: `make
setup` puts the checkout on the tools env's path (ci/setup_envs.py), and every process of
that env, `dask scheduler` and `dask worker` included, imports the grader with no
PYTHONPATH. Before the first job, the scheduler and the workers are asked where they import
the grader from; one that cannot, or that imports another checkout's, stops the run with a
sentence that says so, instead of a class of `grading error` rows.

Workers stay up between jobs, so what a job imports (nbclient, nbconvert, the feedback
template) is paid once per worker. A worker that dies mid-job loses nothing: the scheduler
runs the job again on another worker, and after allowed-failures deaths the submission gets
a row that says so. That includes a worker that its nanny restarts for going past its memory
limit (MEMORY_LIMIT).
"""

from __future__ import annotations

import collections
import logging
import time
import types
from collections.abc import Callable

from grader import config
from grader.errors import UsageError
from grader.model import Result, Status
from grader.paths import ROOT

# The memory one grading worker may hold: past 95% of it (distributed.worker.memory.terminate)
# the worker's nanny restarts it, the scheduler runs its job again, and after allowed-failures
# restarts the job's row says that its worker died. The kernel is a process of its own,
# bounded by GradingLimits; the worker holds what the kernel sends back (outputs, the executed
# notebook, the feedback page), and a submission that floods it with output must not take the
# machine. Measured: a worker grading the sample class peaks at about 190 MiB, the hostile
# class (its output bomb included) at about 280 MiB; tests/tools/test_grading_dask.py checks
# that grading stays under a quarter of this.
MEMORY_LIMIT = "2GiB"


def _where_grader_is() -> str:
    """Run on the scheduler and each worker: the checkout its `grader` comes from, or why
    there is none. Pickled by value (cloudpickle: a function of this module is pickled by
    reference, which a process without the grader could not unpickle)."""
    import importlib
    from pathlib import Path

    try:
        module = importlib.import_module("grader.job")
    except Exception as e:
        return f"!{type(e).__name__}: {e}"
    return str(Path(module.__file__).resolve().parent.parent)


class Pool:
    def __init__(self, jobs: int, scheduler: str | None = None,
                 waits: config.Timeouts | None = None):
        """`waits`: c.GradingTimeouts (grader/config.py), its defaults when not given."""
        import dask
        from distributed import Client, LocalCluster

        dask.config.set({"distributed.scheduler.allowed-failures": 2,
                         "distributed.admin.tick.limit": "1h",  # a busy machine is no error
                         # the nanny's restart past MEMORY_LIMIT is the one memory action
                         # wanted: a paused worker whose memory does not come back (what the
                         # jobs it ran left behind) would never take a job again
                         "distributed.worker.memory.terminate": 0.95,
                         "distributed.worker.memory.pause": False})
        self.cluster = None
        if scheduler:
            try:
                waits = waits or config.timeouts(None)
                self.client = Client(scheduler, timeout=f"{waits.scheduler_connect}s")
                self.client.wait_for_workers(1, timeout=waits.worker_wait)
            except (OSError, TimeoutError) as e:
                raise UsageError(f"grade: no Dask cluster answers at {scheduler} ({e}). Start "
                                 f"one (`dask scheduler`, then `dask worker {scheduler}` on "
                                 "each machine) or leave SCHEDULER unset.") from None
            self.where = f"the Dask cluster at {scheduler}"
            try:
                self.check_imports(scheduler)
            except BaseException:
                self.client.close()
                raise
        else:
            # Workers are spawned by their nannies (multiprocessing's spawn), which hands them
            # this process's sys.path and working directory: they import this grader.
            self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None,
                                        memory_limit=MEMORY_LIMIT, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
            self.where = f"a local Dask cluster of {jobs} worker(s)"
        self.started: dict[str, float] = {}
        self.labels: dict[str, str] = {}

    def check_imports(self, scheduler: str) -> None:
        """The scheduler and every worker import the grader, from a checkout at ROOT."""
        # a copy of no module, which cloudpickle pickles by value: see _where_grader_is
        fn = types.FunctionType(_where_grader_is.__code__, {}, _where_grader_is.__name__)
        try:
            where = {f"the scheduler at {scheduler}": self.client.run_on_scheduler(fn)}
            where.update((f"the worker at {w}", found)
                         for w, found in self.client.run(fn).items())
        except Exception as e:
            raise UsageError(f"grade: the Dask cluster at {scheduler} would not say where it "
                             f"imports the grader from ({type(e).__name__}: {e})") from None
        setup = ("run `make setup` in that machine's checkout (it puts the checkout on the "
                 "tools env's path) and restart it as exercises/README.md shows")
        for who, found in where.items():
            if found.startswith("!"):
                raise UsageError(f"grade: {who} cannot import the grader ({found[1:]}): "
                                 f"{setup}.")
            if found != str(ROOT):
                raise UsageError(f"grade: {who} imports the grader from {found}, but this "
                                 f"checkout is {ROOT}: every machine of the cluster needs the "
                                 "same checkout at the same path.")

    def run(self, queue: collections.deque, done: Callable[[str, object], None],
            window: int) -> None:
        """Take (key, label, job) or (key, label, job, task) from the left of `queue`, at
        most `window` running at a time, and call done(key, result or exception) as each
        ends; done() may add to the queue. `task` is what a worker runs for the job
        (grader.job.run_on_worker by default). A window of one job per worker keeps a class
        of 300 out of memory and never queues a job behind a long one on a busy worker while
        another worker idles."""
        from distributed import as_completed

        from grader.job import run_on_worker

        def fill():
            while queue and pending.count() < window:
                key, label, job, *task = queue.popleft()
                self.labels[key] = label
                pending.add(self.client.submit(task[0] if task else run_on_worker, job,
                                               key=key, pure=False))

        pending = as_completed()
        fill()
        while pending.count():
            future = next(pending)
            fill()  # first, so that a worker need not wait for done()
            try:
                result = future.result()
            except Exception as e:  # KilledWorker, or a bug of ours: still a row
                result = e
            self.started.pop(future.key, None)
            done(future.key, result)
            future.release()
            fill()

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


def all_failed_message(results: list[Result]) -> str | None:
    """One line for a run in which every job failed with a `grading error` (its caller exits
    non-zero with it), else None. The reason given is the most common one: the detail at the
    place of each result's `grading error` status (status and detail are appended in pairs)."""
    if not results or not all(Status.GRADING_ERROR in r.status for r in results):
        return None
    reasons = collections.Counter()
    for r in results:
        i, detail = r.status.index(Status.GRADING_ERROR), r.detail
        reasons[detail[i] if i < len(detail) else (detail[-1] if detail else "")] += 1
    reason, count = reasons.most_common(1)[0]
    reason = " ".join(str(reason).split())  # one line
    reason = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in reason)
    if len(reason) > 300:
        reason = reason[:299] + "…"
    n = len(results)
    jobs = "the one job" if n == 1 else f"every one of the {n} jobs"
    also = "" if count == n else f" ({count} of them; {len(reasons) - 1} other reason(s))"
    return f"grade: {jobs} failed (grading error): {reason or 'no detail given'}{also}"
