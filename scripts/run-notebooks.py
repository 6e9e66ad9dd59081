"""Execute every notebook in notebooks/ with the tslab kernel (nbclient), and check what it says.

tslab reports a failing cell's error in the cell's stderr stream and leaves nbconvert's message
empty, so on failure this prints the failing cell's source and every stream/error output. The
kernel's own stderr (tslab prints a "Socket is closed" trace when a kernel is shut down) goes to a
log file that is shown only when a notebook fails.

Usage: run-notebooks.py [--twice] [--write] [--html DIR] [--timeout SEC] [NOTEBOOK ...]
  --twice     after the first pass, run the notebook's second half again after its clean-up (from
              the cell tagged "second-half" to the end), then every cell again (Run All twice)
  --write     store the first pass's outputs back into the .ipynb files (also when the prose check fails)
  --html DIR  export each notebook's first pass to DIR/<name>.html; plotly.js is written once to
              DIR/plotly.min.js, which the pages' figures load

Every pass fails the notebook when a cell fails. Implement-it exercises (src/viz/exercises.ts): a
code cell tagged "check" right after a cell tagged "solution" is run once before that solution, and
must fail there with its "TODO" message (the exercise cell still holds the stub); it then runs again
after the solution, as part of the pass, and must pass. The first pass is timed against a budget of
30 s (Run All on this machine's wasm backend); a notebook over it is reported, not failed.
Checks on every notebook:
  - every imported name is used; a notebook with exercises has solution cells;
  - cells tagged "solution" (the exercises' solutions) run like any other cell; their count is shown;
  - prose quotes only what the notebook computes: a number in a markdown cell followed by the marker
    <!--out--> must appear in the outputs of the notebook's code cells, and a decimal number with two
    or more digits after the point (0.87, 1.25) outside code and math must carry that marker
    (or <!--paper--> when it is quoted from a publication).
Exit code: number of failed notebooks (0 = all passed). Last line: "notebooks: N passed, N failed".
"""
import copy
import glob
import os
import re
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient

args = sys.argv[1:]
write = "--write" in args
twice = "--twice" in args
timeout = 300
html_dir = args[args.index("--html") + 1] if "--html" in args else None
if "--timeout" in args:
    timeout = int(args[args.index("--timeout") + 1])
paths = [a for a in args if a.endswith(".ipynb")]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not paths:
    paths = sorted(glob.glob(os.path.join(root, "notebooks", "*.ipynb")))

MATHJAX_URL = "https://cdn.jsdelivr.net/npm/mathjax@2.7.9/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
REQUIRE_JS_URL = "https://cdn.jsdelivr.net/npm/requirejs@2.3.6/require.min.js"
MARK = "<!--out-->"
CITED = "<!--paper-->"  # a number quoted from a publication, not computed here
NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?(?:e[-+−]?\d+)?%?"


def export_html(nb, path):
    """Write an HTML export whose plotly.js comes from a shared file next to it."""
    import shutil
    from nbconvert import HTMLExporter

    os.makedirs(html_dir, exist_ok=True)
    bundle = os.path.join(root, "node_modules", "plotly.js-dist-min", "plotly.min.js")
    shutil.copyfile(bundle, os.path.join(html_dir, "plotly.min.js"))
    # MathJax and require.js from a public CDN: Debian's nbconvert points them at file:///usr/share,
    # which renders only on a machine with those packages (the exports must open anywhere)
    exporter = HTMLExporter(mathjax_url=MATHJAX_URL, require_js_url=REQUIRE_JS_URL)
    body, _ = exporter.from_notebook_node(nb)  # figures load plotly.min.js beside the page
    local = re.findall(r"""(?:src|href)=["'](file:[^"']*|/[^/"'][^"']*)["']""", body)
    if local:
        raise SystemExit(f"the export of {path} refers to local files: {sorted(set(local))[:5]}")
    name = os.path.splitext(os.path.basename(path))[0] + ".html"
    with open(os.path.join(html_dir, name), "w") as f:
        f.write(body)


def output_text(nb):
    """Everything the code cells printed or displayed, as one text (HTML tags and escapes removed)."""
    import html

    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o.get("text", ""))
            for mime in ("text/plain", "text/html", "text/markdown"):
                v = o.get("data", {}).get(mime)
                if v:
                    parts.append(html.unescape(re.sub(r"<[^>]+>", " ", v if isinstance(v, str) else "".join(v))))
    return "\n".join(parts)


def prose(source):
    """A markdown cell's text without code blocks, code spans and math."""
    s = re.sub(r"```.*?```", " ", source, flags=re.S)
    s = re.sub(r"`[^`]*`", " ", s)
    s = re.sub(r"\$\$.*?\$\$", " ", s, flags=re.S)
    return re.sub(r"\$[^$]*\$", " ", s)


def printed(n, outputs, numbers):
    """Whether prose number `n` is in the outputs as written, or is a rounding of a printed decimal
    (0.42 for a printed 0.4167: a value derived in the text from a printed one)."""
    if re.search(r"(?<![\d.])" + re.escape(n) + r"(?![\d])", outputs):
        return True
    m = re.fullmatch(r"-?\d+\.(\d+)", n)
    if not m:
        return False
    k = len(m.group(1))
    for x in numbers:
        if "e" in x or len(x.split(".")[1]) <= k:
            continue
        if f"{round(float(x), k):.{k}f}" == n:
            return True
    return False


def check_prose(nb):
    """The prose-number check; returns a list of problems."""
    outputs = output_text(nb)
    numbers = re.findall(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?", outputs)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = prose(cell.source)
        for m in re.finditer(r"(" + NUMBER + r")" + re.escape(MARK), text):
            n = m.group(1).replace("−", "-")
            if not printed(n, outputs, numbers):
                problems.append(f"cell {i}: the prose quotes {n}, which no output of this notebook contains (as printed or rounded)")
        for m in re.finditer(r"(?<![\w.])(\d+\.\d{2,}(?:e[-+]?\d+)?)(?![\d.e])(?!" + re.escape(MARK) + ")(?!" + re.escape(CITED) + ")", text):
            problems.append(f"cell {i}: {m.group(1)} is not marked {MARK} (a number the notebook computes) nor written in code or math")
    return problems


def self_test():
    """The prose check catches what it should (runs before every notebook run)."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="paraphrases 0.4167, locality 0.991\n")]
    nb.cells = [code]
    cases = {
        "paraphrases 0.42<!--out-->, locality 0.991<!--out--> and `0.87` and $0.5$": 0,
        "paraphrases 0.43<!--out-->": 1,
        "paraphrases 0.87 unmarked": 1,
        "the paper reports 0.86<!--paper-->": 0,
        "0.4167<!--out--> but 0.40<!--out-->": 1,
    }
    for text, want in cases.items():
        nb.cells[1:] = [nbformat.v4.new_markdown_cell(text)]
        got = len(check_prose(nb))
        if got != want:
            raise SystemExit(f"run-notebooks.py self-test: {got} problems (expected {want}) in {text!r}")


def check_structure(nb):
    """Every imported name is used; a notebook with exercises has solution cells; returns problems."""
    problems = []
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    names = []
    for src in code:
        for m in re.finditer(r"import\s*\{([^}]*)\}\s*from", src):
            names += [re.sub(r"^type\s+", "", n.strip()).split(" as ")[-1].strip() for n in m.group(1).split(",") if n.strip()]
        names += re.findall(r"import\s+\*\s+as\s+(\w+)", src)
    body = "\n".join(re.sub(r"^\s*import[^;]*;", "", src, flags=re.M | re.S) for src in code)
    for n in names:
        if not re.search(r"\b" + re.escape(n) + r"\b", body):
            problems.append(f"{n} is imported and never used")
    exercises = any(c.cell_type == "markdown" and "## Exercises" in c.source for c in nb.cells)
    if exercises and not any("solution" in c.metadata.get("tags", []) for c in nb.cells):
        problems.append('the exercises have no solution cell (a code cell tagged "solution")')
    return problems


def report_failure(nb, path, err, log):
    print(f"FAIL {os.path.relpath(path, root)}")
    for i, cell in enumerate(nb.cells):
        outs = cell.get("outputs", [])
        bad = [o for o in outs if o.get("output_type") == "error" or (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        if bad:
            print(f"--- cell {i}:\n{cell.source}\n--- its error output:")
            for o in bad:
                print(o.get("text") or "\n".join(o.get("traceback", [])) or f"{o.get('ename')}: {o.get('evalue')}")
    print(f"--- nbclient: {type(err).__name__}: {str(err)[-2000:]}")
    log.seek(0)
    kernel = log.read().decode(errors="replace").strip()
    if kernel:
        print(f"--- the kernel's stderr:\n{kernel[-3000:]}")


BUDGET = 30  # seconds for one Run All (the tutorial's target on this machine)
self_test()
passed = failed = 0
first_times = []
for path in paths:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="tslab", timeout=timeout, resources={"metadata": {"path": os.path.dirname(path)}})
    count = 0
    implement_checks = 0
    times = []

    def check_fails_first(i, ran):
        """Run the check cell after solution cell i (if any) before the solution: it must fail with TODO
        (only when this pass ran the exercise cell before it, which puts the stub back)."""
        global implement_checks
        prev = next((j for j in range(i - 1, -1, -1) if nb.cells[j].cell_type == "code"), None)
        if prev not in ran:
            return
        nxt = next((j for j in range(i + 1, len(nb.cells)) if nb.cells[j].cell_type == "code"), None)
        if nxt is None or "check" not in nb.cells[nxt].metadata.get("tags", []):
            return
        probe = copy.deepcopy(nb.cells[nxt])
        try:
            client.execute_cell(probe, nxt, execution_count=count)
        except Exception:  # noqa: BLE001 - the expected failure, read below
            time.sleep(1)  # tslab drops the outputs of a request that arrives right after an error
        outs = probe.get("outputs", [])
        if any(o.get("output_type") == "error" or o.get("name") == "stderr" for o in outs):
            said = "\n".join(o.get("text", "") + " ".join(o.get("traceback", [])) + o.get("evalue", "") for o in outs)
            if "TODO" not in said:
                raise RuntimeError(f"cell {nxt} (a check) failed before its solution without the exercise's TODO message:\n{said[-1500:]}")
            implement_checks += 1
            return
        raise RuntimeError(f"cell {nxt} (a check) passed before its solution ran: a check must fail while the exercise is a TODO; it printed: {probe.get('outputs')}")

    def run(cells):
        """Execute (index, cell) pairs in order, numbering them like a kernel session does."""
        global count
        t0 = time.time()
        ran = set()
        for i, cell in cells:
            if cell.cell_type != "code":
                continue
            if "solution" in cell.metadata.get("tags", []):
                check_fails_first(i, ran)
            ran.add(i)
            count += 1
            client.execute_cell(cell, i, execution_count=count)
            cell["execution_count"] = count
        times.append(time.time() - t0)

    cells = list(enumerate(nb.cells))
    half = next((i for i, c in enumerate(nb.cells) if "second-half" in c.metadata.get("tags", [])), None)
    solutions = sum(1 for c in nb.cells if "solution" in c.metadata.get("tags", []))
    first = None
    with tempfile.TemporaryFile() as log:
        try:
            with client.setup_kernel(stderr=log):
                run(cells)
                first = copy.deepcopy(nb)
                if twice:
                    if half is None:
                        raise RuntimeError('no cell is tagged "second-half": tag the first cell of the part to run again after the clean-up')
                    run(cells[half:])
                    run(cells)
        except Exception as e:  # noqa: BLE001 - report any kernel failure
            failed += 1
            report_failure(nb, path, e, log)
            continue
    problems = check_prose(first) + check_structure(first)
    if write:
        nbformat.write(first, path)
    if problems:
        failed += 1
        print(f"FAIL {os.path.relpath(path, root)}: its text does not match what it runs")
        for p in problems:
            print(f"  {p}")
        continue
    passed += 1
    size = len(nbformat.writes(first).encode())
    passes = f"Run All {times[0]:.0f}s" + (" (over the 30 s budget)" if times[0] > BUDGET else "") + (f"; second half after the clean-up {times[1]:.0f}s; again in the same kernel {times[2]:.0f}s" if twice else "")
    checks = f"; implement-it checks failing before their solution: {implement_checks}" if implement_checks else ""
    print(f"ok   {os.path.relpath(path, root)} ({passes}; solutions run: {solutions}{checks}; executed {size / 1e6:.2f} MB)")
    first_times.append((os.path.relpath(path, root), times[0]))
    if html_dir:
        export_html(first, path)

if first_times:
    slow = [f"{n} {t:.0f}s" for n, t in first_times if t > BUDGET]
    print(f"Run All per notebook: longest {max(t for _, t in first_times):.0f}s, total {sum(t for _, t in first_times):.0f}s; over {BUDGET}s: {', '.join(slow) if slow else 'none'}")
print(f"notebooks: {passed} passed, {failed} failed")
sys.exit(min(failed, 100))
