"""Execute every notebook in notebooks/ with the tslab kernel (nbclient).

tslab reports a failing cell's error in the cell's stderr stream and leaves nbconvert's message
empty, so on failure this prints the failing cell's source and every stream/error output.
Usage: run-notebooks.py [--write] [--html DIR] [--timeout SEC] [NOTEBOOK ...]
  --write     store the executed outputs back into the .ipynb files
  --twice     run every cell a second time in the same kernel (Run All twice) after the first pass
  --html DIR  export each executed notebook to DIR/<name>.html; plotly.js is written once to
              DIR/plotly.min.js, which the pages' figures load
Exit code: number of failed notebooks (0 = all passed). Last line: "N passed, N failed".
"""
import glob
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

args = sys.argv[1:]
write = "--write" in args
twice = "--twice" in args
timeout = 300
html_dir = args[args.index("--html") + 1] if "--html" in args else None
if "--timeout" in args:
    timeout = int(args[args.index("--timeout") + 1])
paths = [a for a in args if a.endswith(".ipynb")]


def export_html(nb, path):
    """Write an HTML export whose plotly.js comes from a shared file next to it."""
    import shutil
    from nbconvert import HTMLExporter

    os.makedirs(html_dir, exist_ok=True)
    bundle = os.path.join(root, "node_modules", "plotly.js-dist-min", "plotly.min.js")
    shutil.copyfile(bundle, os.path.join(html_dir, "plotly.min.js"))
    body, _ = HTMLExporter().from_notebook_node(nb)  # figures load plotly.min.js beside the page
    name = os.path.splitext(os.path.basename(path))[0] + ".html"
    with open(os.path.join(html_dir, name), "w") as f:
        f.write(body)

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not paths:
    paths = sorted(glob.glob(os.path.join(root, "notebooks", "*.ipynb")))

passed = failed = 0
for path in paths:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="tslab", timeout=timeout, resources={"metadata": {"path": os.path.dirname(path)}})
    t0 = time.time()
    second = None
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                client.execute_cell(cell, i)
            first = time.time() - t0
            if twice:
                second = time.time()
                for i, cell in enumerate(nb.cells):
                    client.execute_cell(cell, i)
                second = time.time() - second
    except (CellExecutionError, Exception) as e:  # noqa: BLE001 - report any kernel failure
        failed += 1
        print(f"FAIL {os.path.relpath(path, root)} ({time.time() - t0:.0f}s)")
        for i, cell in enumerate(nb.cells):
            outs = cell.get("outputs", [])
            bad = [o for o in outs if o.get("output_type") == "error" or (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            if bad:
                print(f"--- cell {i}:\n{cell.source}\n--- its error output:")
                for o in bad:
                    print(o.get("text") or "\n".join(o.get("traceback", [])) or f"{o.get('ename')}: {o.get('evalue')}")
        print(f"--- nbclient: {type(e).__name__}: {str(e)[-2000:]}")
        continue
    passed += 1
    size = len(nbformat.writes(nb).encode())
    print(f"ok   {os.path.relpath(path, root)} ({first:.0f}s{f'; again in the same kernel {second:.0f}s' if second is not None else ''}; executed {size / 1e6:.2f} MB)")
    if write:
        nbformat.write(nb, path)
    if html_dir:
        export_html(nb, path)

print(f"notebooks: {passed} passed, {failed} failed")
sys.exit(min(failed, 100))
