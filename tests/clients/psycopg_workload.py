"""psycopg 3 through pgtenant from several threads: server-side prepared
statements on every query (prepare_threshold=0), pipeline mode (several
statements and Syncs in flight, an error inside a pipeline), executemany
(pipelined by psycopg), COPY in text and binary, and a server-side cursor
inside a transaction. Env: PGT_DSN."""
import os
import sys
import threading

import psycopg
from psycopg import errors as pgerr

errors: list[str] = []

THREADS = 8
ROUNDS = 50


def worker(n: int) -> None:
    try:
        with psycopg.connect(os.environ["PGT_DSN"], prepare_threshold=0, autocommit=True) as c:
            for i in range(ROUNDS):
                v = c.execute("SELECT %s::int * 2, current_user", (i,)).fetchone()
                assert v[0] == i * 2, v
                with c.transaction():
                    c.execute("INSERT INTO pg_log (n, i) VALUES (%s, %s)", (n, i))
                    cnt = c.execute("SELECT count(*) FROM pg_log WHERE n = %s", (n,)).fetchone()[0]
                    assert cnt == i + 1, cnt
                if i % 10 == 0:
                    pipelines(c, n, i)
    except Exception as e:  # noqa: BLE001
        errors.append(f"thread {n}: {type(e).__name__}: {e}")


def pipelines(c: psycopg.Connection, n: int, i: int) -> None:
    # Pipeline mode: statements sent without waiting, each with its Sync
    # (autocommit), results read afterwards.
    with c.pipeline():
        curs = [c.execute("SELECT %s::int + %s::int", (i, k)) for k in range(10)]
    assert [cur.fetchone()[0] for cur in curs] == [i + k for k in range(10)]

    # An error inside a pipeline fails it, and the session goes on.
    try:
        with c.pipeline():
            c.execute("SELECT 1")
            c.execute("SELECT * FROM no_such_table")
            c.execute("SELECT 2")
        raise AssertionError("the pipeline's error was not raised")
    except pgerr.UndefinedTable:
        pass
    assert c.execute("SELECT 3").fetchone()[0] == 3

    # executemany: pipelined Bind/Execute of one statement.
    with c.cursor() as cur:
        cur.executemany(
            "INSERT INTO pg_many (n, i, k) VALUES (%s, %s, %s)",
            [(n, i, k) for k in range(20)],
        )
    got = c.execute("SELECT count(*) FROM pg_many WHERE n = %s AND i = %s", (n, i)).fetchone()[0]
    assert got == 20, got

    # COPY, text and binary.
    with c.cursor() as cur:
        with cur.copy("COPY pg_many (n, i, k) FROM STDIN") as cp:
            for k in range(100, 110):
                cp.write_row((n, i, k))
        with cur.copy("COPY pg_many (n, i, k) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int4", "int4"])
            for k in range(200, 210):
                cp.write_row((n, i, k))
        rows = []
        with cur.copy("COPY (SELECT k FROM pg_many WHERE n = %s AND i = %s ORDER BY k) TO STDOUT", (n, i)) as cp:
            cp.set_types(["int4"])
            rows = [r[0] for r in cp.rows()]
    assert rows == list(range(20)) + list(range(100, 110)) + list(range(200, 210)), rows

    # A server-side cursor (DECLARE … FETCH) inside a transaction.
    with c.transaction():
        with c.cursor(name=f"curs{n}") as cur:
            cur.execute("SELECT g FROM generate_series(1, 100) g")
            first = cur.fetchmany(30)
            rest = cur.fetchall()
    assert len(first) == 30 and len(rest) == 70 and rest[-1][0] == 100


def main() -> None:
    with psycopg.connect(os.environ["PGT_DSN"], autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS pg_log, pg_many")
        c.execute("CREATE TABLE pg_log (n int, i int)")
        c.execute("CREATE TABLE pg_many (n int, i int, k int)")
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("psycopg workload failed:\n" + "\n".join(errors), file=sys.stderr)
        sys.exit(1)
    print(f"psycopg workload: {THREADS} threads x {ROUNDS} ok")


if __name__ == "__main__":
    main()
