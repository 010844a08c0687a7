pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.personas",
    "tests.fixtures.simulator",
    "tests.fixtures.private_servers",
    "tests.fixtures.api_schema",
    "tests.fixtures.private_pg",
    "tests.fixtures.rabbit_cluster",
]
