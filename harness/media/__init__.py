"""Videos: probing and frame sampling (PyAV), frames shared per video, downloads, the cache."""
