"""Finished runs for people: Markdown, comparison tables, HTML and its plots."""
