"""psycopg 3 through pgtenant with server-side prepared statements on every
query (prepare_threshold=0), from several threads. Env: PGT_DSN."""
import os
import sys
import threading

import psycopg

errors: list[str] = []


def worker(n: int) -> None:
    try:
        with psycopg.connect(os.environ["PGT_DSN"], prepare_threshold=0, autocommit=True) as c:
            for i in range(50):
                v = c.execute("SELECT %s::int * 2, current_user", (i,)).fetchone()
                assert v[0] == i * 2, v
                with c.transaction():
                    c.execute("INSERT INTO pg_log (n, i) VALUES (%s, %s)", (n, i))
                    cnt = c.execute("SELECT count(*) FROM pg_log WHERE n = %s", (n,)).fetchone()[0]
                    assert cnt == i + 1, cnt
    except Exception as e:  # noqa: BLE001
        errors.append(f"{type(e).__name__}: {e}")


def main() -> None:
    with psycopg.connect(os.environ["PGT_DSN"], autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS pg_log")
        c.execute("CREATE TABLE pg_log (n int, i int)")
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("psycopg workload failed: " + errors[0], file=sys.stderr)
        sys.exit(1)
    print("psycopg workload: 8 threads x 50 ok")


if __name__ == "__main__":
    main()
