"""The suite's fixtures live in plugin modules under tests/fixtures/; helpers are imported from there, never from here."""

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.app",
    "tests.fixtures.staff",
    "tests.fixtures.server",
]
