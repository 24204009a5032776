"""The grader: nbgrader assignments released and autograded, each submission in a sandbox.

An instructor's tool, run as `make release`, `make collect`, `make grade`, `make override`
and `make export` (python -m grader). One module per responsibility:

  config    every setting, with its help and default (`python -m grader config`)
  model     what flows between the modules: the settings' values, JobSpec, Result,
            ReferenceRun, GradeRow, Status
  errors    UsageError, the one error printed as a message
  paths     where the checkout, the course and the gradebook are
  course    the course folder, its nbgrader configuration, the release, the gradebook's view
  collect   finding the submissions, as untrusted files
  lms       the LMS's files: rosters (Canvas's, Moodle's, hand-kept), download file names,
            our student id
  lms_collect  an LMS's submission download into submitted/, every file in its report
  grade     a grading run: discover, plan, run on a cluster, record, report
  cluster   where jobs run: a local Dask cluster, or any Dask scheduler
  progress  what the instructor sees while a class is graded
  reuse     the fingerprint of what a grade depends on: reruns grade only what changed
  gradebook the class's record: scores in nbgrader's gradebook, the rest beside it; CSV rows
  override  an instructor's score for a test cell, with its reason, kept while the answers
            are the same
  similarity  near-identical answers across the class, for the instructor (similarity.html)
  late      due dates, timestamps and late penalties
  export    grades as Canvas or Moodle import them, per assignment or combined
  job       one submission: restore, audit, execute, verdicts, artifacts; and the
            reference solution's run, whose check reports are the expected side
  checks    the verdicts: a cell's observations judged against the reference's
  observe   what runs in the kernel after the last cell: the checks, observing plain data
  restore   the notebook that is graded: test and read-only cells put back whole
  audit     the static audit of the student's code (the `review` column)
  execute   nbclient, hardened: verdicts, output cap, dead and stubborn kernels, the guard
  kernel_guard  the checks run inside the kernel between cells
  sandbox   bubblewrap (a package): finding it, the kernel's launcher, a uid per job
            slot and the sweep after a job, the probe before grading
  report    feedback pages, grades.csv and terminal text, all escaped
"""

import sys

# Every grading job is a process of its own that imports nbformat, and with it jsonschema,
# which compiles the IRI grammar of rfc3987_syntax (a lark parser) at import: ~1.5 s a job.
# nbformat's schemas use no "format", so that checker is never called; jsonschema skips it
# when the import fails, which a None entry in sys.modules makes it do.
sys.modules.setdefault("rfc3987_syntax", None)
