"""Execute every notebook in notebooks/ with the tslab kernel (nbclient).

tslab reports a failing cell's error in the cell's stderr stream and leaves nbconvert's message
empty, so on failure this prints the failing cell's source and every stream/error output.
Usage: run-notebooks.py [--write] [--timeout SEC] [NOTEBOOK ...]
  --write  store the executed outputs back into the .ipynb files (to refresh committed outputs)
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
timeout = 300
if "--timeout" in args:
    timeout = int(args[args.index("--timeout") + 1])
paths = [a for a in args if a.endswith(".ipynb")]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not paths:
    paths = sorted(glob.glob(os.path.join(root, "notebooks", "*.ipynb")))

passed = failed = 0
for path in paths:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="tslab", timeout=timeout, resources={"metadata": {"path": os.path.dirname(path)}})
    t0 = time.time()
    try:
        client.execute()
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
    print(f"ok   {os.path.relpath(path, root)} ({time.time() - t0:.0f}s)")
    if write:
        nbformat.write(nb, path)

print(f"notebooks: {passed} passed, {failed} failed")
sys.exit(min(failed, 100))
