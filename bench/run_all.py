"""`make bench`: the benchmarks behind the platform's headline figures, one after the other,
each printing its figures next to the baseline it measured in the same run, collected with the
machine's description into bench/results/latest.md.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--out bench/results/latest.md]

| figure | benchmark |
| --- | --- |
| inbound interactions/s, p50/p99 webhook -> interaction -> ticket | ingest_e2e.py |
| each channel adapter's accept rate, the ingest worker's rate | ingest_adapters.py |
| contact read p99 at 1M contacts, segment evaluation | contacts_reads.py |
| 1M-row CSV import | contacts_import.py |
| campaign fan-out to 1M recipients | campaigns_fanout.py |

``--quick`` runs each at a small size (a check that the runner and the benchmarks work, not
figures to quote). Benchmarks run one at a time (they would share the CPUs otherwise); one
that fails is reported as failed and the others still run; the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


@dataclass(frozen=True)
class Benchmark:
    name: str
    figures: str  # what the issue asks of it
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    headline: tuple[str, ...]  # the printed lines (tables' headers too) that start with these


BENCHMARKS = (
    Benchmark("ingest", "inbound interactions/s; p50/p99 end to end (webhook -> contact -> ticket)",
              "ingest_e2e.py", ("-n", "2000"), ("-n", "200", "--timeout", "120"),
              ("platform", "accepted (POST", "accept latency p", "interactions end to end",
               "POST -> crm.interactions.v1 p", "POST -> crm.tickets.v1 p")),
    Benchmark("ingest-adapters", "each channel adapter's accept rate and the worker's, next to the broker",
              "ingest_adapters.py", (), ("-n", "200", "--timeout", "120"), ()),
    Benchmark("contacts-reads", "contact read p99 at 1M contacts; segment evaluation time",
              "contacts_reads.py", ("--contacts", "1000000"),
              ("--contacts", "20000", "--reads", "2000", "--batches", "20", "--updates", "100"),
              ("baseline: raw asyncpg SELECT", "contacts get_contact", "baseline: raw count of the rule",
               "full evaluation")),
    Benchmark("contacts-import", "1M-row CSV import time", "contacts_import.py",
              ("--rows", "1000000"), ("--rows", "20000"),
              ("seconds", "baseline: raw COPY", "import: upload", "import: apply", "import: total")),
    Benchmark("campaigns-fanout", "campaign fan-out time (1M recipients)", "campaigns_fanout.py",
              ("--recipients", "1000000", "--batch-size", "1000"),
              ("--recipients", "5000", "--batch-size", "1000", "--timeout", "600"),
              ("figure", "fan-out, send -> last message", "messages/s", "1M recipients at this rate",
               "target:")),
)


@dataclass
class Outcome:
    benchmark: Benchmark
    argv: list[str]
    code: int
    seconds: float
    stdout: str
    stderr_tail: str

    def headline(self) -> list[str]:
        return [line.strip() for line in self.stdout.splitlines()
                if line.strip().startswith(self.benchmark.headline)]


def describe_machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kb = next((int(line.split()[1]) for line in meminfo.splitlines()
                     if line.startswith("MemTotal:")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                           check=False).stdout.strip()
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {len(os.sched_getaffinity(0))} cores usable, "
        f"{models[0] if models else platform.processor()}",
        f"- RAM: {total_kb / 2**20:.1f} GiB",
        f"- system: {platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"- load average before the run: {os.getloadavg()[0]:.2f} (everything shares these cores)",
        f"- commit: {commit}{' with local changes' if dirty else ''}",
    ]


def run(benchmark: Benchmark, quick: bool, log_dir: Path) -> Outcome:
    """Run one benchmark: its progress (stderr) passes through to this terminal as it comes,
    the end of it kept for the report; its figures (stdout) are kept whole."""
    argv = [sys.executable, str(BENCH / benchmark.script), *(benchmark.quick if quick else benchmark.full)]
    print(f"== {benchmark.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    stdout_path = log_dir / f"{benchmark.name}.stdout"
    tail: deque[str] = deque(maxlen=20)
    started = time.perf_counter()
    with stdout_path.open("w") as stdout:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                errors="replace")
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))
        code = proc.wait()
    seconds = time.perf_counter() - started
    output = stdout_path.read_text(errors="replace")
    print(output, flush=True)
    print(f"== {benchmark.name}: exit {code} after {seconds:,.0f} s", file=sys.stderr, flush=True)
    return Outcome(benchmark, argv[1:], code, seconds, output, "\n".join(tail))


def markdown(outcomes: list[Outcome], machine: list[str], quick: bool) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run_all.py`"
        f"{' --quick: small sizes, a check of the runner, not figures to quote' if quick else ''}). "
        "Each benchmark measures its baseline in the same run, on the same machine; "
        "bench/README.md says what each figure means.",
        "",
        "## Machine",
        "",
        *machine,
        "",
        "## Headline figures",
        "",
        "| benchmark | asked for | exit | took |",
        "| --- | --- | --- | --- |",
        *(f"| {o.benchmark.script} | {o.benchmark.figures} | {o.code} | {o.seconds:,.0f} s |"
          for o in outcomes),
        "",
    ]
    for outcome in outcomes:
        lines += [f"### {outcome.benchmark.script}", "", "```",
                  *(outcome.headline() or ["(see its full output below)"]), "```", ""]
    lines += ["## Full output", ""]
    for outcome in outcomes:
        lines += [f"### {outcome.benchmark.script}", "", f"`{' '.join(outcome.argv)}`", "", "```",
                  outcome.stdout.rstrip() or "(nothing printed)", "```", ""]
        if outcome.code:
            lines += ["It failed; the end of its progress output:", "", "```", outcome.stderr_tail, "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that everything runs")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS],
                        help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "latest.md")
    args = parser.parse_args()
    machine = describe_machine()  # before anything starts, for the load average
    log_dir = ROOT / ".local" / "bench-results"  # each benchmark's raw output, not kept in git
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [run(b, args.quick, log_dir) for b in BENCHMARKS if not args.only or b.name in args.only]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(markdown(outcomes, machine, args.quick))
    temporary.replace(args.out)
    print(f"written to {args.out}", flush=True)
    return 1 if any(o.code for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
