"""Seeds: parse the text files, cache what was parsed, give every story its identity."""
