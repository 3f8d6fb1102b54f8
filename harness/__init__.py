"""vqa-harness: evaluate video question answering backends side by side."""
