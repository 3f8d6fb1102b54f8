"""Running a benchmark: start and resume, the runner, prefetching samples ahead,
selection, shards, merge, the run directory's store, recorded HTTP, the environment."""
