"""The results pages: docs/results.md (headline table), docs/results/runs.csv (every run) and
docs/gen_results_appendix.py (the appendix page the docs build writes from the data file)."""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DATA = DOCS / "results" / "runs.csv"
RESULTS = DOCS / "results.md"
GEN = DOCS / "gen_results_appendix.py"

COLUMNS = ["task", "method", "kind", "label", "command", "network", "test_acc", "test_acc_rounded",
           "reference", "epochs_time", "notes"]
HEADLINE_HEADER = ["task", "method / preset", "ours (test acc.)", "paper's number (published)",
                   "protocol (seeds, selection)", "command"]


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_results_appendix_under_test", GEN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data_rows():
    with open(DATA, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _cells(line: str) -> list:
    """The cells of one markdown table line (``\\|`` is a pipe inside a cell)."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    assert parts[0] == "" and parts[-1] == "", f"not a table line: {line[:80]!r}"
    return [p.strip().replace("\\|", "|") for p in parts[1:-1]]


def _is_separator(line: str) -> bool:
    return re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()) is not None


def _first_code(text: str):
    m = re.search(r"`([^`]+)`", text)
    return m.group(1).strip() if m else None


def _headline_table() -> list:
    """The rows (cell lists) of results.md's headline table."""
    lines = RESULTS.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and _cells(line) == HEADLINE_HEADER]
    assert len(starts) == 1, f"results.md: {len(starts)} headline tables with header {HEADLINE_HEADER}"
    i = starts[0]
    assert _is_separator(lines[i + 1])
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(HEADLINE_HEADER), f"results.md headline row with {len(cells)} cells: {line[:80]}"
        rows.append(cells)
    return rows


# -- the data file -----------------------------------------------------------------------------
def test_data_file_parses_with_the_required_columns():
    header, rows = _data_rows()
    assert header == COLUMNS
    assert len(rows) >= 70  # every run of the former big table (76 when it moved)
    for n, row in enumerate(rows, start=2):
        assert None not in row, f"runs.csv line {n}: more cells than columns"
        assert all(v is not None for v in row.values()), f"runs.csv line {n}: fewer cells than columns"
        assert row["kind"] in ("headline", "ablation"), f"runs.csv line {n}: kind {row['kind']!r}"
        for col in row:
            assert "\n" not in row[col] and "\r" not in row[col], f"runs.csv line {n}: line break in {col}"


def test_every_data_row_has_a_task_and_a_command():
    _, rows = _data_rows()
    for n, row in enumerate(rows, start=2):
        for col in ("task", "method", "label", "command"):
            assert row[col].strip(), f"runs.csv line {n}: empty {col}"
        assert _first_code(row["command"]), f"runs.csv line {n}: command without `...` code: {row['command']!r}"


def test_generator_reads_the_data_file_as_csv_does():
    gen = _load_generator()
    _, rows = _data_rows()
    assert list(gen.COLUMNS) == COLUMNS
    assert gen.read_rows(DATA) == rows


# -- the generator -----------------------------------------------------------------------------
def test_generator_writes_one_table_row_per_data_row(tmp_path):
    gen = _load_generator()
    _, rows = _data_rows()
    out = tmp_path / "appendix.md"
    proc = subprocess.run([sys.executable, str(GEN), "--data", str(DATA), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert text == gen.render(rows)

    columns = [col for col, _ in gen.TABLE]
    headers = [h for _, h in gen.TABLE]
    body = {}  # task -> list of table rows (cells), in page order
    task = None
    for line in text.splitlines():
        if line.startswith("## "):
            task = line[3:].strip()
            assert task not in body, f"task {task!r} has two sections"
            body[task] = []
        elif line.startswith("|") and not _is_separator(line):
            cells = _cells(line)
            assert len(cells) == len(columns), f"a row with {len(cells)} cells: {line[:80]}"
            if cells == headers:
                continue
            assert task is not None, "a table row before the first task section"
            body[task].append(cells)
    assert sum(len(v) for v in body.values()) == len(rows)

    # every data row, cell for cell (pipes escaped and restored), in its task's table, in order
    expected = {}
    for row in rows:
        expected.setdefault(row["task"], []).append([row[c].strip() for c in columns])
    assert list(body) == list(expected)  # sections in the order of each task's first row
    assert body == expected


def test_generator_output_is_deterministic_and_written_only_on_change(tmp_path):
    gen = _load_generator()
    out = tmp_path / "sub" / "appendix.md"
    assert gen.write_appendix(DATA, out) is True
    first = out.read_bytes()
    assert gen.write_appendix(DATA, out) is False
    assert out.read_bytes() == first


def test_generator_refuses_a_malformed_data_file(tmp_path):
    gen = _load_generator()
    header, rows = _data_rows()

    def write(name, fieldnames, data_rows):
        p = tmp_path / name
        with open(p, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
            w.writeheader()
            w.writerows(data_rows)
        return p

    no_command = [dict(r) for r in rows[:3]]
    no_command[1]["command"] = " "
    missing_column = [{k: v for k, v in r.items() if k != "notes"} for r in rows[:3]]
    bad_kind = [dict(r) for r in rows[:3]]
    bad_kind[2]["kind"] = "tuning"
    line_break = [dict(r) for r in rows[:3]]
    line_break[0]["network"] += "\nsecond line"
    cases = {
        "no_command.csv": (header, no_command, "command"),
        "missing_column.csv": ([c for c in header if c != "notes"], missing_column, "columns"),
        "bad_kind.csv": (header, bad_kind, "kind"),
        "line_break.csv": (header, line_break, "line break"),
    }
    for name, (fields, data_rows, message) in cases.items():
        path = write(name, fields, data_rows)
        with pytest.raises(gen.DataError, match=message):
            gen.read_rows(path)
        proc = subprocess.run([sys.executable, str(GEN), "--data", str(path), "--out", str(tmp_path / "x.md")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and message in proc.stderr, (name, proc.stderr)
        assert not (tmp_path / "x.md").exists()


# -- results.md's headline table ---------------------------------------------------------------
def test_every_headline_row_of_results_md_is_in_the_data_file():
    _, rows = _data_rows()
    table = _headline_table()
    data_headline = [r for r in rows if r["kind"] == "headline"]
    matched = []
    for task, method, ours, reference, protocol, command in table:
        assert task and method, "a headline row without task or method"
        if ours == "pending":  # a placeholder: no run yet, so nothing in the data file
            assert command == "pending", f"{task} / {method}: pending, but a command is given"
            continue
        code = _first_code(command)
        assert code, f"{task} / {method}: the command cell has no `...` code"
        hits = [r for r in data_headline
                if r["task"] == task and _first_code(r["command"]) == code]
        assert len(hits) == 1, f"{task} / {method}: {len(hits)} headline data rows with command {code!r}"
        hit = hits[0]
        assert reference == hit["reference"], f"{task} / {code}: paper's number differs from the data file"
        numbers = re.findall(r"\d+\.\d+", ours)
        measured = hit["test_acc"] + " " + hit["test_acc_rounded"]
        for x in numbers:
            assert re.search(rf"(?<![\d.]){re.escape(x)}(?![\d])", measured), \
                f"{task} / {code}: {x} in results.md, not in the data row's test accuracy"
        matched.append(id(hit))
    # and the other way: every headline run of the data file is in the table, once
    assert sorted(matched) == sorted(id(r) for r in data_headline)


def test_results_md_and_the_index_link_the_appendix():
    text = RESULTS.read_text(encoding="utf-8")
    assert "(results_appendix.md)" in text
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    toctree_entries = [line.strip() for line in index.splitlines() if line.startswith("   ")]
    assert "results_appendix" in toctree_entries
    # the page is written by the docs build from the data file, not kept by hand
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert "gen_results_appendix.py" in conf and "write_appendix(" in conf
