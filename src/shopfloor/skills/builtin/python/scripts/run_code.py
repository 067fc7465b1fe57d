"""python: run the agent's program with the workspace as the current directory; report what it did."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import sys
import traceback
from pathlib import Path

MAX_STDOUT = 8000


def snapshot() -> dict[str, tuple[int, int]]:
    files = {}
    for path in Path(".").rglob("*"):
        if path.is_file() and not any(part.startswith(".") for part in path.parts):
            stat = path.stat()
            files[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return files


def main() -> None:
    code = json.load(sys.stdin)["code"]
    before = snapshot()
    tree = ast.parse(code, "<agent code>")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    namespace: dict[str, object] = {"__name__": "__main__"}
    printed = io.StringIO()
    result = None
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(tree, "<agent code>", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<agent code>", "eval"), namespace)
                result = None if value is None else repr(value)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            sys.stderr.write(
                printed.getvalue()[-MAX_STDOUT:] + f"\nthe program exited with status {exc.code}\n"
            )
            raise SystemExit(1) from None
    except BaseException:
        # The traceback (without this wrapper's frames) is what the model needs to fix its code.
        sys.stderr.write(printed.getvalue()[-MAX_STDOUT:])
        kind, exc, tb = sys.exc_info()
        while tb is not None and tb.tb_frame.f_code.co_filename != "<agent code>":
            tb = tb.tb_next
        sys.stderr.write("".join(traceback.format_exception(kind, exc, tb)))
        raise SystemExit(1) from None
    after = snapshot()
    changed = sorted(path for path, stat in after.items() if before.get(path) != stat)
    print(json.dumps({"stdout": printed.getvalue()[-MAX_STDOUT:], "result": result, "files": changed}))


if __name__ == "__main__":
    main()
