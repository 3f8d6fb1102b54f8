"""Running a benchmark: start and resume, the runner, prefetching samples ahead,
selection, shards, merge, the run directory (spec, typed manifest, store, its reader `Run`),
recorded HTTP, the environment."""
