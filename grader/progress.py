"""What an instructor sees while a class is graded: a line per submission as it finishes, and
while nothing finishes, every so often what is running and about how long is left."""

from __future__ import annotations

import threading
import time

from grader import report
from grader.model import Assignment, Result

QUIET_SECONDS = 20  # after this long without a finished submission, say what is running
POLL_SECONDS = 5  # how often the background thread looks


class Progress:
    def __init__(self, total: int):
        self.total, self.count = total, 0
        self.start = self.last = time.monotonic()
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool = None

    def eta(self) -> str:
        left = self.total - self.count
        if not left:
            return "done"
        if not self.seconds:
            return "time left unknown yet"
        workers = self._pool.workers() if self._pool else 1
        # jobs run `workers` at a time; each takes about the mean so far
        minutes = left * (sum(self.seconds) / len(self.seconds)) / workers / 60
        return f"about {minutes:.0f} min left" if minutes >= 1 else "under a minute left"

    def done(self, result: Result, model: Assignment | None) -> None:
        with self._lock:
            self.count += 1
            self.last = time.monotonic()
            if result.seconds:
                self.seconds.append(result.seconds)
            score = report.fmt(result.score - result.penalty) if model else "0"  # the row's
            total = report.fmt(model.max_score) if model else "0"
            width = len(str(self.total))
            flag = "  REVIEW" if result.review else ""
            print(f"[{self.count:>{width}}/{self.total}] "
                  f"{report.escape_text(result.student):<14} "
                  f"{result.assignment or '-':<22} {score:>5}/{total:<3} "
                  f"{report.status_text(result):<24} {result.seconds:6.1f} s"
                  f"{flag}  ({self.eta()})", flush=True)

    def watch(self, pool) -> None:
        """In the background: what runs, when nothing has finished for a while."""
        self._pool = pool

        def loop():
            while not self._stop.wait(POLL_SECONDS):
                running = pool.running()  # every time: it notes when each job was first seen
                with self._lock:
                    if time.monotonic() - self.last < QUIET_SECONDS:
                        continue
                    self.last = time.monotonic()
                    names = ", ".join(f"{pool.label(k)} ({s:.0f} s)"
                                      for k, s in sorted(running.items(),
                                                         key=lambda kv: -kv[1])[:4])
                    print(f"grade: {self.count}/{self.total} done; running: "
                          f"{names or 'starting'}; {self.eta()}", flush=True)

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
