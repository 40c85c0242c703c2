"""Infrastructure every layer above may use: the database, Redis, the queue, CLI helpers, ids, pagination.

Nothing here imports the domain, the API or the web pages (an import contract in pyproject.toml checks it).
"""
