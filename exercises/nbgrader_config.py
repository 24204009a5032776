# nbgrader configuration of the graded exercises (exercises/README.md explains the workflow).
#
# `make release` and `make grade` (ci/grading.py) load this file and add the paths
# themselves: the gradebook, build/release/, build/feedback/ and the scratch course
# directories all live under build/. Run by hand from this directory, the nbgrader CLI reads
# it too, e.g. `nbgrader validate source/lazy-init-jax/lazy-init-jax.ipynb`.
c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = "d2l-lazy-init"

# --- time, output and memory limits while grading -------------------------------------
# Seconds a single cell may run. The key is `Execute.timeout`: nbgrader's Execute
# preprocessor declares its own `timeout` trait (default 30), so the familiar
# `ExecutePreprocessor.timeout` is overridden by it and has no effect (nbgrader #1463).
c.Execute.timeout = 30
# On a timeout, interrupt the kernel and go on with the next cell (the cell scores 0).
c.Execute.interrupt_on_timeout = True
# Lines of printed output kept per cell, and traceback lines per error.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60

# Limits that ci/grading.py applies on top of nbgrader (it reads this section itself;
# nbgrader's own commands ignore it).
c.GradingLimits.memory_mb = 4096          # address space of one grading kernel
c.GradingLimits.max_output_chars = 20000  # characters of output kept per cell
c.GradingLimits.submission_timeout = 600  # seconds for one submission, all cells together

# --- creating the student version --------------------------------------------------------
# What replaces the code between `### BEGIN SOLUTION` and `### END SOLUTION`.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# --- autograding --------------------------------------------------------------------------
# Put back test cells a student deleted (an edited test cell is always restored).
c.OverwriteCells.add_missing_cells = True
