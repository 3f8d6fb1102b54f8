"""Remote concurrency: the real fal backend and runner against the protocol emulator.

The emulator of the tests (`tests/fal_emulator.py`) stands in for the hosted
service with a fixed simulated service time; fal-client talks to it unmodified
through httpx's transport layer. A second section emulates an account whose
concurrency limit (2, a new account's) is below the requests in flight: the run
must read its `queue` as that limit's and measure the peak IN_PROGRESS at 2.
In webhook mode the emulator posts each result, signed, to the backend's receiver
over real HTTP on loopback.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

from results import Column, Section
from workloads import Questions, timed_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fal protocol emulator lives with the tests

from fal_emulator import FalEmulator  # noqa: E402
from fal_webhook_sender import WebhookSender  # noqa: E402

from backends.fal import FalBackend  # noqa: E402
from harness.run.settings import RunSettings  # noqa: E402
from harness.run.store import read_records  # noqa: E402

VIDEO_URL = "https://storage.googleapis.com/falserverless/model_tests/musepose/dance.mp4"
SERVICE_TIME = 0.5
TARGET_CONCURRENCY, TARGET_EFFICIENCY = 16, 0.8
# concurrency -> samples: 200 at 16 (issue 3); fewer at 1 and 4 to keep them short.
FULL = {1: 10, 4: 40, 16: 200, 64: 200}
QUICK = {1: 4, 4: 16, 16: 64, 64: 128}
# An emulated account limit below the requests in flight: (limit, in flight, samples).
ACCOUNT_LIMIT, ACCOUNT_IN_FLIGHT = 2, 8
ACCOUNT_SAMPLES = {False: 40, True: 16}  # by --quick
# Webhooks against polling (issue 19): at 64 in flight, each mode run 5 times, alternately,
# and its run of median wall time kept (the two differ by a few percent, as runs do).
WEBHOOK_CONCURRENCY, WEBHOOK_REPEATS = 64, 5


@contextmanager
def emulated_fal(service_time: float, account_limit: int | None = None) -> Iterator[FalEmulator]:
    """fal's queue and storage, served by the emulator with `service_time` per request
    (and at most `account_limit` requests running at once). Its webhooks are sent from an
    event loop and thread of their own, as fal's servers are not in the measured process's
    event loop (its queue, served through httpx's transport, is answered inline)."""
    webhooks = WebhookSender(own_loop=True)
    emulator = FalEmulator(
        reply="A", service_time=service_time, account_concurrency=account_limit, webhooks=webhooks
    )
    # fal-client insists on a key; the emulator's never leaves this block.
    try:
        with emulator.installed(), patch.dict(os.environ, FAL_KEY="emulator-key"):
            yield emulator
    finally:
        webhooks.close()


def fal_concurrency(
    samples: int, service_time: float, concurrency: int, *, webhooks: bool = False
) -> dict[str, Any]:
    """Wall time of a fal run over the emulator against the ideal of perfect overlap;
    with `webhooks`, results come by webhook to a receiver on a free loopback port."""
    benchmark = Questions([VIDEO_URL], per_video=samples, count=samples)  # no upload, no decode
    with tempfile.TemporaryDirectory() as scratch, emulated_fal(service_time) as emulator:
        hook = {"webhook_url": f"http://127.0.0.1:{_free_port()}/fal/webhook"} if webhooks else {}
        backend = FalBackend(upload_cache=Path(scratch) / "uploads.json", **hook)
        settings = RunSettings(concurrency=concurrency)
        progress, wall, cpu = timed_run(backend, benchmark, Path(scratch), settings)
        polls = sum(emulator.polls.values())
        delivered = sum(a.status == 200 for a in emulator.webhooks.attempts)
    ideal = math.ceil(samples / concurrency) * service_time
    row: dict[str, Any] = {
        "name": f"fal emulator, concurrency {concurrency}",
        "concurrency": concurrency,
        "samples": samples,
        "service_s": service_time,
        "wall_s": round(wall, 3),
        "ideal_s": ideal,
        "efficiency": round(ideal / wall, 3),
        # The process's CPU: the backend's, the runner's and the emulated service's.
        "cpu_ms_per_sample": round(1000 * cpu / samples, 2),
        "failed_samples": progress.failed,
        "status_polls_per_sample": round(polls / samples, 2),
        "webhooks_per_sample": round(delivered / samples, 2),
        "target": None,
        "met": None,
    }
    if concurrency == TARGET_CONCURRENCY:
        row["target"] = f"efficiency >= {TARGET_EFFICIENCY}"
        row["met"] = ideal / wall >= TARGET_EFFICIENCY and progress.failed == 0
    return row


def measure(*, quick: bool = False) -> Section:
    """Concurrency efficiency (ideal / wall) at 1, 4, 16 and 64 requests in flight."""
    plan = QUICK if quick else FULL
    sizes = ", ".join(f"{n} at {c}" for c, n in plan.items())
    return Section(
        key="remote_concurrency",
        title="Remote concurrency through the fal emulator",
        note=(
            f"The `fal` backend and the runner over the protocol emulator, {SERVICE_TIME:g} s"
            " simulated service time per request. Efficiency = ideal / wall, ideal ="
            f" ceil(samples / concurrency) x service time. Samples: {sizes} (fewer at 1 and"
            " 4 to keep those runs short). Target at 16 only."
        ),
        columns=[
            Column("concurrency", "concurrency"),
            Column("samples", "samples"),
            Column("wall", "wall_s", "{:.2f} s"),
            Column("ideal", "ideal_s", "{:.2f} s"),
            Column("efficiency", "efficiency", "{:.2f}"),
            Column("status polls / sample", "status_polls_per_sample", "{:.1f}"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[fal_concurrency(n, SERVICE_TIME, c) for c, n in plan.items()],
    )


def fal_account_limit(samples: int, service_time: float) -> dict[str, Any]:
    """A run at `ACCOUNT_IN_FLIGHT` in flight over an account limited to `ACCOUNT_LIMIT`:
    what its records say of fal's `queue` and the peak IN_PROGRESS (`backends.fal_account`)."""
    benchmark = Questions([VIDEO_URL], per_video=samples, count=samples)
    with (
        tempfile.TemporaryDirectory() as scratch,
        emulated_fal(service_time, ACCOUNT_LIMIT),
    ):
        backend = FalBackend(upload_cache=Path(scratch) / "uploads.json")
        settings = RunSettings(concurrency=ACCOUNT_IN_FLIGHT)
        progress, wall, _ = timed_run(backend, benchmark, Path(scratch), settings)
        (records_path,) = Path(scratch).glob("run-*/records.jsonl")
        records = read_records(records_path).records
    found = FalBackend.run_facts(records)
    facts = found.facts if found else {}
    queues = [r.timings["queue"] for r in records if "queue" in r.timings]
    likely = f"mostly the account's concurrency limit (likely {ACCOUNT_LIMIT})"
    return {
        "name": f"fal emulator, account limit {ACCOUNT_LIMIT}, {ACCOUNT_IN_FLIGHT} in flight",
        "account_limit": ACCOUNT_LIMIT,
        "concurrency": ACCOUNT_IN_FLIGHT,
        "samples": samples,
        "service_s": service_time,
        "wall_s": round(wall, 3),
        "ideal_s": math.ceil(samples / ACCOUNT_LIMIT) * service_time,
        "queue_mean_s": round(sum(queues) / len(queues), 3) if queues else None,
        "peak_in_progress": facts.get("peak_in_progress"),
        "queue_is": facts.get("queue_is"),
        "warned": bool(found and found.warnings),
        "failed_samples": progress.failed,
        "target": f"peak IN_PROGRESS = {ACCOUNT_LIMIT}; queue read as the account's",
        "met": facts.get("peak_in_progress") == ACCOUNT_LIMIT
        and facts.get("queue_is") == likely
        and progress.failed == 0,
    }


def measure_account_limit(*, quick: bool = False) -> Section:
    """fal's queue under an emulated account limit below the requests in flight."""
    samples = ACCOUNT_SAMPLES[quick]
    return Section(
        key="remote_account_limit",
        title="fal account concurrency limit through the emulator",
        note=(
            f"The `fal` backend and the runner at {ACCOUNT_IN_FLIGHT} in flight over the"
            f" protocol emulator with an account limit of {ACCOUNT_LIMIT} (a new fal"
            f" account's), {SERVICE_TIME:g} s simulated service time, {samples} samples:"
            " the rest of the requests wait IN_QUEUE at fal. Peak IN_PROGRESS and what"
            " `queue` is are read from the run's records (`backends/fal_account.py`), as"
            " `summary.json` and `report.md` show them; ideal = ceil(samples / limit) x"
            " service time."
        ),
        columns=[
            Column("limit", "account_limit"),
            Column("in flight", "concurrency"),
            Column("samples", "samples"),
            Column("wall", "wall_s", "{:.2f} s"),
            Column("ideal", "ideal_s", "{:.2f} s"),
            Column("queue mean", "queue_mean_s", "{:.2f} s"),
            Column("peak IN_PROGRESS", "peak_in_progress"),
            Column("queue is", "queue_is"),
            Column("warned", "warned"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[fal_account_limit(samples, SERVICE_TIME)],
    )


def measure_webhooks(*, quick: bool = False) -> Section:
    """Webhook mode against polling at 64 in flight, in the same process, alternately."""
    samples = (QUICK if quick else FULL)[WEBHOOK_CONCURRENCY]
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(WEBHOOK_REPEATS):
        for webhooks in runs:
            row = fal_concurrency(samples, SERVICE_TIME, WEBHOOK_CONCURRENCY, webhooks=webhooks)
            runs[webhooks].append(row)
    polling, webhook = (_median_run(runs[mode]) for mode in (False, True))
    polling["name"] = f"fal emulator, polling, concurrency {WEBHOOK_CONCURRENCY}"
    webhook["name"] = f"fal emulator, webhooks, concurrency {WEBHOOK_CONCURRENCY}"
    polling["mode"], webhook["mode"] = "status polls", "webhooks"
    webhook["target"] = (
        f"0 status polls / sample, efficiency >= polling's ({polling['efficiency']})"
    )
    webhook["met"] = (
        webhook["status_polls_per_sample"] == 0
        and webhook["efficiency"] >= polling["efficiency"]
        and webhook["failed_samples"] == 0
    )
    return Section(
        key="remote_webhooks",
        title="fal webhooks against status polls",
        note=(
            f"The `fal` backend over the emulator at {WEBHOOK_CONCURRENCY} in flight, {samples}"
            f" samples of {SERVICE_TIME:g} s simulated service time, run {WEBHOOK_REPEATS} times"
            " in each mode, alternately; the run of median wall time is shown. Polling: the"
            " default schedule. Webhooks (`-B webhook_url`): the emulator posts each result,"
            " signed, from an event loop and thread of its own (fal's servers are not in the"
            " run's process), to the backend's receiver over loopback HTTP; the receiver checks the"
            " signature, and the sample reads its result once (for what fal billed), as"
            " polling does. CPU / sample is the whole process's (backend, runner and the"
            " emulated service: the deliveries' sending and the polls' serving) over the run."
        ),
        columns=[
            Column("mode", "mode"),
            Column("samples", "samples"),
            Column("wall", "wall_s", "{:.2f} s"),
            Column("ideal", "ideal_s", "{:.2f} s"),
            Column("efficiency", "efficiency", "{:.2f}"),
            Column("status polls / sample", "status_polls_per_sample", "{:.1f}"),
            Column("webhooks / sample", "webhooks_per_sample", "{:.1f}"),
            Column("CPU / sample", "cpu_ms_per_sample", "{:.2f} ms"),
            Column("target", "target"),
            Column("met", "met"),
        ],
        rows=[polling, webhook],
    )


def _median_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, with every run's wall time beside it."""
    chosen = dict(sorted(rows, key=lambda r: r["wall_s"])[len(rows) // 2])
    chosen["walls_s"] = [row["wall_s"] for row in rows]
    return chosen


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
