"""``syndicator serve``: the site's files and the reader's routes over HTTP."""
