"""asyncpg through pgtenant: named prepared statements (asyncpg prepares
every query), type introspection, transactions, cursors, binary COPY, many
concurrent tasks.
Exits non-zero with the first error. Env: PGT_DSN."""
import asyncio
import os
import sys

import asyncpg


async def main() -> None:
    dsn = os.environ["PGT_DSN"]
    setup = await asyncpg.connect(dsn)
    await setup.execute(
        """
        DROP TABLE IF EXISTS items; DROP TYPE IF EXISTS mood;
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE TABLE items (id int PRIMARY KEY, name text, m mood, tags text[]);
        DROP TABLE IF EXISTS copied; CREATE TABLE copied (i int, k int);
        INSERT INTO items SELECT g, 'item' || g, 'ok', ARRAY['a', 'b'] FROM generate_series(1, 200) g;
        """
    )
    await setup.close()

    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=12)

    async def task(i: int) -> None:
        async with pool.acquire() as c:
            row = await c.fetchrow("SELECT id, name, m, tags FROM items WHERE id = $1", i % 200 + 1)
            assert row["name"] == f"item{i % 200 + 1}", row
            assert row["m"] == "ok" and row["tags"] == ["a", "b"], row  # enum + array: introspection
            stmt = await c.prepare("SELECT count(*) FROM items WHERE id <= $1")
            assert await stmt.fetchval(i % 200 + 1) == i % 200 + 1
            async with c.transaction():
                await c.execute("UPDATE items SET name = name WHERE id = $1", i % 200 + 1)
                await c.executemany("SELECT $1::int + $2::int", [(i, 1), (i, 2)])
            assert await c.fetchval("SELECT $1::text || 'x'", str(i)) == f"{i}x"
            if i % 20 == 0:
                await cursors_and_copy(c, i)

    async def cursors_and_copy(c: asyncpg.Connection, i: int) -> None:
        # Cursors inside a transaction: a portal read in batches
        # (Execute with a row limit, PortalSuspended), moved by a Query.
        async with c.transaction():
            ids = [r["id"] async for r in c.cursor("SELECT id FROM items WHERE id <= $1 ORDER BY id", 120, prefetch=50)]
            assert ids == list(range(1, 121)), ids[:5]
            cur = await c.cursor("SELECT id FROM items ORDER BY id")
            assert len(await cur.fetch(30)) == 30
            await cur.forward(10)
            assert (await cur.fetchrow())["id"] == 41
        # Binary COPY FROM STDIN, after asyncpg reads the columns' types.
        await c.copy_records_to_table("copied", records=[(i, k) for k in range(25)], columns=["i", "k"])
        assert await c.fetchval("SELECT count(*) FROM copied WHERE i = $1", i) == 25

    await asyncio.gather(*(task(i) for i in range(400)))
    await pool.close()
    print("asyncpg workload: 400 tasks ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - report any failure to the Rust test
        print(f"asyncpg workload failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
