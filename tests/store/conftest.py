from tests.store.backends import pg_database, store, store_url  # noqa: F401 - fixtures
