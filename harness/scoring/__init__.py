"""Reading answers: the choice extractor, open-ended metrics, what scoring reads,
prompts, the judge, breakdown keys."""
