"""samwsss tests; a package so shared helpers import as ``tests.<name>_fixtures``."""
