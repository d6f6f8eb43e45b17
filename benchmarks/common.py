"""What every benchmark project shares: the site and store part of its config."""

SITE_CONFIG = """\
[site]
title = "The Benchmark Dispatch"
url = "https://example.org/"
description = "Stories for benchmarking"
language = "en"
author_name = "Bench Newsroom"
author_email = "newsroom@example.org"

[paths]
store = "sqlite:///state/syndicator.db"
"""
