"""grader/similarity.py on notebooks made here from the PyTorch assignment, with no kernel:
copies pair up (renamed, reformatted, or pasted under the template), honest answers written
apart do not, the blank template pairs with no one, hostile names and code reach the page
escaped, and notebooks that cannot be read are left out with a reason.

Run with -s to see the measured shares of every pair (what THRESHOLD was chosen from).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from grader import similarity
from grader.collect import MAX_NOTEBOOK_BYTES

ROOT = Path(__file__).resolve().parents[2]
A = "lazy-init-pytorch"
SOURCE = ROOT / "exercises" / "source" / A / f"{A}.ipynb"
# exercises/nbgrader_config.py's ClearSolutions.code_stub
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.M | re.S)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS\n.*?^[ \t]*### END HIDDEN TESTS\n?",
                    re.M | re.S)
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION(\n|$)", re.M)


def source_of(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def gid_of(cell: dict) -> str | None:
    return (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")


def release(source: dict) -> dict:
    """The student version, as nbgrader's ClearSolutions and ClearHiddenTests make it (without
    their four seconds of imports; test_release_matches_nbgrader checks it against a
    committed submission that `make release` made)."""
    nb = copy.deepcopy(source)
    for cell in nb["cells"]:
        text = source_of(cell)
        if (cell.get("metadata", {}).get("nbgrader") or {}).get("solution"):
            text = SOLUTION.sub(lambda m: "".join(f"{m.group(1)}{line}\n"
                                                  for line in STUB.splitlines()), text)
        cell["source"] = HIDDEN.sub("", text).rstrip("\n")
    return nb


SOURCE_NB = json.loads(SOURCE.read_text())
RELEASED_NB = release(SOURCE_NB)
REFERENCE = {gid_of(c): MARKER.sub("", source_of(c) + "\n").rstrip("\n")
             for c in SOURCE_NB["cells"]
             if (c.get("metadata", {}).get("nbgrader") or {}).get("solution")}
CODE_IDS = ("ex1-solution", "ex2-solution", "ex3-solution")
PREDICTIONS = {gid: text for gid, text in REFERENCE.items() if gid not in CODE_IDS}

# The reference solution copied, every name of its own renamed, the layout and comments
# changed: what a student does to a copy so that it does not look like one.
DISGUISED = {
    "ex1-solution": '''def partly_lazy_mlp(num_inputs, num_hiddens, num_outputs):
    """An MLP whose first layer knows its input size and whose output layer is lazy."""
    return nn.Sequential(
        nn.Linear(num_inputs, num_hiddens),
        nn.ReLU(),
        nn.LazyLinear(num_outputs),
    )


def created(net):
    """For each layer with parameters: do its parameters hold values yet?"""
    answer = []  # one flag per layer
    for mod in net:
        ps = list(mod.parameters(recurse=False))
        if ps:
            answer.append(not any(nn.parameter.is_lazy(q) for q in ps))
    return answer''',
    "ex2-solution": '''def layer_sizes(net):
    """(inputs, outputs) of each layer with parameters, from the shape of its weight."""
    result = []
    for m in net:
        if list(m.parameters(recurse=False)):
            n_out, n_in = m.weight.shape
            result.append((n_in, n_out))
    return result


def checked_forward(net, X):
    """net(X), or a ValueError at the first layer whose input size does not fit."""
    width = X.shape[-1]
    for n_in, n_out in layer_sizes(net):
        if width != n_in:
            raise ValueError(f'expected {n_in} features, got {width}')
        width = n_out
    return net(X)''',
    "ex3-solution": '''class TiedNet(nn.Module):
    """One shared layer for every feature, the mean over the features, an output layer."""

    def __init__(self, num_hiddens, num_outputs):
        super().__init__()
        self.shared = nn.Linear(1, num_hiddens)
        self.head = nn.Linear(num_hiddens, num_outputs)

    def forward(self, X):
        # every feature through the same layer
        units = torch.relu(self.shared(X.unsqueeze(-1)))
        return self.head(units.mean(dim=1))''',
}

# Two correct answers written apart from the reference and from each other (both give every
# observation of the source notebook's visible and hidden tests the reference gives; checked
# by running them in the PyTorch env when they were written).
HONEST_CLEO = {
    "ex1-solution": '''def partly_lazy_mlp(num_inputs, num_hiddens, num_outputs):
    """An MLP whose first layer knows its input size and whose output layer is lazy."""
    hidden = nn.Linear(in_features=num_inputs, out_features=num_hiddens)
    return nn.Sequential(hidden, nn.ReLU(), nn.LazyLinear(out_features=num_outputs))


def created(net):
    """For each layer with parameters: do its parameters hold values yet?"""
    with_params = [m for m in net if len(list(m.parameters(recurse=False))) > 0]
    return [all(not nn.parameter.is_lazy(p) for p in m.parameters(recurse=False))
            for m in with_params]''',
    "ex2-solution": '''def layer_sizes(net):
    """(inputs, outputs) of each layer with parameters, from the shape of its weight."""
    return [tuple(reversed(m.weight.shape)) for m in net
            if len(list(m.parameters(recurse=False))) > 0]


def checked_forward(net, X):
    """net(X), or a ValueError at the first layer whose input size does not fit."""
    sizes = layer_sizes(net)
    wanted = [n_in for n_in, _ in sizes]
    given = [X.shape[-1]] + [n_out for _, n_out in sizes[:-1]]
    bad = next(((w, g) for w, g in zip(wanted, given) if w != g), None)
    if bad is not None:
        raise ValueError("expected {} features, got {}".format(*bad))
    return net(X)''',
    "ex3-solution": '''class TiedNet(nn.Module):
    """One shared layer for every feature, the mean over the features, an output layer."""

    def __init__(self, num_hiddens, num_outputs):
        super().__init__()
        self.shared = nn.Linear(in_features=1, out_features=num_hiddens)
        self.head = nn.Linear(in_features=num_hiddens, out_features=num_outputs)

    def forward(self, X):
        batch, features = X.shape
        units = nn.functional.relu(self.shared(X.reshape(batch, features, 1)))
        return self.head(units.sum(dim=1) / features)''',
}
HONEST_DEV = {
    "ex1-solution": '''def partly_lazy_mlp(num_inputs, num_hiddens, num_outputs):
    """An MLP whose first layer knows its input size and whose output layer is lazy."""
    net = nn.Sequential()
    net.append(nn.Linear(num_inputs, num_hiddens))
    net.append(nn.ReLU())
    net.append(nn.LazyLinear(num_outputs))
    return net


def created(net):
    """For each layer with parameters: do its parameters hold values yet?"""
    answer = []
    for i in range(len(net)):
        weight = getattr(net[i], "weight", None)
        if weight is None:
            continue
        answer.append(not isinstance(weight, nn.parameter.UninitializedParameter))
    return answer''',
    "ex2-solution": '''def layer_sizes(net):
    """(inputs, outputs) of each layer with parameters, from the shape of its weight."""
    result = []
    for module in net.children():
        if hasattr(module, "in_features") and hasattr(module, "weight"):
            rows, cols = module.weight.size()
            result.append((int(cols), int(rows)))
    return result


def checked_forward(net, X):
    """net(X), or a ValueError at the first layer whose input size does not fit."""
    features = int(X.shape[X.dim() - 1])
    i = 0
    shapes = layer_sizes(net)
    while i < len(shapes):
        takes, gives = shapes[i]
        if takes != features:
            raise ValueError("expected %d features, got %d" % (takes, features))
        features = gives
        i += 1
    return net(X)''',
    "ex3-solution": '''class TiedNet(nn.Module):
    """One shared layer for every feature, the mean over the features, an output layer."""

    def __init__(self, num_hiddens, num_outputs):
        super().__init__()
        self.shared, self.head = nn.Linear(1, num_hiddens), nn.Linear(num_hiddens, num_outputs)

    def forward(self, X):
        per_feature = [torch.relu(self.shared(X[:, j:j + 1])) for j in range(X.shape[1])]
        mean = torch.stack(per_feature, dim=0).mean(dim=0)
        return self.head(mean)''',
}
# The stubs left in, the reference's code pasted under each.
STUB_KEPT = {gid_of(c): SOLUTION.sub(lambda m: "".join(f"{m.group(1)}{line}\n"
                                                       for line in STUB.splitlines())
                                     + MARKER.sub("", m.group(0)), source_of(c))
             for c in SOURCE_NB["cells"] if gid_of(c) in CODE_IDS}

CLASS = {
    "ada": REFERENCE,  # the reference solution, as it is
    "ben": {**PREDICTIONS, **DISGUISED},  # the reference, disguised
    "gus": {**PREDICTIONS, **STUB_KEPT},  # the reference under the template's stubs
    "cleo": {**PREDICTIONS, **HONEST_CLEO},  # correct, written apart
    "dev": {**PREDICTIONS, **HONEST_DEV},  # correct, written apart again
    "eve": {},  # the blank template, handed in as released
    # the reference's second exercise, cleo's first and third
    "fay": {**PREDICTIONS, **HONEST_CLEO, "ex2-solution": REFERENCE["ex2-solution"]},
}
COPIES = {("ada", "ben"), ("ada", "gus"), ("ben", "gus")}  # the reference, three times
PARTS = {("ada", "fay"), ("ben", "fay"), ("fay", "gus"), ("cleo", "fay")}  # fay's parts


def submission(answers: dict[str, str], base: dict = RELEASED_NB) -> dict:
    nb = copy.deepcopy(base)
    for cell in nb["cells"]:
        if gid_of(cell) in answers:
            cell["source"] = answers[gid_of(cell)]
    return nb


def write(root: Path, student: str, nb, assignment: str = A) -> Path:
    path = root / "submitted" / student / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb))
    return path


@pytest.fixture
def released(tmp_path) -> dict[str, Path]:
    path = tmp_path / "release" / A / f"{A}.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(RELEASED_NB))
    return {A: path}


@pytest.fixture
def sample(tmp_path) -> dict[tuple[str, str], Path]:
    return {(s, A): write(tmp_path, s, submission(answers)) for s, answers in CLASS.items()}


def test_release_matches_nbgrader():
    """release() here gives the cells `make release` gives: dev's committed mxnet notebook
    (tests/grading/make_classes.py) keeps exercise 2 as released."""
    name = "lazy-init-mxnet"
    ours = release(json.loads((ROOT / "exercises" / "source" / name / f"{name}.ipynb")
                              .read_text()))
    theirs = json.loads((ROOT / "tests" / "grading" / "sample_class" / "dev" / name /
                         f"{name}.ipynb").read_text())
    solved = {"ex1-prediction", "ex1-solution", "ex3-prediction", "ex3-solution"}
    assert len(ours["cells"]) == len(theirs["cells"])
    pairs = [(source_of(a), source_of(b))
             for a, b in zip(ours["cells"], theirs["cells"], strict=True)
             if gid_of(b) not in solved]
    assert len(pairs) > 20
    assert all(a == b for a, b in pairs), next((a, b) for a, b in pairs if a != b)
    assert "raise NotImplementedError()" in source_of(
        next(c for c in ours["cells"] if gid_of(c) == "ex2-solution"))


def test_measured_shares(sample, released):
    """Every pair that shares anything, with its shares: copies near 1, honest pairs far
    below THRESHOLD (the numbers similarity.py's THRESHOLD comment quotes)."""
    every = similarity.similarities(sample, released)
    shown = {p.students: p for p in every}
    for p in every:
        print(f"{p.students[0]:>5} {p.students[1]:<5} score {p.score:.2f} "
              f"shares {p.shares[0]:.2f} {p.shares[1]:.2f} matched {p.matched}")
    for pair in COPIES:
        assert shown[pair].score >= 0.99, pair
    for pair in PARTS:  # one exercise of three copied whole: about 0.5
        assert shown[pair].score >= similarity.THRESHOLD + 0.15, pair
    honest = [p for p in every if p.students not in COPIES | PARTS]
    assert {p.students for p in honest} <= {tuple(sorted((a, b))) for a in ("cleo", "dev")
                                             for b in ("ada", "ben", "gus", "cleo", "dev", "fay")}
    assert max(p.score for p in honest) < similarity.THRESHOLD - 0.15
    assert max(p.matched for p in honest) < similarity.MIN_MATCHED / 2
    assert not any("eve" in p.students for p in every)  # nothing of hers is left to share


def test_copies_pair_and_honest_answers_do_not(sample, released):
    pairs = similarity.find_pairs(sample, released)
    # cleo and dev, written apart, pair with no one, nor eve, who handed in the template
    assert {p.students for p in pairs} == COPIES | PARTS
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    assert all(p.assignment == A and p.students == tuple(sorted(p.students)) for p in pairs)
    assert pairs.skipped == {} and pairs.compared == len(CLASS)


def test_only_the_students_own_text_is_marked(sample, released):
    pair = next(p for p in similarity.find_pairs(sample, released)
                if p.students == ("ada", "gus"))
    cell = next(c for c in pair.cells if c.grade_id == "ex2-solution")
    text, spans = cell.texts[1], cell.spans[1]  # gus: stubs and docstrings kept
    marked = "".join(text[a:b] for a, b in spans)
    assert "raise ValueError" in marked and "NotImplementedError" not in marked
    assert "(inputs, outputs) of each layer" not in marked


def test_only_submissions_of_the_same_assignment_are_compared(tmp_path, released):
    other = "lazy-init-jax"
    rel = {**released, other: released[A]}  # the same text, another assignment
    subs = {("ada", A): write(tmp_path, "ada", submission(REFERENCE)),
            ("ben", other): write(tmp_path, "ben", submission(REFERENCE), other)}
    assert similarity.find_pairs(subs, rel) == []


def test_the_page_and_the_review_lines(sample, released, tmp_path):
    pairs = similarity.find_pairs(sample, released)
    out = tmp_path / "build" / "similarity.html"
    similarity.write_report(pairs, out)
    page = out.read_text()
    first = page.index("ada and ben")
    assert first < page.index("ada and gus") and "<mark>" in page
    assert "default-src 'none'" in page and "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page and "src=" not in page
    lines = similarity.review_lines(pairs)
    assert set(lines) == {(s, A) for s in ("ada", "ben", "gus", "fay", "cleo")}
    assert lines[("ben", A)].startswith("answers near-identical to ada (")
    assert "similarity.html" in lines[("ben", A)] and "\n" not in lines[("ben", A)]
    similarity.write_report(similarity.find_pairs({}, released), out)
    assert "No pair reached the threshold" in out.read_text()


def test_hostile_names_and_code_are_escaped(tmp_path, released):
    evil = "<script>alert(1)</script>\x1b[31m\x07"
    code = REFERENCE["ex2-solution"] + f"\n\n# </pre><script>fetch('//x')</script>{evil}\n"
    answers = {**REFERENCE, "ex2-solution": code}
    subs = {(f"{evil}a", A): write(tmp_path, "a", submission(answers)),
            ("b<img src=x onerror=alert(1)>", A): write(tmp_path, "b", submission(answers))}
    pairs = similarity.find_pairs(subs, released)
    assert len(pairs) == 1
    out = tmp_path / "similarity.html"
    similarity.write_report(pairs, out)
    page = out.read_text()
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m\\x07a" in page
    assert "&lt;/pre&gt;&lt;script&gt;fetch(" in page
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", page)
    line = similarity.review_lines(pairs)[("b<img src=x onerror=alert(1)>", A)]
    assert "\x1b" not in line and "\x07" not in line and "\\x1b[31m\\x07a (100%)" in line


def test_unreadable_notebooks_are_skipped_with_a_reason(tmp_path, released):
    good = submission(REFERENCE)
    bad_source = submission(REFERENCE)
    next(c for c in bad_source["cells"] if gid_of(c) == "ex1-solution")["source"] = [1, 2]
    bad_cells = submission(REFERENCE)
    bad_cells["cells"].insert(0, "not a cell")
    long = submission({**REFERENCE, "ex3-solution": REFERENCE["ex3-solution"]
                       + "\n# " + "x" * similarity.MAX_CELL_CHARS})
    huge = write(tmp_path, "huge", "{}")
    with huge.open("wb") as f:
        f.truncate(MAX_NOTEBOOK_BYTES + 1)  # sparse: nothing on disk
    link = tmp_path / "submitted" / "link" / A / f"{A}.ipynb"
    link.parent.mkdir(parents=True)
    link.symlink_to(write(tmp_path, "ada", good))
    subs = {
        ("ada", A): write(tmp_path, "ada", good),
        ("ben", A): write(tmp_path, "ben", json.dumps(good)[:5000]),  # cut off mid-file
        ("cleo", A): write(tmp_path, "cleo", "[1, 2, 3]"),
        ("dev", A): write(tmp_path, "dev", {"cells": {"0": {}}}),
        ("eve", A): write(tmp_path, "eve", "[" * 100_000 + "]" * 100_000),  # too deep
        ("fay", A): write(tmp_path, "fay", bad_source),
        ("gus", A): write(tmp_path, "gus", bad_cells),
        ("hal", A): huge,
        ("ivy", A): link,
        ("jon", A): tmp_path / "nowhere.ipynb",
        ("kim", "lazy-init-jax"): write(tmp_path, "kim", good, "lazy-init-jax"),
        ("leo", A): write(tmp_path, "leo", long),
    }
    pairs = similarity.find_pairs(subs, released)
    reasons = {s: "; ".join(r) for (s, _), r in pairs.skipped.items()}
    assert reasons == {
        "ben": "not compared: not a notebook: not valid JSON",
        "cleo": "not compared: not a notebook: no list of cells",
        "dev": "not compared: not a notebook: no list of cells",
        "eve": "not compared: not a notebook: not valid JSON",
        "fay": "answer cell ex1-solution skipped: its source is not text",
        "gus": "cell 0 skipped: not a JSON object",
        "hal": "not compared: cannot be read: larger than 50 MB",
        "ivy": reasons["ivy"], "jon": reasons["jon"],
        "kim": "not compared: no released notebook for its assignment",
        "leo": f"answer cell ex3-solution cut at {similarity.MAX_CELL_CHARS:,} characters",
    }
    assert reasons["ivy"].startswith("not compared: cannot be read: ")  # ELOOP: a link
    assert reasons["jon"].startswith("not compared: cannot be read: ")
    # what could be read is compared all the same: fay without her ex1-solution
    assert {p.students for p in pairs} == {tuple(sorted((a, b))) for a in ("ada", "fay", "gus")
                                           for b in ("ada", "fay", "gus", "leo") if a < b}
    assert pairs.compared == 4
    out = tmp_path / "similarity.html"
    similarity.write_report(pairs, out)
    assert "not valid JSON" in out.read_text()
    bad_release = write(tmp_path, "release", "{")
    pairs = similarity.find_pairs(subs, {A: bad_release})
    assert pairs == [] and pairs.skipped[("", A)] == [
        "released notebook not a notebook: not valid JSON; assignment not compared"]


def test_a_cell_that_cannot_be_tokenized_is_skipped(sample, released, monkeypatch):
    fingerprint = similarity._fingerprint

    def fussy(text, template, boilerplate):
        if "every feature through the same layer" in text:  # ben's ex3-solution
            raise RecursionError("maximum recursion depth exceeded")
        return fingerprint(text, template, boilerplate)

    monkeypatch.setattr(similarity, "_fingerprint", fussy)
    pairs = similarity.find_pairs(sample, released)
    assert pairs.skipped == {("ben", A): [
        "answer cell ex3-solution skipped: cannot be tokenized (RecursionError)"]}
    assert ("ada", "ben") in {p.students for p in pairs}  # on the other two exercises


def class_of(size: int, root: Path) -> dict[tuple[str, str], Path]:
    """`size` submissions of one assignment: the answers of four kinds, each with its own
    names, so that every pair is compared in full (ci/bench.py's `similarity` times it)."""
    kinds = [REFERENCE, {**PREDICTIONS, **HONEST_CLEO}, {**PREDICTIONS, **HONEST_DEV}, {}]
    subs = {}
    for n in range(size):
        answers = {gid: re.sub(r"\b(sizes|flags|answer|result|units|H)\b", rf"\1_{n}", text)
                   for gid, text in kinds[n % 4].items()}
        subs[(f"s{n:02}", A)] = write(root, f"s{n:02}", submission(answers))
    return subs


def test_a_class_of_sixty_pairs_the_copies_of_each_kind(tmp_path, released):
    """60 submissions (1,770 pairs): each kind's 15 copies pair with one another, and with
    no other kind (how long it takes: `make bench BENCH=similarity`)."""
    pairs = similarity.find_pairs(class_of(60, tmp_path), released)
    assert len(pairs) == 3 * 15 * 14 // 2  # copies of the reference, of cleo's, of dev's
    kinds = {frozenset(int(s[1:]) % 4 for s in p.students) for p in pairs}
    assert kinds == {frozenset({0}), frozenset({1}), frozenset({2})}, kinds
