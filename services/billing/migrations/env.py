from servicekit.migrations import run_migrations

run_migrations()
