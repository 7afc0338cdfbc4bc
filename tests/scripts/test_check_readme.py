"""scripts/check_readme.py: parsing the README's conventions, numbers, comparison, and end-to-end runs
on a small temporary repository whose README quotes `echo` commands (no torch, no network)."""

import ast
import importlib.util
import shutil
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_readme.py"
_spec = importlib.util.spec_from_file_location("check_readme", SCRIPT)
cr = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cr  # dataclasses look their module up while the class is built
_spec.loader.exec_module(cr)

F = "```"  # a fence, kept out of the test's own source text


def md(text):
    return textwrap.dedent(text).lstrip("\n").replace("FENCE", F)


SAMPLE = md("""
    # Title

    FENCE
    not a command, a block without `$ ` lines
    FENCE

    <!-- check-readme: tol=0.05 rtol=0.01 -->

    FENCE
    $ echo a \\
        b
    a b
    $ true
    $ echo c
    c 1.5
    FENCE

    <!-- check-readme: skip takes 35 minutes on MNIST -->
    FENCE
    $ sleep 2100
    done
    FENCE

    <!-- check-readme: run-only -->
    FENCEconsole
    $ echo $RANDOM
    123
    FENCE

    <!-- check-readme: file runs/t.md tol=0.02 -->
    | a | 1.5 |
    <!-- check-readme: end -->
    """)


# ---------------------------------------------------------------- parsing


def test_parse_commands_continuations_and_outputs():
    doc = cr.parse(SAMPLE)
    assert [c.text for c in doc.commands] == ["echo a b", "true", "echo c", "sleep 2100", "echo $RANDOM"]
    first = doc.commands[0]
    assert first.source == "echo a \\\n    b"  # bash gets the continuation as written
    assert doc.lines[first.line - 1] == "$ echo a \\"
    out = lambda c: [doc.lines[i] for i in range(c.out_start, c.out_end)]
    assert out(first) == ["a b"]
    assert out(doc.commands[1]) == []
    assert out(doc.commands[2]) == ["c 1.5"]


def test_parse_block_options_skip_and_run_only():
    doc = cr.parse(SAMPLE)
    echo_a, _, echo_c, sleep, rand = doc.commands
    assert (echo_a.options.tol, echo_a.options.rtol) == (Decimal("0.05"), Decimal("0.01"))
    assert echo_c.options.tol == Decimal("0.05")  # the comment sets every command of its block
    assert sleep.options.skip == "takes 35 minutes on MNIST" and sleep.options.tol == 0
    assert rand.options.run_only and rand.options.skip is None
    assert sleep.options.describe() == "exact, skip: takes 35 minutes on MNIST"


def test_parse_file_region():
    doc = cr.parse(SAMPLE)
    (region,) = doc.regions
    assert region.path == "runs/t.md" and region.options.tol == Decimal("0.02")
    assert doc.lines[region.start:region.end] == ["| a | 1.5 |"]
    assert doc.lines[region.line - 1].startswith("<!-- check-readme: file")


def test_file_region_keeps_its_blank_lines_at_top_and_bottom():
    doc = cr.parse(md("""
        <!-- check-readme: file runs/t.md -->

        | a | 1.5 |

        | b | 2 |

        <!-- check-readme: end -->
        """))
    (region,) = doc.regions
    assert doc.lines[region.start:region.end] == ["| a | 1.5 |", "", "| b | 2 |"]
    assert (region.start, region.end) == (2, 5)


def test_parse_file_region_quoting_a_code_block_compares_its_inside():
    doc = cr.parse(md("""
        <!-- check-readme: file runs/eval.json -->
        FENCEjson
        {"nll": 23.5}
        FENCE
        <!-- check-readme: end -->
        """))
    (region,) = doc.regions
    assert doc.lines[region.start:region.end] == ['{"nll": 23.5}']


@pytest.mark.parametrize("text, message", [
    ("<!-- check-readme: tol=0.1 colour=red -->\nFENCE\n$ echo 1\nFENCE\n", "unknown check-readme option 'colour=red'"),
    ("<!-- check-readme: tol=-1 -->\nFENCE\n$ echo 1\nFENCE\n", "tolerance must be a number >= 0"),
    ("FENCE\n$ echo 1\n", "never closed"),
    ("<!-- check-readme: file runs/a.md -->\n| 1 |\n", "never ends"),
    ("<!-- check-readme: tol=0.1 -->\nsome prose\n\nFENCE\n$ echo 1\nFENCE\n", "right before"),
    ("<!-- check-readme: end -->\n", "end without"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(cr.ReadmeError, match=message) as info:
        cr.parse(text.replace("FENCE", F))
    assert info.value.line == 1


def test_stacked_comments_and_a_plain_html_comment_above():
    doc = cr.parse(md("""
        <!-- an ordinary comment -->
        <!-- check-readme: tol=0.1 -->
        <!-- check-readme: rtol=0.2 -->
        FENCE
        $ echo 1
        FENCE
        """))
    assert (doc.commands[0].options.tol, doc.commands[0].options.rtol) == (Decimal("0.1"), Decimal("0.2"))


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize("line, found", [
    ("iwae2 and z1 are words", []),
    ("K = 5000 particles", ["5000"]),
    ("0.1255 1e-3 -23.84 ± 0.21", ["0.1255", "1e-3", "-23.84", "0.21"]),
    ("down to 5e+29; exit 143", ["5e+29", "143"]),
    ("log p(x) − D log L = −1.5", ["−1.5"]),
    ("after step 224.", ["224"]),
    ("in Pyro 1.9.2 it equals", []),
    ("Δ +0.153 ± 0.040", ["+0.153", "0.040"]),
    ("0.6–2.1 nats, 8×8 digits", ["0.6", "2.1", "8", "8"]),
])
def test_numbers(line, found):
    template, got = cr.numbers(line)
    assert got == found
    assert cr.NUMBER.sub("", line) == template.replace(cr.PLACEHOLDER, "")


def test_template_keeps_words_with_digits():
    assert cr.numbers("iwae2 z1 K = 50")[0] == "iwae2 z1 K = " + cr.PLACEHOLDER


# ---------------------------------------------------------------- comparison


def check(expected, actual, tol="0", rtol="0"):
    options = cr.Options(tol=Decimal(tol), rtol=Decimal(rtol))
    pairs = [(n, line) for n, line in enumerate(expected, 10)]
    return cr.compare(pairs, actual, options, 9)


def test_numbers_within_tolerance_pass():
    assert check(["test ELBO -23.84 ± 0.21"], ["test ELBO -23.89 ± 0.19"], tol="0.05") == []
    assert check(["nll 100.0 nats"], ["nll 100.9 nats"], rtol="0.01") == []  # 100.0 s would be a timing
    assert check(["a 10 b 0.001"], ["a 10.5 b 0.0011"], tol="0.0001", rtol="0.05") == []  # either suffices


def test_numbers_outside_tolerance_are_reported_with_the_line():
    (f,) = check(["test ELBO -23.84 ± 0.21"], ["test ELBO -23.90 ± 0.21"], tol="0.05")
    assert f.kind == "number" and f.line == 10
    assert f.message == "number moved: expected -23.84 got -23.90 (tolerance 0.05): test ELBO -23.90 ± 0.21"
    (f,) = check(["nll 100.0 nats"], ["nll 101.1 nats"], rtol="0.01")
    assert "tolerance rtol 0.01" in f.message


def test_tolerance_zero_means_as_printed():
    assert check(["nll 23.50"], ["nll 23.50"]) == []
    assert [f.kind for f in check(["nll 23.50"], ["nll 23.5"])] == ["number"]
    assert [f.kind for f in check(["nll 23.50"], ["nll 23.51"])] == ["number"]


@pytest.mark.parametrize("line, marked", [
    ("trained in 0.3 s, 12.3 s in all", {0, 1}),
    ("4.34 ms per step, 2 ms", {0, 1}),
    ("took 2 min 54 s", {0, 1}),
    ("1.5 h on a GPU", {0}),
    ("0.23 s/epoch (median)", {0}),
    ("5 sec, 10 seconds, 1 second, 3 minutes", {0, 1, 2, 3}),
    ("after 3 steps with 5 samples, 2 sigma", set()),  # the unit must be a whole word
    ("step 224 (14 epochs and 14 steps done)", set()),
    ("2 mins 3 hours; 20 minimum", {0, 1}),
    ("K = 1000 s. then", {0}),
    ("(2026-11-22, CPU, 2 cores)", {0, 1, 2}),  # a date is when the run happened
    ("version 1.9.2, 12 h", {0}),
])
def test_timings_by_unit(line, marked):
    assert cr.timings([line]) == [marked]


TABLE = [
    "caption with 3 s in it",
    "| guide | test NLL | s / epoch (median) | fit (s) | epochs | s/epoch | seconds | ms | time | guide's SNR |",
    "| --- | ---: | ---: | ---: | ---: |---|---|---|:--:|---|",
    "| a | 23.50 ± 0.21 | 0.04 | 6.2 | 100 | 0.23 | 7 | 12 | 3.5 | 1.88 |",
    "| b \\| c 2 | 23.66 | 0.06 | 4.3 | 71 | 0.31 | 8 | 13 | 4 | 0.17 |",
    "not in the table 0.04 after it",
    "| log p(x) | L[q*] |",
    "| ---: | ---: |",
    "| -23.50 | -23.67 |",
]


def test_timings_in_table_columns_whose_header_names_seconds_or_time():
    assert cr.timings(TABLE) == [
        {0},                     # a unit, outside any table
        set(),                   # the header row itself is text
        set(),
        {2, 3, 5, 6, 7, 8},      # 0.04, 6.2, 0.23, 7, 12, 3.5; not 23.50, 0.21, 100, 1.88
        {2, 3, 5, 6, 7, 8},      # the escaped pipe is inside a cell: its 2 is in the guide column
        set(),                   # a line that is not a table row ends the table
        set(), set(), set(),     # a table without a time column
    ]


def test_timings_are_not_compared_but_reported_apart():
    findings = check(["trained in 0.3 s after 3 steps", "| k | s |", "|---|---|", "| 1 | 0.04 |"],
                     ["trained in 0.5 s after 4 steps", "| k | s |", "|---|---|", "| 2 | 0.07 |"])
    assert [f.kind for f in findings] == ["timing", "number", "number", "timing"]
    assert findings[0].message == "timing not compared: expected 0.3 got 0.5: trained in 0.5 s after 4 steps"
    assert "expected 3 got 4" in findings[1].message and "expected 1 got 2" in findings[2].message
    assert [f.kind for f in check(["took 1 min 2 s"], ["took 1 min 2 s"])] == ["timing", "timing"]  # equal or not


def test_text_changes_missing_and_extra_lines():
    (f,) = check(["wrote runs/demo/eval.json"], ["wrote runs/demo/eval.csv"])
    assert f.kind == "text" and f.message == 'text changed: expected "wrote runs/demo/eval.json" got "wrote runs/demo/eval.csv"'
    findings = check(["a 1", "b 2", "c 3"], ["a 1", "new line", "b 2", "c 4"])
    assert [f.kind for f in findings] == ["note", "text", "number"]
    assert "expected 3 lines of output, got 4" in findings[0].message
    assert 'extra line: got "new line"' in findings[1].message
    assert "expected 3 got 4" in findings[2].message and findings[2].line == 12
    findings = check(["a 1", "b 2"], ["a 1"])
    assert [f.message for f in findings if f.kind == "text"] == ['line missing: expected "b 2"']


def test_progress_bars_ansi_and_blank_lines_are_ignored():
    output = ("\n 10%|█         | 1/10 [00:00<00:01, 9.10step/s]\r100%|██████████| 10/10 [00:01<00:00, 9.9step/s]"
              "\repoch 10: loss 1.25\n\n\x1b[32mdone\x1b[0m 3\n12it [00:01, 11.5it/s]\n")
    assert cr.output_lines(output) == ["epoch 10: loss 1.25", "done 3"]
    expected = cr.numbered_lines(["epoch 10: loss 1.25", "", "done 3"], 0, 3, 0)  # README lines, blank one too
    assert expected == [(1, "epoch 10: loss 1.25"), (3, "done 3")]
    assert cr.compare(expected, cr.output_lines(output), cr.Options(), 0) == []


def test_output_lines_for_writing_keep_inner_blank_lines_only():
    assert cr.output_lines("\na\n\nb\n\n", keep_blank=True) == ["a", "", "b"]


def test_rewrite_replaces_only_the_edited_lines():
    lines = ["keep 0", "old 1", "old 2", "keep 3", "old 4", "keep 5"]
    assert cr.rewrite(lines, [(4, 5, ["new 4"]), (1, 3, ["new 1"])]) == "keep 0\nnew 1\nkeep 3\nnew 4\nkeep 5"


def test_script_imports_only_the_standard_library():
    tree = ast.parse(SCRIPT.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert names and names <= set(sys.stdlib_module_names) | {"__future__"}, names


# ---------------------------------------------------------------- end to end


REPO_README = md("""
    # A project

    Intro paragraph with a number 42 that nobody checks.

    FENCE
    $ echo "loss 1.25 after 3 epochs"
    loss 1.25 after 3 epochs
    $ echo "score 4.5"; echo "warn 2" >&2; echo "last 7"
    score 3.5
    warn 2
    last 7
    $ printf 'epoch  50%%|#####     | 5/10 [00:01<00:01, 5.00step/s]\\rdone 7\\n'
    done 7
    $ [ "$VIRTUAL_ENV" = "$PWD/.venv" ] && [ "${PATH%%:*}" = "$PWD/.venv/bin" ] && \\
      test -f scripts/check_readme.py && echo "env ok"
    env ok
    FENCE

    <!-- check-readme: skip needs a GPU -->
    FENCE
    $ touch skipped-ran
    FENCE

    <!-- check-readme: run-only -->
    FENCE
    $ mkdir -p runs && printf '| a | 1.50 |\\n| b | 2.00 |\\n' > runs/t.md && echo "run-only 99"
    run-only 1
    FENCE

    <!-- check-readme: file runs/t.md tol=0.02 -->
    | a | 1.60 |
    | b | 2.01 |
    <!-- check-readme: end -->

    Outro paragraph.
    """)


def make_repo(root, readme=REPO_README):
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "check_readme.py")
    (root / "README.md").write_text(readme, encoding="utf-8")
    return root


def run_script(root, *args):
    # From another folder: the commands must still run in the repository root.
    return subprocess.run([sys.executable, str(root / "scripts" / "check_readme.py"), *args],
                          cwd=root.parent, capture_output=True, text=True, timeout=120)


def test_end_to_end_reports_what_moved(tmp_path):
    repo = make_repo(tmp_path / "repo")
    done = run_script(repo)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "README.md:9: number moved: expected 3.5 got 4.5 (tolerance 0): score 4.5" in out
    assert "README.md:31: number moved: expected 1.60 got 1.50 (tolerance 0.02): | a | 1.50 |" in out
    assert "2.00" not in out  # within the region's tolerance
    assert "skipped (needs a GPU): $ touch skipped-ran" in out
    assert "run-only" not in out  # its output is not compared
    assert "text changed" not in out and "env ok" not in out  # stderr merged in order, env as after activate
    assert out.strip().splitlines()[-1] == (
        "check_readme: 5 commands run, 1 skipped, 1 file regions; 2 numbers moved, 0 text changes")
    assert not (repo / "skipped-ran").exists()
    assert "[1/6] echo \"loss 1.25 after 3 epochs\" ..." in done.stderr and "exit 0" in done.stderr
    assert (repo / "README.md").read_text() == REPO_README  # no --write, nothing written


def test_write_rewrites_quoted_output_and_keeps_every_other_line(tmp_path):
    repo = make_repo(tmp_path / "repo")
    done = run_script(repo, "--write")
    assert done.returncode == 1 and "number moved: expected 3.5 got 4.5" in done.stdout  # reported, then written
    expected = (REPO_README.replace("score 3.5", "score 4.5")
                .replace("| a | 1.60 |\n| b | 2.01 |", "| a | 1.50 |\n| b | 2.00 |"))
    assert (repo / "README.md").read_text() == expected  # run-only's "run-only 1" stays as it was
    again = run_script(repo, "--clean")  # runs/ now holds the first run's file
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip().endswith("0 numbers moved, 0 text changes")


TIMING_README = md("""
    FENCE
    $ echo "trained in 0.3 s after 3 steps"; printf '| run | fit (s) |\\n|---|---:|\\n| a | 1.5 |\\n'
    trained in 9.9 s after 3 steps
    | run | fit (s) |
    |---|---:|
    | a | 7.25 |
    FENCE
    """)


def test_timings_pass_are_counted_and_written(tmp_path):
    repo = make_repo(tmp_path / "repo", TIMING_README)
    done = run_script(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "check_readme: 1 commands run, 0 skipped, 0 file regions; "
        "0 numbers moved, 0 text changes, 2 timings not compared")
    assert (repo / "README.md").read_text() == TIMING_README
    done = run_script(repo, "--write")
    assert done.returncode == 0
    assert (repo / "README.md").read_text() == TIMING_README.replace("9.9 s", "0.3 s").replace("7.25", "1.5")
    (repo / "README.md").write_text(TIMING_README.replace("3 steps\n", "4 steps\n"))
    done = run_script(repo)  # the s of steps is no unit: 3 steps against 4 moved
    assert done.returncode == 1 and "number moved: expected 4 got 3" in done.stdout


def test_write_keeps_the_blank_lines_around_a_region(tmp_path):
    readme = md("""
        FENCE
        $ mkdir -p runs && printf 'caption 1\\n\\n| a | 2 |\\n' > runs/t.md
        FENCE

        <!-- check-readme: file runs/t.md -->

        caption 1

        | a | 3 |

        <!-- check-readme: end -->
        """)
    repo = make_repo(tmp_path / "repo", readme)
    done = run_script(repo, "--write")
    assert done.returncode == 1 and "number moved: expected 3 got 2" in done.stdout
    assert (repo / "README.md").read_text() == readme.replace("| a | 3 |", "| a | 2 |")


def test_text_change_and_line_count_are_reported(tmp_path):
    repo = make_repo(tmp_path / "repo", md("""
        FENCE
        $ echo "wrote a.json"; echo "and more"
        wrote a.csv
        FENCE
        """))
    done = run_script(repo)
    assert done.returncode == 1
    assert 'text changed: expected "wrote a.csv" got "wrote a.json"' in done.stdout
    assert 'extra line: got "and more"' in done.stdout and "expected 1 lines of output, got 2" in done.stdout
    assert done.stdout.strip().endswith("0 numbers moved, 2 text changes")


def test_refuses_when_runs_is_not_empty_and_clean_deletes_it(tmp_path):
    repo = make_repo(tmp_path / "repo", md("""
        FENCE
        $ touch ran
        FENCE
        """))
    (repo / "runs").mkdir()
    (repo / "runs" / "old.txt").write_text("an earlier run")
    done = run_script(repo)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "fresh clone" in line and "--clean" in line
    assert not (repo / "ran").exists() and (repo / "runs" / "old.txt").exists()
    done = run_script(repo, "--clean")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "ran").exists() and not (repo / "runs").exists()


def test_missing_file_fails_unless_skip_missing_files(tmp_path):
    repo = make_repo(tmp_path / "repo", md("""
        <!-- check-readme: file runs/never.md -->
        | 1 |
        <!-- check-readme: end -->
        """))
    done = run_script(repo)
    assert done.returncode == 1 and "file missing" in done.stdout and "1 files missing" in done.stdout
    assert run_script(repo, "--skip-missing-files").returncode == 0


def test_list_runs_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo")
    done = run_script(repo, "--list")
    assert done.returncode == 0
    assert "README.md:21: $ touch skipped-ran  [exact, skip: needs a GPU]" in done.stdout
    assert "README.md:30: file runs/t.md  [tol=0.02]" in done.stdout
    assert "$ [ \"$VIRTUAL_ENV\" = \"$PWD/.venv\" ]" in done.stdout and "&& test -f" in done.stdout  # joined
    assert not (repo / "runs").exists()


def test_only_runs_the_match_and_make_demo_before_it(tmp_path):
    repo = make_repo(tmp_path / "repo", md("""
        FENCE
        $ make demo
        output nobody compares 1
        $ touch one-ran; echo "one 1"
        one 1
        $ echo "two 2"
        two 3
        $ touch three-ran
        FENCE
        """))
    (repo / "Makefile").write_text("demo:\n\t@touch demo-ran; echo demo 5\n")
    done = run_script(repo, "--only", "two")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (repo / "demo-ran").exists() and not (repo / "one-ran").exists() and not (repo / "three-ran").exists()
    assert "number moved: expected 3 got 2" in done.stdout and "demo 5" not in done.stdout
    assert "2 commands run" in done.stdout
    assert run_script(repo, "--only", "nothing like this").returncode == 2


def test_timeout_is_a_failure(tmp_path):
    repo = make_repo(tmp_path / "repo", md("""
        FENCE
        $ sleep 30 & wait
        FENCE
        """))
    done = run_script(repo, "--timeout", "1")
    assert done.returncode == 1 and "timed out after 1 s" in done.stdout and "1 timed out" in done.stdout


def test_bad_usage_exits_2(tmp_path):
    repo = make_repo(tmp_path / "repo", "<!-- check-readme: tol=x -->\nFENCE\n$ echo 1\nFENCE\n".replace("FENCE", F))
    done = run_script(repo)
    assert done.returncode == 2 and "README.md:1:" in done.stderr
    assert run_script(repo, "--no-such-option").returncode == 2
