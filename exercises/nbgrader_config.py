# nbgrader configuration of the graded exercises (exercises/README.md explains the workflow).
#
# `make release` and `make grade` (python -m grader) load this file and add the paths
# themselves: the gradebook, build/release/, build/feedback/ and the scratch course
# directories all live under build/. Run by hand from this directory, the nbgrader CLI reads
# it too, e.g. `nbgrader validate source/lazy-init-jax/lazy-init-jax.ipynb`.
c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "d2l-lazy-init"

# --- time, output and memory limits while grading -------------------------------------
# Seconds a single cell may run. The key is `Execute.timeout`: nbgrader's Execute
# preprocessor declares its own `timeout` trait (default 30), so the familiar
# `ExecutePreprocessor.timeout` is overridden by it and has no effect (nbgrader #1463).
# On a timeout the grader interrupts the kernel and goes on with the next cell (which scores
# 0). Only keys something reads belong here: `make release` and `make grade` name any other
# (nbgrader autograde's LimitOutput, say, which `make grade` does not run), and
# `python -m grader config` lists every setting of the grader with its help.
c.Execute.timeout = 30

# Limits the grader applies on top of nbgrader (grader/course.py reads these sections
# itself; nbgrader's own commands ignore them). Each kernel runs in a bubblewrap sandbox.
c.GradingLimits.memory_mb = 4096          # address space of each process of a kernel
c.GradingLimits.cpu_seconds = 600         # CPU time of each process of a kernel
c.GradingLimits.file_mb = 64              # largest file a kernel may write
c.GradingLimits.tmpfs_mb = 256            # size of the kernel's home and of its /tmp (RAM)
c.GradingLimits.max_processes = 256       # processes and threads of one kernel
c.GradingLimits.max_output_chars = 20000  # output kept per cell (everything it emits)
c.GradingLimits.max_notebook_output_chars = 1_000_000  # output kept per notebook
c.GradingLimits.submission_timeout = 600  # seconds for one submission, all cells together
# When the grader runs as root, each job slot's kernel runs as its own host uid, counted
# from here; they must belong to no user of the machine (the grader checks).
c.GradingSandbox.uid_base = 1_900_000_000
# Where bubblewrap cannot run (macOS, no user namespaces), `make grade` stops; set this (or
# pass UNSANDBOXED=1) to grade with limits only, knowing that student code then runs with
# your rights. Every row of grades.csv then says `unsandboxed`.
c.GradingSandbox.allow_unsandboxed = False

# --- deadlines (exercises/README.md, "Deadlines and late work") ---------------------------
# A due date per assignment, compared with a submission's timestamp.txt; none set: on time.
# c.GradingDeadlines.due = {"lazy-init-pytorch": "2026-12-01 17:00:00 UTC"}
c.GradingDeadlines.penalty = "none"  # or "per_hour" / "per_day": points per started period
c.GradingDeadlines.points = 1

# --- grades into the LMS (exercises/README.md, "Grades into Canvas or Moodle") -----------
# `make export` writes one column per assignment, or one for the homework ("combined"):
# the best of the frameworks a student handed in ("best") or their mean ("mean"), under
# combined_title (name the LMS's existing assignment there, or a new one is made).
c.LMSExport.columns = "per_assignment"
c.LMSExport.combined_title = "Lazy initialization"
c.LMSExport.combined_score = "best"

# --- submissions from the LMS (exercises/README.md, "Collect") ---------------------------
# The time zone of the hand-in times in Moodle's grading worksheet (your Moodle profile's):
# set, `make collect` writes each submission's timestamp.txt from it.
# c.LMSCollect.timezone = "Europe/Berlin"

# --- creating the student version --------------------------------------------------------
# What replaces the code between `### BEGIN SOLUTION` and `### END SOLUTION`.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
