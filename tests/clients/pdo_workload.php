<?php
// PHP's PDO (pdo_pgsql, libpq) through pgtenant, as a PHP application
// uses it: server-side prepared statements (PDO's default: PQprepare as
// `pdo_stmt_…`, DEALLOCATE by a simple query when the statement object
// goes), emulated prepares, transactions, lastInsertId, COPY through
// pgsqlCopyFromArray/pgsqlCopyToArray, and errors with their SQLSTATE.
// Six connections in one process take turns on a transaction-mode pool of
// three server connections, so a statement prepared through one server
// connection is bound through another.
// Exits non-zero with the first error. Env: PGT_DSN.

const CONNECTIONS = 6;
const ROUNDS = 40;

function check(bool $cond, string $what): void
{
    if (!$cond) {
        throw new RuntimeException("check failed: $what");
    }
}

function connect(): PDO
{
    $u = parse_url(getenv('PGT_DSN'));
    parse_str($u['query'] ?? '', $q);
    $dsn = sprintf(
        'pgsql:host=%s;port=%d;dbname=%s;sslmode=%s;connect_timeout=30',
        $u['host'], $u['port'], ltrim($u['path'], '/'), $q['sslmode'] ?? 'prefer'
    );
    return new PDO($dsn, urldecode($u['user']), urldecode($u['pass']), [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
    ]);
}

/** The SQLSTATE of the PDOException $f throws. */
function sqlstate_of(callable $f): ?string
{
    try {
        $f();
    } catch (PDOException $e) {
        return $e->errorInfo[0] ?? null;
    }
    return null;
}

try {
    $setup = connect();
    $setup->exec('DROP TABLE IF EXISTS pdo_items, pdo_log');
    $setup->exec('CREATE TABLE pdo_items (id serial PRIMARY KEY, name text NOT NULL, hits int NOT NULL DEFAULT 0)');
    $setup->exec('CREATE TABLE pdo_log (n int, i int)');
    $setup->exec("INSERT INTO pdo_items (name) SELECT 'item' || g FROM generate_series(1, 50) g");

    $conns = [];
    $get = [];
    for ($n = 0; $n < CONNECTIONS; $n++) {
        $conns[$n] = connect();
        // Prepared once, executed every round through whichever server
        // connection the proxy gives (PDO names it pdo_stmt_0000000N).
        $get[$n] = $conns[$n]->prepare('SELECT name, hits FROM pdo_items WHERE id = :id');
    }

    for ($i = 0; $i < ROUNDS; $i++) {
        foreach ($conns as $n => $db) {
            $id = ($n * ROUNDS + $i) % 50 + 1;
            $get[$n]->execute(['id' => $id]);
            $row = $get[$n]->fetch();
            check($row['name'] === "item$id", "prepared statement: " . json_encode($row));

            // A statement object used once: prepared, executed and
            // deallocated (a simple query) every time.
            $s = $db->prepare('SELECT CAST(? AS int) + CAST(? AS int) AS s, current_user AS who');
            $s->execute([$i, $n]);
            check((int) $s->fetchColumn() === $i + $n, 'one-off statement');
            $s = null;

            $db->beginTransaction();
            $db->prepare('UPDATE pdo_items SET hits = hits + 1 WHERE id = ?')->execute([$id]);
            $get[$n]->execute(['id' => $id]);
            check($get[$n]->fetch() !== false, 'prepared statement in a transaction');
            $db->commit();
        }

        if ($i % 10 !== 0) {
            continue;
        }
        $db = $conns[$i % CONNECTIONS];

        // An error in a transaction fails the transaction, not the session.
        $db->beginTransaction();
        check(sqlstate_of(fn () => $db->query('SELECT * FROM no_such_table')) === '42P01', '42P01');
        check(sqlstate_of(fn () => $db->query('SELECT 1')) === '25P02', '25P02');
        $db->rollBack();
        check(sqlstate_of(fn () => $db->exec('INSERT INTO pdo_items (id, name) VALUES (1, \'dup\')')) === '23505', '23505');

        // Emulated prepares: PDO quotes the values into a simple query.
        $db->setAttribute(PDO::ATTR_EMULATE_PREPARES, true);
        $e = $db->prepare('SELECT name FROM pdo_items WHERE id = :id AND name <> :odd');
        $e->execute(['id' => 3, 'odd' => "it's"]);
        check($e->fetchColumn() === 'item3', 'emulated prepare');
        $db->setAttribute(PDO::ATTR_EMULATE_PREPARES, false);

        $rows = [];
        for ($k = 0; $k < 5; $k++) {
            $rows[] = "$i\t$k";
        }
        check($db->pgsqlCopyFromArray('pdo_log', $rows), 'COPY FROM STDIN');
        $back = $db->pgsqlCopyToArray('pdo_log');
        check(count($back) === ($i / 10 + 1) * 5, 'COPY TO STDOUT: ' . count($back));

        // lastInsertId reads the sequence's session state (currval), so in
        // transaction mode it belongs in the INSERT's transaction.
        $db->beginTransaction();
        $db->exec("INSERT INTO pdo_items (name) VALUES ('new$i')");
        $last = (int) $db->lastInsertId('pdo_items_id_seq');
        $db->commit();
        $name = $db->query("SELECT name FROM pdo_items WHERE id = $last")->fetchColumn();
        check($name === "new$i", "lastInsertId $last: $name");
        $ret = $db->query("INSERT INTO pdo_items (name) VALUES ('ret$i') RETURNING id")->fetchColumn();
        check((int) $ret > $last, "RETURNING $ret");
    }

    $hits = (int) $setup->query('SELECT sum(hits) FROM pdo_items')->fetchColumn();
    check($hits === CONNECTIONS * ROUNDS, "hits $hits");
    echo 'PDO workload: ' . CONNECTIONS . ' connections x ' . ROUNDS . " ok\n";
} catch (Throwable $e) {
    fwrite(STDERR, 'PDO workload failed: ' . get_class($e) . ': ' . $e->getMessage() . "\n" . $e->getTraceAsString() . "\n");
    exit(1);
}
