"""psycopg 3 over a libpq before 17 (Debian's, through psycopg's pure
Python implementation), which has no protocol-level Close: past
`prepared_max` statements psycopg evicts the oldest with SQL
`DEALLOCATE name`, as a simple Query outside pipeline mode and through the
extended protocol inside it. Env: PGT_DSN."""
import os
import sys

os.environ["PSYCOPG_IMPL"] = "python"  # before the import: libpq by ctypes

import psycopg

STATEMENTS = 20
PREPARED_MAX = 4


def main() -> None:
    if psycopg.pq.version() >= 170000:
        sys.exit(f"needs a libpq before 17, found {psycopg.pq.version()}")
    with psycopg.connect(os.environ["PGT_DSN"], autocommit=True) as c:
        c.prepared_max = PREPARED_MAX
        for r in range(3):
            # Each a new statement, prepared at once: every one past the
            # fourth evicts one. The evictions that results read at a sync
            # call for are sent inside the pipeline.
            curs = []
            with c.pipeline() as p:
                for k in range(STATEMENTS):
                    curs.append(c.execute(f"SELECT {k} + %s::int", (r,), prepare=True))
                    if k % 3 == 2:
                        p.sync()
            got = [cur.fetchone()[0] for cur in curs]
            assert got == [k + r for k in range(STATEMENTS)], got
            # The same, one at a time: evicted by a simple Query.
            for k in range(STATEMENTS):
                v = c.execute(f"SELECT {k} * %s::int", (r,), prepare=True).fetchone()[0]
                assert v == k * r, (k, r, v)
    print(f"psycopg over libpq {psycopg.pq.version()}: evictions ok")


if __name__ == "__main__":
    main()
