"""Reading answers: the choice extractor, open-ended metrics, their text normaliser,
what scoring reads, prompts, the judge, breakdown keys."""
