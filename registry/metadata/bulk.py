"""Many new rows of plain values in one go: what a replica writes for each batch it applies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Table, insert


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, object]]) -> None:
    """Insert `rows` (each naming the same columns) into `table`: one executemany, or on
    Postgres one COPY (psycopg's executemany sends one statement a row, through a pipeline:
    about ten times slower for the thousands of rows of a batch)."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table), list(rows))
        return
    quote = connection.dialect.identifier_preparer.quote
    names = list(rows[0])
    columns = ", ".join(quote(name) for name in names)
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection checked out of the pool"
    statement = f"COPY {quote(table.name)} ({columns}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[name] for name in names])
