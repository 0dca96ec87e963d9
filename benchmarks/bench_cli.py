"""Benchmark: start-up time of the commands that must not import paddle, against a bare interpreter.

    python benchmarks/bench_cli.py [--runs 7]

Times, as whole processes (median of ``--runs``, interleaved): ``python -c pass`` (the floor: an
interpreter start), ``zoo --help``, ``zoo plugins`` and ``zoo models``, and checks in the same processes that
paddle was not imported. Goal (issue 12): ``zoo --help`` and ``zoo plugins`` under 0.5 s. Also prints the
size of the core: the non-blank lines of the ``zoo`` modules that ``zoo --help`` loads (goal: under 2,000).
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBE = (
    "import sys, runpy; sys.argv = ['zoo'] + sys.argv[1:]\n"
    "from zoo.cli import main\n"
    "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
    "mods = [m for m in sys.modules if m == 'zoo' or m.startswith('zoo.')]\n"
    "print('\\nPADDLE' if 'paddle' in sys.modules else '\\nNOPADDLE', ','.join(sorted(mods)), file=sys.stderr)\n"
)


def run(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    return time.perf_counter() - start, done.stderr


def core_lines(modules: list[str]) -> int:
    import importlib.util

    total = 0
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            total += sum(1 for line in Path(spec.origin).read_text().splitlines() if line.strip())
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    commands = {
        "python -c pass": ["-c", "pass"],
        "zoo --help": ["-c", PROBE, "--help"],
        "zoo plugins": ["-c", PROBE, "plugins"],
        "zoo models": ["-c", PROBE, "models"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    notes: dict[str, str] = {}
    for _ in range(args.runs):
        for name, argv in commands.items():
            seconds, err = run(argv)
            times[name].append(seconds)
            notes[name] = err.strip().splitlines()[-1] if err.strip() else ""
    floor = statistics.median(times["python -c pass"])
    ok = True
    print(f"{'command':<16} {'median s':>9} {'vs python':>10}  paddle imported")
    for name, values in times.items():
        median = statistics.median(values)
        paddle = "yes" if notes[name].startswith("PADDLE") else "no" if notes[name] else ""
        print(f"{name:<16} {median:>9.3f} {median / floor:>9.1f}x  {paddle}")
        if name in ("zoo --help", "zoo plugins") and (median >= 0.5 or paddle == "yes"):
            ok = False
    help_modules = notes["zoo --help"].split(" ", 1)[1].split(",") if " " in notes["zoo --help"] else []
    lines = core_lines(help_modules)
    print(
        f"core: {len(help_modules)} zoo modules loaded by `zoo --help`, {lines} non-blank lines (goal < 2000)"
    )
    print("  " + ", ".join(help_modules))
    return 0 if ok and lines < 2000 else 1


if __name__ == "__main__":
    sys.exit(main())
