// pgjdbc through pgtenant, as a Java application would use it: statements
// past pgjdbc's prepareThreshold (named server-side statements), batches,
// savepoints, fetch-size cursors (suspended portals), COPY, metadata, a
// query timeout (CancelRequest), from several threads sharing a small
// transaction-mode pool, in the clear or over TLS. Exits non-zero with
// the first error. Env: PGT_DSN (its sslmode is pgjdbc's).
//
// Run as a single-file program: java -cp postgresql.jar JdbcWorkload.java

import java.io.StringReader;
import java.math.BigDecimal;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcWorkload {
    static final int THREADS = 6;
    static final int ROWS = 100;
    static String url;
    static Properties props = new Properties();

    public static void main(String[] args) {
        try {
            run();
        } catch (Throwable e) {
            // The pool's threads would keep the JVM up: exit here.
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static void run() throws Exception {
        URI u = new URI(System.getenv("PGT_DSN"));
        String[] userInfo = u.getRawUserInfo().split(":", 2);
        url = "jdbc:postgresql://" + u.getHost() + ":" + u.getPort() + u.getPath();
        props.setProperty("user", URLDecoder.decode(userInfo[0], StandardCharsets.UTF_8));
        props.setProperty("password", URLDecoder.decode(userInfo[1], StandardCharsets.UTF_8));
        // The DSN's sslmode (disable, require: pgjdbc's own names).
        props.setProperty("sslmode", u.getQuery().replaceFirst("^.*sslmode=([a-z-]+).*$", "$1"));
        props.setProperty("ApplicationName", "jdbc-workload");
        // A reply that never comes fails the run instead of hanging it.
        props.setProperty("socketTimeout", "60");

        try (Connection c = DriverManager.getConnection(url, props);
                Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS jdbc_items");
            s.execute("CREATE TABLE jdbc_items (id int PRIMARY KEY, name text, price numeric,"
                    + " at timestamptz)");
        }

        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        List<Future<?>> runs = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int n = t;
            runs.add(pool.submit(() -> {
                worker(n);
                return null;
            }));
        }
        for (Future<?> f : runs) {
            f.get();
        }
        pool.shutdown();

        try (Connection c = DriverManager.getConnection(url, props)) {
            timeout(c);
            metadata(c);
            try (Statement s = c.createStatement();
                    ResultSet r = s.executeQuery("SELECT count(*), sum(price) FROM jdbc_items")) {
                r.next();
                // ROWS batched + one savepoint row kept + ROWS copied, per thread.
                check(r.getLong(1) == (long) THREADS * (2 * ROWS + 1), "rows: " + r.getLong(1));
            }
        }
        System.out.println("jdbc workload: " + THREADS + " threads ok");
    }

    // Threads differ in how pgjdbc talks: its defaults; a server-side
    // statement from the first use plus a SAVEPOINT before every statement
    // in a transaction (autosave, as used against "cached plan must not
    // change result type"); the simple protocol with literals inlined.
    static Properties variant(int n) {
        Properties p = new Properties();
        p.putAll(props);
        switch (n % 3) {
            case 1 -> {
                p.setProperty("prepareThreshold", "1");
                p.setProperty("autosave", "always");
            }
            case 2 -> p.setProperty("preferQueryMode", "simple");
            default -> { }
        }
        return p;
    }

    static void worker(int n) throws Exception {
        try (Connection c = DriverManager.getConnection(url, variant(n))) {
            // Past prepareThreshold (5) pgjdbc parses "S_1" once and then
            // only binds it: the statement must follow the client onto
            // whichever server connection its next transaction gets. Each
            // run in its own transaction: pgjdbc parses again and retries a
            // statement the server says does not exist (26000), but not
            // inside a transaction, where the error reaches us. (With
            // autosave=always it rolls back to its savepoint and retries
            // there too: tests/drivers.rs checks the server's log.)
            c.setAutoCommit(false);
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2, current_setting('application_name')")) {
                for (int i = 0; i < 20; i++) {
                    ps.setInt(1, i);
                    try (ResultSet r = ps.executeQuery()) {
                        check(r.next() && r.getInt(1) == 2 * i, "doubled " + i);
                        check("jdbc-workload".equals(r.getString(2)), "application_name " + r.getString(2));
                    }
                    c.commit();
                }
            }

            // A batch: many Bind/Execute pairs, one Sync.
            OffsetDateTime at = OffsetDateTime.of(2026, 12, 6, 12, 30, 0, 0, ZoneOffset.ofHours(2));
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO jdbc_items (id, name, price, at) VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < ROWS; i++) {
                    ps.setInt(1, n * 10_000 + i);
                    ps.setString(2, "item" + i);
                    ps.setBigDecimal(3, new BigDecimal("1.25"));
                    ps.setObject(4, at);
                    ps.addBatch();
                }
                check(ps.executeBatch().length == ROWS, "batch counts");
            }
            c.commit();

            // A savepoint rolled back keeps the rest of the transaction.
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO jdbc_items (id, name) VALUES (" + (n * 10_000 + 5000) + ", 'kept')");
                Savepoint sp = c.setSavepoint();
                s.executeUpdate("INSERT INTO jdbc_items (id, name) VALUES (" + (n * 10_000 + 5001) + ", 'undone')");
                c.rollback(sp);
                c.commit();
            }

            // A fetch size inside a transaction: Execute with a row limit,
            // PortalSuspended, Execute again, on the same server connection
            // (with preferQueryMode=simple pgjdbc reads all rows at once).
            try (Statement s = c.createStatement()) {
                s.setFetchSize(7);
                int seen = 0;
                try (ResultSet r = s.executeQuery("SELECT id, at FROM jdbc_items WHERE id BETWEEN "
                        + n * 10_000 + " AND " + (n * 10_000 + ROWS - 1) + " ORDER BY id")) {
                    while (r.next()) {
                        check(r.getInt(1) == n * 10_000 + seen, "row order");
                        check(r.getObject(2, OffsetDateTime.class).toInstant().equals(at.toInstant()), "timestamptz");
                        seen++;
                    }
                }
                check(seen == ROWS, "fetched " + seen);
            }
            c.commit();
            c.setAutoCommit(true);

            // An error reaches the driver with its SQLSTATE and leaves the
            // connection usable.
            try (Statement s = c.createStatement()) {
                try {
                    s.executeQuery("SELECT * FROM no_such_table");
                    check(false, "a missing table raised nothing");
                } catch (SQLException e) {
                    check("42P01".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
                }
                try (ResultSet r = s.executeQuery("SELECT 1")) {
                    check(r.next() && r.getInt(1) == 1, "usable after an error");
                }
            }

            // COPY FROM STDIN through pgjdbc's CopyManager.
            StringBuilder data = new StringBuilder();
            for (int i = 0; i < ROWS; i++) {
                data.append(n * 10_000 + 1000 + i).append("\tcopied").append(i).append('\n');
            }
            CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
            long copied = copy.copyIn("COPY jdbc_items (id, name) FROM STDIN", new StringReader(data.toString()));
            check(copied == ROWS, "copied " + copied);
        }
    }

    // setQueryTimeout: pgjdbc sends a CancelRequest on a new connection
    // (in the clear, also when the session is over TLS, as PostgreSQL
    // allows), which the proxy must route to the server running it.
    static void timeout(Connection c) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.setQueryTimeout(1);
            try {
                s.execute("SELECT pg_sleep(30)");
                check(false, "pg_sleep(30) was not cancelled");
            } catch (SQLException e) {
                check("57014".equals(e.getSQLState()), "cancel sqlstate " + e.getSQLState());
            }
            s.setQueryTimeout(0);
            try (ResultSet r = s.executeQuery("SELECT 2")) {
                check(r.next() && r.getInt(1) == 2, "usable after a cancel");
            }
        }
    }

    // What ORMs and tools read first: tables, columns, keys. (By schema:
    // the catalogs list every tenant's tables, and other tests' tenants
    // have a jdbc_items too.)
    static void metadata(Connection c) throws SQLException {
        DatabaseMetaData md = c.getMetaData();
        String schema = c.getSchema();
        check(schema.startsWith("tenant_"), "schema " + schema);
        try (ResultSet r = md.getTables(null, schema, "jdbc_items", new String[] {"TABLE"})) {
            check(r.next(), "getTables found no jdbc_items");
        }
        int columns = 0;
        try (ResultSet r = md.getColumns(null, schema, "jdbc_items", null)) {
            while (r.next()) {
                columns++;
            }
        }
        check(columns == 4, "columns " + columns);
        try (ResultSet r = md.getPrimaryKeys(null, schema, "jdbc_items")) {
            check(r.next() && "id".equals(r.getString("COLUMN_NAME")), "primary key");
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new IllegalStateException("check failed: " + what);
        }
    }
}
