"""`vqa-harness` command line: run, list, report, merge, bench, gate, compare.

Bad input ends with one line on stderr and exit status 2, never a traceback; so
does a run stopped by a systemic failure (`--systemic-failures`), with the line
that resumes it once the cause is fixed.

The process ends as soon as its command does (`entry`): SIGTERM or Ctrl-C ends a
run within seconds, its records kept and the `--resume` line printed, whatever a
worker thread is still doing (a download from a silent server, a decode), and a
run whose deadline gave up on such work does not wait for it either.
"""

from __future__ import annotations

import argparse
import errno
import io
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from harness.errors import HarnessError, UsageError
from harness.run.presets import PRESETS, get_preset
from harness.run.settings import RunSettings
from harness.scoring.judge import DEFAULT_JUDGE_URL
from harness.secrets import scrub

# Each command imports what it needs when it runs, so that `--help`, `--version` and the
# commands that only read run directories start fast (perf: startup) and never import
# the backends' and benchmarks' libraries (tests/test_imports.py).
if TYPE_CHECKING:
    from harness.analysis.compare import Prices
    from harness.protocols import HttpMode
    from harness.registry import OptionSpec, Registry
    from harness.run.recording import Recording
    from harness.run.runner import Progress
    from harness.run.session import ReadyRun
    from harness.run.shards import Shard

PROG = "vqa-harness"
EXIT_USAGE = 2
EXIT_GATE_FAILED = 1
EXIT_BUG = 1
EXIT_INTERRUPTED = 130
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""A write the file system refused for want of room: no space, over quota, over the size limit."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (see --help for usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


class _Version(argparse.Action):
    """`--version`: prints `version_line()` and exits; worked out only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> NoReturn:
        print(version_line())
        parser.exit()


def version_line() -> str:
    """`vqa-harness 0.1.0 (git 3159cf1)`: the installed version and, from a git checkout,
    its commit, `+dirty` when tracked files have changed since."""
    from importlib.metadata import PackageNotFoundError, version

    from harness.run.environment import PROJECT, git_state

    try:
        line = f"{PROG} {version(PROJECT)}"
    except PackageNotFoundError:
        line = f"{PROG} (not installed)"
    git = git_state()
    if git:
        line += f" (git {git['commit'][:7]}{'+dirty' if git['dirty'] else ''})"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; an error the user can fix (a full disk among them) is one line and
    exit status 2, and anything else is a bug: its traceback, then one line saying so,
    and exit status 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # any text printed, as stderr does already
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        return args.handler(args)
    except HarnessError as exc:
        print(f"{PROG}: error: {scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            where = f" {exc.filename}" if exc.filename else ""
            print(f"{PROG}: error: cannot write{where}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        print(scrub(traceback.format_exc()), end="", file=sys.stderr)
        print(
            f"{PROG}: internal error, a bug: {type(exc).__name__}: {scrub(str(exc))}",
            file=sys.stderr,
        )
        return EXIT_BUG


def entry(argv: Sequence[str] | None = None) -> NoReturn:
    """The `vqa-harness` command: `main`, then exit. Where threads are still busy after
    it (a download a deadline or an interrupt gave up on), the process ends at once
    instead of waiting for them at exit: what it keeps is on disk by then."""
    code = main(argv)
    if _threads_left(grace_s=1.0):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _threads_left(grace_s: float) -> bool:
    """Whether a thread the interpreter would wait for at exit is still running after
    `grace_s` (idle pool threads end at once when their pool is shut down)."""
    end = time.monotonic() + grace_s
    others = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon
    ]
    for thread in others:
        thread.join(max(0.0, end - time.monotonic()))
    return any(thread.is_alive() for thread in others)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Evaluate video QA backends side by side.")
    parser.add_argument(
        "--version", action=_Version, help="print the version (and git commit) and exit"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    run = commands.add_parser("run", help="run a backend over a benchmark")
    run.add_argument("--backend", help="backend name (see `list`)")
    run.add_argument(
        "--benchmark",
        help="benchmark name, or manifest:PATH for a local .jsonl/.csv file (default: synthetic, "
        "or the preset's)",
    )
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="the benchmark and local backend settings behind a published number "
        "(README: Protocols and published results)",
    )
    run.add_argument(
        "-B",
        "--backend-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend option, repeatable",
    )
    run.add_argument(
        "-S",
        "--benchmark-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="benchmark option, repeatable",
    )
    run.add_argument(
        "--category",
        dest="categories",
        action="append",
        metavar="NAME",
        help="run only samples of this category, repeatable",
    )
    run.add_argument(
        "--sample",
        type=positive_int,
        metavar="N",
        help="run a stratified sample of N samples by category (after --category)",
    )
    run.add_argument(
        "--seed", type=int, help="seed of --sample: another seed, another sample (default: 0)"
    )
    run.add_argument(
        "--limit", type=positive_int, help="run only the first N samples (after --sample)"
    )
    run.add_argument(
        "--concurrency",
        type=positive_int,
        help="samples in flight (default: the backend's own, see `list`)",
    )
    run.add_argument(
        "--decode-ahead",
        type=non_negative_int,
        default=RunSettings.decode_ahead,
        metavar="N",
        help="samples prepared (video fetched, frames decoded) ahead of those in flight; "
        "0: each when its turn comes (default: %(default)s)",
    )
    run.add_argument(
        "--deadline",
        type=positive_float,
        default=600.0,
        help="seconds a sample may take before it fails (default: %(default)s)",
    )
    run.add_argument(
        "--systemic-failures",
        type=non_negative_int,
        default=RunSettings.systemic_failures,
        metavar="N",
        help="stop the run, exit status 2, when the first N samples all fail with the same "
        "error kind (a wrong key, a model that cannot load); invalid samples are not "
        "counted; 0: never stop (default: %(default)s)",
    )
    run.add_argument(
        "--warmup",
        type=non_negative_int,
        default=0,
        help="first N samples are warm-up: kept, but left out of latency statistics",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="directory for run directories (default: %(default)s)",
    )
    run.add_argument(
        "--run-id",
        help="name of the run directory (default: time, benchmark, backend); "
        "with --shard, -shardIofN is appended",
    )
    run.add_argument(
        "--shard",
        type=shard_argument,
        metavar="I/N",
        help="run only shard I of N (0-based) of the samples, e.g. one per GPU; "
        "auto: from RANK/WORLD_SIZE as torchrun and accelerate launch set them",
    )
    judge = run.add_argument_group("LLM judge for open-ended answers")
    judge.add_argument(
        "--judge-model", metavar="MODEL", help="pinned model id of an LLM judge (off when absent)"
    )
    judge.add_argument(
        "--judge-url",
        default=DEFAULT_JUDGE_URL,
        metavar="URL",
        help="OpenAI-compatible API base URL (default: %(default)s)",
    )
    judge.add_argument(
        "--judge-key-env",
        default="JUDGE_API_KEY",
        metavar="VAR",
        help="environment variable holding the judge's API key (default: %(default)s)",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run, skipping samples with an OK record",
    )
    run.add_argument(
        "--retry-failed", action="store_true", help="with --resume: run failed samples again"
    )
    http = run.add_mutually_exclusive_group()
    http.add_argument("--record", type=Path, metavar="DIR", help="record the run's HTTP into DIR")
    http.add_argument(
        "--replay", type=Path, metavar="DIR", help="replay HTTP recorded in DIR: no network, no key"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_run)

    listing = commands.add_parser("list", help="list backends and benchmarks with their options")
    listing.set_defaults(handler=cmd_list)

    report = commands.add_parser("report", help="summarise a run: report.md and summary.json")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.set_defaults(handler=cmd_report)

    merge = commands.add_parser(
        "merge", help="join the shards of a run into one run directory, and report it"
    )
    merge.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    merge.add_argument(
        "--out", type=Path, required=True, help="directory for the merged run directory"
    )
    merge.add_argument(
        "--run-id", help="name of the merged run directory (default: time, benchmark, backend)"
    )
    merge.set_defaults(handler=cmd_merge)

    bench = commands.add_parser(
        "bench", help="every available backend over a benchmark, side by side"
    )
    bench.add_argument(
        "--backend",
        dest="backends",
        action="append",
        metavar="NAME",
        help="backend to include, repeatable (default: every registered backend)",
    )
    bench.add_argument(
        "--benchmark", default="synthetic", help="benchmark name (default: %(default)s)"
    )
    bench.add_argument("--limit", type=positive_int, help="run only the first N samples")
    bench.add_argument(
        "--concurrency", type=positive_int, help="samples in flight per backend (default: its own)"
    )
    bench.add_argument(
        "--out", type=Path, default=Path("runs/bench"), help="where runs and bench.md go"
    )
    bench.add_argument(
        "--demo",
        action="store_true",
        help="where a backend's real model cannot run here, run its demo model instead "
        "(built under --out; `list` says which backends have one)",
    )
    bench.set_defaults(handler=cmd_bench)

    gate = commands.add_parser(
        "gate",
        help="check a run against a baseline summary.json: exit 1 when a bound is breached",
    )
    gate.add_argument("run_dir", type=Path, metavar="RUN")
    gate.add_argument(
        "--baseline", type=Path, required=True, metavar="SUMMARY", help="baseline summary.json"
    )
    gate.add_argument(
        "--max-accuracy-drop",
        type=fraction,
        default=0.0,
        metavar="X",
        help="accuracy may fall by at most X, a fraction: 0.02 is 2 points (default: %(default)s)",
    )
    gate.add_argument(
        "--max-latency-ratio",
        type=positive_float,
        metavar="Y",
        help="p50 of total, and of each other timing component both have, may be at most "
        "Y times the baseline's (default: latency not checked)",
    )
    gate.set_defaults(handler=cmd_gate)

    compare = commands.add_parser(
        "compare", help="runs side by side against the first: Markdown, and an HTML report"
    )
    compare.add_argument("baseline", type=Path, metavar="RUN_A", help="the baseline run")
    compare.add_argument("others", type=Path, nargs="+", metavar="RUN_B", help="runs to compare")
    compare.add_argument(
        "--html",
        type=Path,
        metavar="PATH",
        help="where the HTML report goes (default: report.html next to RUN_A)",
    )
    compare.add_argument(
        "--price",
        dest="prices",
        type=price_argument,
        action="append",
        default=[],
        metavar="BACKEND=USD",
        help="price of a backend's compute, in USD per the unit `list` gives for it, for the "
        "cost of its runs; repeatable",
    )
    compare.set_defaults(handler=cmd_compare)
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1, got {text}")
    return value


def price_argument(text: str) -> tuple[str, float]:
    name, sep, usd = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form BACKEND=USD")
    return name, positive_float(usd)


def shard_argument(text: str) -> Shard:
    from harness.run.shards import parse_shard

    try:
        return parse_shard(text, os.environ)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from harness.analysis.summary import summarize_run
    from harness.report.markdown import percent, write_summary
    from harness.run.recording import http_recording
    from harness.run.runner import SystemicFailure
    from harness.run.store import RunDirError

    mode: HttpMode = "record" if args.record else "replay" if args.replay else "live"
    with http_recording(mode, args.record or args.replay) as recording:
        ready = _start(args, recording)
        settings = RunSettings(
            concurrency=args.concurrency or ready.backend.default_concurrency,
            decode_ahead=args.decode_ahead,
            deadline=args.deadline,
            warmup=args.warmup,
            retry_failed=args.retry_failed,
            systemic_failures=args.systemic_failures,
        )
        print(f"run directory: {ready.store.path}", file=sys.stderr)
        try:
            progress = asyncio.run(_run_until_signal(ready, settings, not args.no_progress))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print(
                f"\ninterrupted: completed samples are kept in {ready.store.path}\n"
                f"{_resume_line(ready)}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        except SystemicFailure as exc:
            _explain_replay_misses(recording, ready)
            print(f"{PROG}: {exc}", file=sys.stderr)
            if recording.mode != "replay":  # a replay is not resumed: it is run again
                print(f"{_resume_line(ready)} --retry-failed", file=sys.stderr)
            return EXIT_USAGE
        except RunDirError as exc:  # records cannot be written (a full disk): kept so far
            print(f"{PROG}: error: {scrub(str(exc))}", file=sys.stderr)
            if recording.mode != "replay":
                print(_resume_line(ready), file=sys.stderr)
            return EXIT_USAGE
        _explain_replay_misses(recording, ready)
    summary = summarize_run(ready.store.path)
    write_summary(ready.store.path, summary)
    print(
        f"accuracy {percent(progress.correct / progress.total if progress.total else None)} "
        f"({progress.correct}/{progress.total}), {progress.failed} failed; "
        f"report: {ready.store.path / 'report.md'}"
    )
    for warning in summary.backend_facts["warnings"] if summary.backend_facts else ():
        print(f"{PROG}: warning: {scrub(warning)}", file=sys.stderr)
    return 0


def _resume_line(ready: ReadyRun) -> str:
    return f"resume with: {PROG} run --resume {ready.store.path}"


def _explain_replay_misses(recording: Recording, ready: ReadyRun) -> None:
    """Once per run: what a replay's recording holds, when samples asked for more."""
    from harness.run.recording import explain_misses
    from harness.run.store import read_records

    note = explain_misses(recording, read_records(ready.store.records_path).records)
    if note:
        print(note, file=sys.stderr)


def _start(args: argparse.Namespace, recording: Recording) -> ReadyRun:
    from harness.plugins import benchmarks
    from harness.registry import parse_assignments
    from harness.run.session import resume_run, start_run
    from harness.run.spec import RunSpec

    if args.resume is not None:
        if recording.mode != "live":
            raise UsageError("--resume continues a live run; --record and --replay start new ones")
        given = [
            flag
            for flag, value in (
                ("--backend", args.backend),
                ("--category", args.categories),
                ("--sample", args.sample),
                ("--seed", args.seed is not None),
                ("--limit", args.limit),
                ("--backend-opt", args.backend_opt),
                ("--benchmark-opt", args.benchmark_opt),
                ("--run-id", args.run_id),
                ("--shard", args.shard),
                ("--judge-model", args.judge_model),
                ("--preset", args.preset),
            )
            if value
        ]
        if given:
            raise UsageError(f"--resume takes the run's own settings; drop {', '.join(given)}")
        return resume_run(args.resume)
    if args.retry_failed:
        raise UsageError("--retry-failed only makes sense with --resume RUN_DIR")
    if not args.backend:
        raise UsageError("--backend is required (see `vqa-harness list`)")
    if args.seed is not None and args.sample is None:
        raise UsageError("--seed only makes sense with --sample N")
    benchmark, shorthand = benchmarks.parse_reference(args.benchmark or "synthetic")
    options = parse_assignments(args.benchmark_opt, "--benchmark-opt")
    if shorthand.keys() & options.keys():
        (key,) = shorthand
        raise UsageError(f"--benchmark {args.benchmark} sets {key} already; drop -S {key}=...")
    backend_options: dict[str, Any] = parse_assignments(args.backend_opt, "--backend-opt")
    benchmark_options: dict[str, Any] = {**options, **shorthand}
    if args.preset:
        benchmark, backend_options, benchmark_options = get_preset(args.preset).apply(
            args.backend, args.benchmark and benchmark, backend_options, benchmark_options
        )
    spec = RunSpec(
        backend=args.backend,
        benchmark=benchmark,
        backend_options=backend_options,
        benchmark_options=benchmark_options,
        categories=tuple(sorted(set(args.categories or ()))),
        sample=args.sample,
        seed=args.seed or 0,
        limit=args.limit,
        shard=args.shard,
        judge=_judge_spec(args),
        preset=args.preset,
    )
    return start_run(spec, args.out, args.run_id, recording)


def _judge_spec(args: argparse.Namespace) -> dict[str, str] | None:
    if not args.judge_model:
        return None
    return {
        "base_url": args.judge_url,
        "model": args.judge_model,
        "api_key_env": args.judge_key_env,
    }


class _Unwaited(ThreadPoolExecutor):
    """The run's default executor (`asyncio.to_thread`): closing the loop does not wait
    for its threads, which may be busy on a sample given up on (`entry`)."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=cancel_futures)


async def _run_until_signal(
    ready: ReadyRun, settings: RunSettings, show_progress: bool
) -> Progress:
    """Run, treating SIGTERM like Ctrl-C: in-flight work is cancelled through the backend,
    and the threads still busy are not waited for."""
    import asyncio
    import signal

    from harness.run.session import execute_run

    task = asyncio.current_task()
    assert task is not None  # a coroutine run by asyncio.run()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(_Unwaited(thread_name_prefix="vqa-harness-worker"))
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await execute_run(ready, settings, show_progress=show_progress)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def cmd_list(args: argparse.Namespace) -> int:
    from harness.plugins import backends, benchmarks

    for title, registry, flag in (
        ("backends", backends, "-B"),
        ("benchmarks", benchmarks, "-S"),
    ):
        print(f"{title}:")
        names = registry.names()
        if not names:
            print("  (none registered)")
        for name in names:
            print(f"  {_describe_entry(registry, name)}")
            option = registry.shorthand(name)
            if option:
                value = option.upper()
                print(f"      {name}:{value}  (short for {name} {flag} {option}={value})")
            for spec in registry.options(name):
                print(f"      {flag} {_describe_option(spec)}")
    return 0


def _describe_entry(registry: Registry, name: str) -> str:
    from harness.protocols import EstimatesCost

    cls = registry.get(name)
    doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
    version = getattr(cls, "version", None)
    version = f" v{version}" if isinstance(version, str) else ""  # not when per instance
    reason = cls.unavailable_reason() if hasattr(cls, "unavailable_reason") else None
    status = f"  [unavailable: {reason}]" if reason else ""
    price = f"\n      price: USD per {cls.price_unit}" if isinstance(cls, EstimatesCost) else ""
    return f"{name}{version} - {doc}{status}{price}"


def _describe_option(spec: OptionSpec) -> str:
    default = "required" if spec.required else f"default: {spec.default}"
    return f"{spec.name}={spec.type_name()}  ({default}) {spec.help}".rstrip()


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench import run_bench
    from harness.plugins import backends

    names = args.backends or backends.names()
    markdown = run_bench(names, args.benchmark, args.out, args.concurrency, args.limit, args.demo)
    print(markdown, end="")
    print(f"report: {args.out / 'bench.md'}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.markdown import write_report

    print(write_report(args.run_dir), end="")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.report.markdown import write_report
    from harness.run.merge import merge_runs

    run_dir = merge_runs(args.run_dirs, args.out, args.run_id)
    print(write_report(run_dir), end="")
    print(f"merged {len(args.run_dirs)} shards into {run_dir}", file=sys.stderr)
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from harness.analysis.gate import Bounds, gate_run
    from harness.report.gate_table import render_gate

    bounds = Bounds(args.max_accuracy_drop, args.max_latency_ratio)
    result = gate_run(args.run_dir, args.baseline, bounds)
    print(render_gate(result), end="")
    return 0 if result.passed else EXIT_GATE_FAILED


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare_runs
    from harness.report.compare_tables import render_markdown
    from harness.report.html import default_html_path, write_html_report

    comparison = compare_runs([args.baseline, *args.others], _prices(args.prices))
    html = write_html_report(comparison, args.html or default_html_path(args.baseline))
    print(render_markdown(comparison), end="")
    print(f"HTML report: {html}", file=sys.stderr)
    return 0


def _prices(given: list[tuple[str, float]]) -> Prices:
    """The `--price` table; each backend named must estimate its cost."""
    from harness.analysis.compare import Prices, registered_estimator

    for name, _ in given:
        if registered_estimator(name) is None:
            raise UsageError(f"--price {name}=...: backend {name!r} estimates no cost (see `list`)")
    return Prices(dict(given))


if __name__ == "__main__":
    entry()
