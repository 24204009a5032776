"""Wrong answers the course's tests must catch: mutation testing of the exercises.

A test that passes every answer proves nothing. Each mutant below is a plausible wrong answer
to one exercise, written as changes to the reference solutions (make_classes.py's vocabulary:
("replace", grade_id, old, new) in the solved cell). For every framework it applies to, it
names the test cells that must lose their points, and no others:

- a wrong prediction loses the prediction check;
- an answer that only fits the visible tests (their sizes, their networks) passes them and
  loses the hidden tests: the proof that the hidden tests ask more than the visible ones;
- a wrong design (max pooling, averaging the raw features, a weight read the wrong way
  round) loses the hidden tests, and the visible ones too where they see it.

The tools suite grades them all with the grader (`make grade`'s machinery), next to the
reference solutions, which must score 15, in the same run as the sample class (conftest.py's
`sample_run`); tests/tools/test_grading_mutants.py reads their verdicts. To try them by hand:

    .venvs/tools/bin/python tests/grading/mutants.py build/mutants
    make grade SUBMISSIONS=build/mutants/class   # then compare with build/mutants/mutants.json

Exercises are independent of each other, so one submission carries one mutant of each
exercise: the class stays small (grading time is what the test costs), and a mutant's verdict
is read from its own exercise's cells.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_classes import ROOT, SOLVED, VISIBLE_SIZE, write_submission  # noqa: E402

FRAMEWORKS = ("pytorch", "tensorflow", "mxnet", "jax")
EXERCISES = (1, 2, 3)
POINTS = {"prediction-check": 1, "visible": 2, "hidden": 2}  # each exercise's test cells
REFERENCE = "reference"


@dataclass(frozen=True)
class Mutant:
    name: str
    exercise: int
    why: str
    changes: dict  # framework -> changes to the solved notebook; absent: does not apply
    caught_by: tuple = ("hidden",)  # the exercise's test cells that must lose their points

    def cells(self) -> set[str]:
        return {f"ex{self.exercise}-{part}" for part in self.caught_by}


def same(grade_id: str, old: str, new: str, fws=FRAMEWORKS) -> dict:
    """One replacement that reads the same in every framework's solution."""
    return {fw: [("replace", grade_id, old, new)] for fw in fws}


def each(grade_id: str, **pairs) -> dict:
    """A replacement of its own per framework: fw=(old, new) or fw=[(old, new), ...]."""
    return {fw: [("replace", grade_id, *pair) for pair in
                 (pair_or_pairs if isinstance(pair_or_pairs, list) else [pair_or_pairs])]
            for fw, pair_or_pairs in pairs.items()}


def instead_of_the_mean(torch: str, keras: str, gluon_and_flax: str) -> dict:
    """TiedNet's mean over the features replaced by another reduction, in each API's words."""
    return each("ex3-solution", pytorch=("H.mean(dim=1)", torch),
                tensorflow=("keras.ops.mean(H, axis=1)", keras),
                mxnet=("H.mean(axis=1)", gluon_and_flax), jax=("H.mean(axis=1)", gluon_and_flax))


PLAIN_DOC = '"""An MLP whose first layer knows its input size and whose output layer is lazy."""'
DOCSTRINGS = {  # the first line of each partly_lazy_mlp, after which the sizes get fixed
    "pytorch": PLAIN_DOC, "jax": PLAIN_DOC,
    "tensorflow": '"""An MLP that is given its input size; its Dense layers are not."""',
    "mxnet": '"""An initialized MLP whose first layer knows its input size; the second does '
             'not."""'}
FIXED_SIZES = "\n    num_inputs, num_hiddens, num_outputs = 20, 256, 10  # the tests' sizes"

MUTANTS = [
    # ------------------------------------------------------------------ Exercise 1
    Mutant("ex1-predict-which-layers", 1,
           "which layers have parameters before any data, as another framework has it",
           {**same("ex1-prediction", "params_before_data = [True, False]",
                   "params_before_data = [True, True]", ("pytorch", "mxnet", "jax")),
            **same("ex1-prediction", "params_before_data = [True, True]",
                   "params_before_data = [True, False]", ("tensorflow",))},
           ("prediction-check",)),
    Mutant("ex1-predict-weight-layout", 1,
           "the output layer's weight shape with its axes the other way round",
           {**same("ex1-prediction", "(10, 256)", "(256, 10)", ("pytorch", "mxnet")),
            **same("ex1-prediction", "(256, 10)", "(10, 256)", ("tensorflow", "jax"))},
           ("prediction-check",)),
    Mutant("ex1-visible-sizes", 1, "partly_lazy_mlp builds the visible tests' sizes, 20-256-10",
           {fw: [("replace", "ex1-solution", doc, doc + FIXED_SIZES)]
            for fw, doc in DOCSTRINGS.items()}),
    Mutant("ex1-all-lazy", 1, "the first layer is not told its input size either",
           each("ex1-solution",
                pytorch=("nn.Linear(num_inputs, num_hiddens)", "nn.LazyLinear(num_hiddens)"),
                tensorflow=("keras.Input(shape=(num_inputs,)),\n", ""),
                mxnet=(", in_units=num_inputs", ""),
                jax=("nnx.Linear(num_inputs, num_hiddens, rngs=rngs)",
                     "bridge.ToNNX(nn.Dense(num_hiddens), rngs=rngs)"))),
    Mutant("ex1-first-layers-only", 1,
           "created looks at as many layers as the visible tests' networks have",
           each("ex1-solution",
                pytorch=("for layer in net:", "for layer in list(net)[:3]:"),
                tensorflow=("for layer in net.layers]", "for layer in net.layers[:2]]"),
                mxnet=("for layer in net:", "for layer in list(net)[:3]:"),
                jax=("for layer in net.layers if", "for layer in net.layers[:3] if"))),
    # ------------------------------------------------------------------ Exercise 2
    Mutant("ex2-predict-fails-building", 2,
           "a declared mismatch predicted to fail when the network is built",
           {**same("ex2-prediction", 'mismatch_fails_at = "first pass"',
                   'mismatch_fails_at = "building"', ("pytorch", "mxnet", "jax")),
            **same("ex2-prediction", 'mismatch_fails_at = "never"\nmismatch_error = None',
                   'mismatch_fails_at = "building"\nmismatch_error = "ValueError"',
                   ("tensorflow",))},
           ("prediction-check",)),
    Mutant("ex2-predict-error-type", 2, "the wrong-batch error of another framework",
           each("ex2-prediction",
                pytorch=('wrong_batch_error = "RuntimeError"', 'wrong_batch_error = "ValueError"'),
                tensorflow=('wrong_batch_error = "ValueError"',
                            'wrong_batch_error = "RuntimeError"'),
                mxnet=('wrong_batch_error = "MXNetError"', 'wrong_batch_error = "ValueError"'),
                jax=('wrong_batch_error = "ScopeParamShapeError"',
                     'wrong_batch_error = "TypeError"')),
           ("prediction-check",)),
    Mutant("ex2-visible-sizes", 2, "checked_forward expects the visible tests' 20 features",
           same("ex2-solution", "size = X.shape[-1]", VISIBLE_SIZE)),
    Mutant("ex2-first-two-layers", 2,
           "checked_forward checks as many layers as the visible tests' networks have",
           same("ex2-solution", "for inputs, outputs in layer_sizes(net):",
                "for inputs, outputs in layer_sizes(net)[:2]:")),
    Mutant("ex2-weight-layout", 2, "layer_sizes reads the weight's axes the other way round",
           {**same("ex2-solution", "outputs, inputs = layer.weight.shape",
                   "inputs, outputs = layer.weight.shape", ("pytorch", "mxnet")),
            **same("ex2-solution", "inputs, outputs = layer.kernel.shape",
                   "outputs, inputs = layer.kernel.shape", ("tensorflow", "jax"))},
           ("visible", "hidden")),
    # ------------------------------------------------------------------ Exercise 3
    Mutant("ex3-predict-no-biases", 3, "parameter counts without the biases",
           same("ex3-prediction", "mlp_params = (147, 243)\ntied_params = (83, 83)",
                "mlp_params = (128, 224)\ntied_params = (64, 64)"),
           ("prediction-check",)),
    Mutant("ex3-max-pooling", 3, "the maximum over the features instead of the mean",
           instead_of_the_mean("H.max(dim=1).values", "keras.ops.max(H, axis=1)",
                               "H.max(axis=1)")),
    Mutant("ex3-raw-mean", 3, "the mean of the raw features, then the shared layer",
           each("ex3-solution",
                pytorch=("X.unsqueeze(-1)", "X.mean(dim=1, keepdim=True).unsqueeze(-1)"),
                tensorflow=("keras.ops.expand_dims(X, -1)",
                            "keras.ops.expand_dims(keras.ops.mean(X, axis=1, keepdims=True), -1)"),
                mxnet=("np.expand_dims(X, -1)",
                       "np.expand_dims(X.mean(axis=1, keepdims=True), -1)"),
                jax=("X[..., None]", "X.mean(axis=1, keepdims=True)[..., None]"))),
    Mutant("ex3-sum", 3, "the sum over the features instead of the mean",
           instead_of_the_mean("H.sum(dim=1)", "keras.ops.sum(H, axis=1)", "H.sum(axis=1)")),
    Mutant("ex3-visible-sizes", 3, "TiedNet builds the visible tests' 16 hidden units, 3 outputs",
           each("ex3-solution",
                pytorch=[("nn.Linear(1, num_hiddens)", "nn.Linear(1, 16)"),
                         ("nn.Linear(num_hiddens, num_outputs)", "nn.Linear(16, 3)")],
                tensorflow=[("layers.Dense(num_hiddens,", "layers.Dense(16,"),
                            ("layers.Dense(num_outputs)", "layers.Dense(3)")],
                mxnet=[("nn.Dense(num_hiddens,", "nn.Dense(16,"),
                       ("nn.Dense(num_outputs)", "nn.Dense(3)")],
                jax=[("nnx.Linear(1, num_hiddens,", "nnx.Linear(1, 16,"),
                     ("nnx.Linear(num_hiddens, num_outputs,", "nnx.Linear(16, 3,")])),
    # Wrong answers the tests were not written for: what a student who read the task
    # quickly would hand in (issue 17). Each must lose the hidden tests.
    Mutant("ex3-no-relu", 3, "the shared layer's units without the ReLU: the network is linear",
           each("ex3-solution",
                pytorch=("torch.relu(self.shared(X.unsqueeze(-1)))",
                         "self.shared(X.unsqueeze(-1))"),
                tensorflow=('layers.Dense(num_hiddens, activation="relu")',
                            "layers.Dense(num_hiddens)"),
                mxnet=('nn.Dense(num_hiddens, activation="relu", flatten=False)',
                       "nn.Dense(num_hiddens, flatten=False)"),
                jax=("jax.nn.relu(self.shared(X[..., None]))", "self.shared(X[..., None])"))),
    Mutant("ex3-tanh", 3, "tanh units where the task says ReLU",
           each("ex3-solution",
                pytorch=("torch.relu(", "torch.tanh("),
                tensorflow=('activation="relu"', 'activation="tanh"'),
                mxnet=('activation="relu"', 'activation="tanh"'),
                jax=("jax.nn.relu(", "jax.numpy.tanh("))),
    Mutant("ex3-no-shared-bias", 3, "the shared layer without its biases",
           each("ex3-solution",
                pytorch=("nn.Linear(1, num_hiddens)", "nn.Linear(1, num_hiddens, bias=False)"),
                tensorflow=('activation="relu"', 'activation="relu", use_bias=False'),
                mxnet=("flatten=False", "flatten=False, use_bias=False"),
                jax=("nnx.Linear(1, num_hiddens, rngs=rngs)",
                     "nnx.Linear(1, num_hiddens, use_bias=False, rngs=rngs)"))),
    Mutant("ex2-message-swapped", 2, "the two sizes of the message the other way round",
           same("ex2-solution", 'f"expected {inputs} features, got {size}"',
                'f"expected {size} features, got {inputs}"'),
           ("visible", "hidden")),
    # The task says which names a Keras model keeps for itself; this shows why.
    Mutant("ex3-reserved-name", 3, "the output layer stored as self.output, a Keras property",
           same("ex3-solution", "self.head", "self.output", ("tensorflow",)),
           ("visible", "hidden")),
]


def applicable(fw: str, exercise: int) -> list[Mutant]:
    return [m for m in MUTANTS if m.exercise == exercise and fw in m.changes]


def plan(frameworks=FRAMEWORKS) -> dict[str, dict[str, dict[int, Mutant]]]:
    """student -> framework -> exercise -> the mutant that student's notebook carries.

    Student k hands in, for each framework, the k-th mutant of each exercise (where there is
    one; the reference answer otherwise). The reference student hands in the solutions."""
    students: dict = {REFERENCE: {fw: {} for fw in frameworks}}
    for fw in frameworks:
        for exercise in EXERCISES:
            for k, mutant in enumerate(applicable(fw, exercise), start=1):
                students.setdefault(f"mutants-{k}", {}).setdefault(fw, {})[exercise] = mutant
    return students


def write_class(released_dir: Path, out: Path, frameworks=FRAMEWORKS) -> dict:
    """The submissions under `out`, and what each must score: student -> framework ->
    {"mutants": {exercise: name}, "lose": [grade ids that must score 0]}."""
    expected: dict = {}
    for student, by_fw in plan(frameworks).items():
        for fw, mutants in by_fw.items():
            changes = [*SOLVED] + [c for m in mutants.values() for c in m.changes[fw]]
            write_submission(released_dir, out, student, fw, changes)
            expected.setdefault(student, {})[fw] = {
                "mutants": {e: m.name for e, m in mutants.items()},
                "lose": sorted(set().union(*(m.cells() for m in mutants.values()))),
            }
    return expected


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/grading/mutants.py OUT_DIR  (writes OUT_DIR/class and "
              "OUT_DIR/mutants.json)", file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    if (out / "class").exists():
        print(f"{out / 'class'} exists: remove it or name another folder", file=sys.stderr)
        return 2
    subprocess.run([sys.executable, "-m", "grader", "release", "--build", str(out / "build")],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    expected = write_class(out / "build" / "release", out / "class")
    (out / "mutants.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"mutants: {sum(len(v) for v in expected.values())} submissions in {out / 'class'}; "
          f"what each must lose in {out / 'mutants.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
