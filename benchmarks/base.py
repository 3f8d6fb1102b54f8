"""The benchmark registry; the contract benchmarks implement is `harness.protocols.Benchmark`.

A built-in benchmark is one module and one line here: its name and `"module:Class"`.
"""

from __future__ import annotations

from harness.protocols import Benchmark
from harness.registry import Registry

registry: Registry[Benchmark] = Registry(
    "benchmark",
    entry_point_group="vqa_harness.benchmarks",
    lazy={
        "activitynetqa": "benchmarks.activitynetqa:ActivityNetQA",
        "manifest": "benchmarks.question_file:ManifestBenchmark",
        "mvbench": "benchmarks.mvbench:MVBench",
        "nextqa": "benchmarks.nextqa:NExTQA",
        "synthetic": "benchmarks.synthetic:SyntheticSuite",
        "tempcompass": "benchmarks.tempcompass:TempCompass",
        "videomme": "benchmarks.videomme:VideoMME",
        "videomme-subtitles": "benchmarks.videomme:VideoMMESubtitles",
    },
)
