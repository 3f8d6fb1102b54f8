"""The public benchmarks' official scoring rules, run beside our own on the same answers.

Each module restates one rule in our own code from its published source, quirks
included (they are what makes an official number differ from ours), and names
that source in its scorer's name. A benchmark exposes its rule as
`official_score` (`harness.protocols.ScoresOfficially`); the rule never changes
the benchmark's own score, which stays primary. Where the authors publish no rule
for free-text answers, the most used peer's is named instead (NExT-QA multiple
choice: lmms-eval's parser). A rule that asks an LLM when it cannot read an answer
(TempCompass) is run with that fallback off: the answer is unreadable.
"""
