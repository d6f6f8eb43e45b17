"""The site: feeds and pages built from the stories, written atomically."""
