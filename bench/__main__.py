"""Run the benchmarks: ``python -m bench [name] [--quick] [options of that benchmark]``.

Without a name every benchmark module in this package runs in turn (with the options given); each module has
``main(argv) -> int``. Results are printed and appended to docs/performance.md by the modules themselves.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _names() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = _names()
    if argv and not argv[0].startswith("-"):
        if argv[0] not in names:
            print(f"unknown benchmark {argv[0]!r}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        todo, rest = [argv[0]], argv[1:]
    else:
        todo, rest = names, argv
    status = 0
    for name in todo:
        module = importlib.import_module(f"bench.{name}")
        status = module.main(rest) or status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
