"""Running the assembled notebook in its sandboxed kernel, cell by cell (nbclient).

nbclient's NotebookClient does the protocol. Where it falls short for hostile code:

- Verdicts: nbgrader scores a test cell from its outputs and replies, which the code in the
  kernel writes (a suppressed traceback, a forged execute_result or a forged "ok" reply
  passes). Here no reply decides anything: the checks' observations do (below). The
  grader's guard (kernel_guard.py) checks after every cell that nothing changed how later
  cells run or report, for the review column.
- A kernel that dies (os._exit, a crash) raises DeadKernelError and nbclient gives up on the
  notebook; here the cell gets an error, every later cell is marked as not run, and the scores
  earned before still count.
- After a timeout the kernel is interrupted; code that ignores the interrupt would make every
  later cell wait out its timeout too. Such a kernel is stopped.
- Output is counted as it arrives, every byte of every message (streams, rich data and its
  metadata, tracebacks, display updates), and cut at a limit per cell and per notebook.
- Checks: after the last cell, each test cell's check (its hidden region) runs in the
  kernel (grader/observe.py) and its observations come back as data; verdicts are made
  from them outside (grader/checks.py). What the kernel emits from then on never reaches
  the notebook, so nothing the hidden code shows can get into the feedback. A kernel that
  died or was stopped is started again and the cells before that point replayed, so that
  the work done before still counts.
"""

from __future__ import annotations

import asyncio
import json
import time

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import channel_socket_types
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat.v4 import new_output
from traitlets import Instance

from grader.model import CellPlan, Status

GUARD = "__import__('sys').modules['_d2l_grading_guard']"
OBSERVE = "__import__('sys').modules['_d2l_grading_observe']"
# One frame of a kernel message; a larger one ends the connection. zmq counts each frame on
# its own and buffers a message whole: what bounds the total is the job's own process
# (grader/job.py, run_bounded).
MAX_MESSAGE_BYTES = 64 * 2**20
MEMORY_WORDS = ("memoryerror", "cannot allocate memory", "can't allocate memory", "bad_alloc",
                "out of memory", "resource_exhausted", "resourceexhausted",
                "failed to allocate")
DISK_WORDS = ("no space left on device", "file too large", "disk quota exceeded")


class CappedKernelClient(AsyncKernelClient):
    """A client whose sockets refuse any single message larger than MAX_MESSAGE_BYTES."""

    def _create_connected_socket(self, channel, identity=None):
        url = self._make_url(channel)
        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if identity:
            sock.identity = identity
        sock.connect(url)
        return sock


class OneSpec(KernelSpecManager):
    """A kernel spec manager that knows one kernel: the sandboxed one of this job."""

    spec = Instance(KernelSpec)

    def get_kernel_spec(self, kernel_name, *args, **kwargs):
        return self.spec

    def find_kernel_specs(self):
        return {"grading": ""}


def kernel_manager(argv: list[str], ipc_dir: str) -> AsyncKernelManager:
    """A manager for the sandboxed kernel, speaking over unix sockets in `ipc_dir`."""
    spec = KernelSpec(argv=argv, display_name="grading", language="python",
                      interrupt_mode="message", metadata={})
    return AsyncKernelManager(
        kernel_name="grading", kernel_spec_manager=OneSpec(spec=spec), transport="ipc",
        ip=f"{ipc_dir}/kernel", connection_file=f"{ipc_dir}/kernel.json",
        client_class="grader.execute.CappedKernelClient", shutdown_wait_time=2)


def label(cell, index: int) -> str:
    return (cell.metadata.get("nbgrader") or {}).get("grade_id") or f"cell {index}"


class GradingClient(NotebookClient):
    """Executes the notebook; `plan` says what the grader does around each of the course's
    cells, by index (a student's cell has none).
    `checks` are (grade id, check source); after the last cell they run once for each of
    `seed_sets` (grade id -> seed). Results: `reports` (one {grade id: report text or None}
    per seed set), `events`, `review`."""

    def __init__(self, nb, km, *, plan: dict[int, CellPlan], guard_source: str, guard_config: dict,
                 max_output_chars: int, max_notebook_chars: int, deadline: float,
                 time_limit: int, checks: list[tuple[str, str]] = (),
                 seed_sets: list[dict] = (), observe_source: str = "",
                 setup_timeout: float = 120, **kw):
        # coalesce_streams: a cell's stdout as one output, however the kernel's messages were
        # cut up in transit, so that the same notebook always gives the same page.
        super().__init__(nb, km=km, allow_errors=True, interrupt_on_timeout=True,
                         raise_on_iopub_timeout=True, record_timing=False,
                         store_widget_state=False, coalesce_streams=True, **kw)
        # After the interrupt, a kernel gets iopub_timeout seconds to finish the cell's
        # output; one that does not (it ignores the interrupt) raises CellTimeoutError.
        self.error_on_timeout = {"ename": "CellTimeoutError",
                                 "evalue": f"longer than {self.timeout} s", "traceback": []}
        self.plan = plan
        self.setup_timeout = setup_timeout  # installing the guard and the checks
        self.guard_source, self.guard_config = guard_source, guard_config
        self.max_output_chars, self.max_notebook_chars = max_output_chars, max_notebook_chars
        self.events: list[tuple[str, str]] = []
        self.review: list[str] = []
        self._dead: str | None = None
        self._chars: dict[int, int] = {}
        self._total = 0
        self._cut: set[int] = set()
        self._timed_out = False
        self._guard_broken = False
        self.deadline, self.time_limit = deadline, time_limit  # the whole submission's
        self._expired = False
        self.checks, self.seed_sets, self.observe_source = list(checks), list(seed_sets), \
            observe_source
        self.reports: list[dict] = []
        self._died_at: int | None = None  # the cell in which the kernel died or was stopped
        self._checks_stopped = False

    def _event(self, kind: str, detail: str) -> None:
        self.events.append((kind, detail))

    # ---------------------------------------------------------------------- the guard

    async def _silent(self, code: str, expression: str | None = None, timeout: float = 15):
        """Run grader code in the kernel, silently and without history: (status, value)."""
        msg_id = self.kc.execute(code, silent=True, store_history=False, allow_stdin=False,
                                 user_expressions={"r": expression} if expression else {})
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Exception:  # queue.Empty
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            content = msg["content"]
            value = content.get("user_expressions", {}).get("r", {})
            if content.get("status") != "ok" or (expression and value.get("status") != "ok"):
                return "error", value.get("evalue") or content.get("evalue", "")
            return "ok", value.get("data", {}).get("text/plain")
        return "timeout", ""  # a state of this call (its review text says it), not a Status

    async def _install_guard(self) -> None:
        code = ("def __d2l_grading_install():\n"
                "    import sys, types\n"
                "    m = types.ModuleType('_d2l_grading_guard')\n"
                f"    exec(compile({self.guard_source!r}, '<grading guard>', 'exec'), "
                "m.__dict__)\n"
                "    sys.modules['_d2l_grading_guard'] = m\n"
                "__d2l_grading_install()\n"
                "del __d2l_grading_install\n")
        status, why = await self._silent(code, timeout=self.setup_timeout)
        if status != "ok":
            self._guard_broken = True
            self.review.append(f"the grader's checks could not start in the kernel ({why})")
            return
        await self._guard("before the first cell", f"install({json.dumps(self.guard_config)!r})",
                          timeout=self.setup_timeout)

    async def _guard(self, where: str, call: str, timeout: float = 15) -> None:
        """Call the guard in the kernel; what it reports (a JSON list) goes to review."""
        if self._guard_broken:
            return
        status, value = await self._silent("", f"{GUARD}.{call}", timeout=timeout)
        if status != "ok":
            self._guard_broken = True  # said once: it stays broken
            self.review.append(f"{where}: the grader's checks stopped working in the kernel "
                               f"({status}: {str(value)[:120]})")
            return
        if value:
            try:
                changes = json.loads(_literal(value))
            except (ValueError, TypeError, SyntaxError):
                changes = [f"unreadable answer {value[:80]!r}"]
            self.review += [f"{where}: {change}" for change in changes]

    # ---------------------------------------------------------------------- execution

    async def async_execute(self, reset_kc=False, **kwargs):
        """nbclient's, with the guard installed once the kernel answers, and the kernel
        (whose manager we made) killed at the end, which ends its sandbox."""
        self.reset_execution_trackers()
        loop = asyncio.get_running_loop()
        # Past the submission's time the kernel is killed: the cell running gets
        # DeadKernelError, and every later one is marked as not run.
        watchdog = loop.call_later(max(self.deadline - time.monotonic(), 0), self._expire)
        try:
            async with self.async_setup_kernel(**kwargs):
                msg_id = await ensure_async(self.kc.kernel_info())
                await self.async_wait_for_reply(msg_id)
                await self._install_guard()
                for index, cell in enumerate(self.nb.cells):
                    await self.async_execute_cell(
                        cell, index, execution_count=self.code_cells_executed + 1)
                if self.checks and self.seed_sets:
                    await self._run_checks(kwargs)
        finally:
            watchdog.cancel()
            if await ensure_async(self.km.is_alive()):
                await ensure_async(self.km.shutdown_kernel(now=True))
        return self.nb

    def _expire(self) -> None:
        self._expired = True
        asyncio.ensure_future(ensure_async(self.km.shutdown_kernel(now=True)))

    execute = run_sync(async_execute)

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    async def async_execute_cell(self, cell, cell_index, execution_count=None,
                                 store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell
        where, plan = label(cell, cell_index), self.plan.get(cell_index)
        if self._dead is not None:
            cell.outputs = [new_output("error", ename="NotRun", evalue=self._dead,
                                       traceback=[f"NotRun: {self._dead}"])]
            return cell
        if plan:  # a course cell: nothing a student's cell installed decides how this runs
            seed = plan.seed if plan.test else None
            await self._guard(where, f"before(True, {seed!r}, None)")
        self._timed_out = False
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count)
        except DeadKernelError:
            if self._expired:
                self._event(Status.SUBMISSION_TIMEOUT,
                            f"the submission ran longer than {self.time_limit} s: the kernel "
                            f"was stopped in {where} and later cells did not run")
                cell.outputs.append(new_output(
                    "error", ename="SubmissionTimeout", evalue="out of time",
                    traceback=["SubmissionTimeout: the submission ran out of time here"]))
                self._dead = "not run: the submission ran out of time"
                self._died_at = cell_index
                return cell
            code = await self._exit_code()
            why = f" ({code})" if code else ""
            self._event(Status.KERNEL_DIED, f"the kernel died in {where}{why}; later cells did "
                                            "not run")
            cell.outputs.append(new_output(
                "error", ename="DeadKernelError", evalue=f"the kernel died{why}",
                traceback=[f"DeadKernelError: the kernel died while running this cell{why}"]))
            self._dead = f"not run: the kernel died in {where}"
            self._died_at = cell_index
            return cell
        except CellTimeoutError:
            # Interrupted after the timeout, the kernel did not even finish the cell's
            # output: it ignores interrupts.
            cell.outputs.append(new_output(
                "error", ename="CellTimeoutError", evalue=f"longer than {self.timeout} s",
                traceback=[f"CellTimeoutError: this cell ran longer than {self.timeout} s "
                           "and ignored the interrupt"]))
            await self._stop(where)
            return cell
        if self._timed_out:
            if await self._responds(grace=10):
                self._event(Status.TIMEOUT, f"{where} ran longer than {self.timeout} s and was "
                                            "interrupted")
            else:
                await self._stop(where)
                return cell
        if cell_index in self._cut:
            cell.outputs.append(new_output(
                "stream", name="stdout",
                text=f"\n[output cut by the grader at {self.max_output_chars} characters]\n"))
            self._event(Status.OUTPUT_TRUNCATED, f"output of {where} cut to "
                                                 f"{self.max_output_chars} characters")
        self._limits_hit(cell, where)
        binds, imports = (plan.binds, plan.imports) if plan else ([], [])
        await self._guard(where, f"after(None, {binds!r}, {imports!r})")
        return cell

    execute_cell = run_sync(async_execute_cell)

    # ---------------------------------------------------------------------- the checks

    async def _run_checks(self, start_kwargs: dict) -> None:
        """Each check once per seed set; what the kernel emits now reaches no notebook."""
        if self._died_at is not None:
            if self._expired or not await self._restart_and_replay(start_kwargs):
                self.reports = [dict.fromkeys(s) for s in self.seed_sets]
                return
        else:  # a replayed kernel has no guard: its cells ran quietly, unchecked
            await self._guard("before the checks", "before(True, None, None)")
        status, why = await self._silent(
            "def __d2l_observe_install():\n"
            "    import sys, types\n"
            "    m = types.ModuleType('_d2l_grading_observe')\n"
            f"    exec(compile({self.observe_source!r}, '<grading checks>', 'exec'), "
            "m.__dict__)\n"
            "    sys.modules['_d2l_grading_observe'] = m\n"
            "__d2l_observe_install()\n"
            "del __d2l_observe_install\n", timeout=self.setup_timeout)
        if status != "ok":
            self.review.append(f"the grader's checks could not start in the kernel ({why})")
        drain = asyncio.ensure_future(self._discard_output())
        try:
            await self._checks_for_each_seed_set(status)
        finally:
            drain.cancel()

    async def _discard_output(self) -> None:
        """What the kernel emits while the checks run is read and dropped: it reaches no
        notebook, and does not pile up in this process."""
        while True:
            try:
                await ensure_async(self.kc.iopub_channel.get_msg(timeout=1))
            except asyncio.CancelledError:
                raise
            except Exception:  # queue.Empty, or the kernel gone
                await asyncio.sleep(0.05)

    async def _checks_for_each_seed_set(self, status: str) -> None:
        for seeds in self.seed_sets:
            reports = {}
            for gid, source in self.checks:
                if status != "ok" or self._expired or self._checks_stopped:
                    reports[gid] = None
                    continue
                reports[gid] = await self._check(gid, source, seeds.get(gid, 0))
            self.reports.append(reports)

    async def _check(self, gid: str, source: str, seed: int) -> str | None:
        """One check's report (JSON text as the kernel sent it), or None."""
        state, value = await self._silent(f"{OBSERVE}.run({source!r}, {seed!r})",
                                          f"{OBSERVE}.last", timeout=self.timeout)
        if state == "timeout" and not await ensure_async(self.km.is_alive()):
            self._checks_stopped = True
            self._event(Status.KERNEL_DIED, f"the kernel died in the checks of {gid}; later "
                                            "checks did not run")
            return None
        if state == "timeout":
            self._event(Status.TIMEOUT, f"the checks of {gid} ran longer than {self.timeout} s")
            try:
                await ensure_async(self.km.interrupt_kernel())
            except Exception:
                pass
            if not await self._responds(grace=10):
                self._checks_stopped = True
                await self._stop(f"the checks of {gid}")
            return None
        if state != "ok" or not isinstance(value, str):
            return None
        try:
            return _literal(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None

    async def _restart_and_replay(self, start_kwargs: dict) -> bool:
        """A fresh kernel with the cells before the one it died in run again, quietly."""
        try:
            if await ensure_async(self.km.is_alive()):
                await ensure_async(self.km.shutdown_kernel(now=True))
            if self.kc is not None:
                # its channels closed, not its zmq context: the manager still uses that
                self.kc._created_context = False
                self.kc.stop_channels()
                self.kc = None
            if self.km.context.closed:  # a shutdown without restart destroys it
                self.km.context = zmq.asyncio.Context()
                self.km._created_context = True
            await self.async_start_new_kernel(**start_kwargs)
            await self.async_start_new_kernel_client()
        except Exception as e:
            self.review.append(f"the kernel could not be started again for the checks "
                               f"({type(e).__name__})")
            return False
        for cell in self.nb.cells[: self._died_at]:
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if any(o.get("ename") == "CellTimeoutError" for o in cell.get("outputs", [])):
                continue  # it ignored the interrupt once: not again
            state, _ = await self._silent(cell.source, timeout=self.timeout)
            if state == "timeout" and not await self._responds(grace=10):
                return False
            if self._expired:
                return False
        return True

    def _limits_hit(self, cell, where: str) -> None:
        for out in cell.get("outputs", []):
            if out.output_type != "error":
                continue
            text = f"{out.get('ename', '')}: {out.get('evalue', '')}".lower()
            if any(w in text for w in MEMORY_WORDS):
                self._event(Status.MEMORY_LIMIT, f"{where} ran out of memory ({out.get('ename')})")
            elif any(w in text for w in DISK_WORDS):
                self._event(Status.DISK_LIMIT,
                            f"{where} ran out of disk space ({out.get('ename')})")

    async def _stop(self, where: str) -> None:
        """Shut down a kernel that ignores the interrupt; later cells will not run."""
        self._event(Status.TIMEOUT, f"{where} ran longer than {self.timeout} s and ignored the "
                                    "interrupt; the kernel was stopped and later cells did not run")
        self._dead = f"not run: the kernel was stopped in {where}"
        self._died_at = next((i for i, c in enumerate(self.nb.cells)
                              if label(c, i) == where), len(self.nb.cells))
        try:
            await ensure_async(self.km.shutdown_kernel(now=True))
        except Exception:  # already gone
            pass

    async def _responds(self, grace: float) -> bool:
        """Does the kernel answer a kernel_info request within `grace` seconds?"""
        msg_id = self.kc.kernel_info()
        deadline = time.monotonic() + grace
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Exception:  # queue.Empty: no answer in time
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    async def _exit_code(self) -> str:
        try:
            for _ in range(20):
                code = await ensure_async(self.km.provisioner.poll())
                if code is not None:
                    break
                await asyncio.sleep(0.1)
        except Exception:
            return ""
        if code is None:
            return ""
        if code < 0 or code > 128:
            return f"killed by signal {abs(code) if code < 0 else code - 128}"
        return f"exit status {code}"

    # ---------------------------------------------------------------------- output cap

    def process_message(self, msg, cell, cell_index):
        kind = msg["msg_type"]
        if kind in ("status", "execute_input"):
            return super().process_message(msg, cell, cell_index)
        if kind.startswith("comm"):
            return None  # widgets: nothing to show in a graded notebook
        content = msg["content"]
        # every frame counts: binary buffers too, which the JSON of the content omits
        size = len(json.dumps(content, default=str)) + sum(
            len(b) for b in msg.get("buffers") or [])
        used = self._chars.get(cell_index, 0)
        left = min(self.max_output_chars - used, self.max_notebook_chars - self._total)
        if size > left:
            self._cut.add(cell_index)
            if kind == "error":  # kept, short: it tells the student what failed
                msg["content"] = content = {
                    "ename": str(content.get("ename", ""))[:100],
                    "evalue": str(content.get("evalue", ""))[:500], "traceback": []}
                size = len(json.dumps(content))
            elif kind == "stream" and left > 0:
                content["text"] = str(content.get("text", ""))[:left]
                size = left
            else:
                self._chars[cell_index] = self.max_output_chars
                return None
        self._chars[cell_index] = used + size
        self._total += size
        return super().process_message(msg, cell, cell_index)


def _literal(text: str) -> str:
    """The string a user expression returned, from its repr."""
    import ast

    value = ast.literal_eval(text)
    if not isinstance(value, str):
        raise ValueError(text)
    return value
