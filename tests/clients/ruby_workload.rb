# ruby-pg (libpq) through pgtenant, as a Rails-era service would use it:
# several threads, each with its own connection, sharing a small
# transaction-mode pool. Named statements (PQprepare) bound in and out of
# transactions on whichever server connection a transaction gets, a named
# statement described on its own, DEALLOCATE through a simple query and
# the name prepared again for another text, unnamed parameterized
# statements, COPY both ways, single-row mode, errors with their
# SQLSTATE, a type map built from the catalog, and a cancel.
# Exits non-zero with the first error. Env: PGT_DSN.
require 'pg'

THREADS = 6
ROUNDS = 40

def sqlstate(err)
  err.result&.error_field(PG::PG_DIAG_SQLSTATE)
end

def check(cond, what)
  raise "check failed: #{what}" unless cond
end

def connect
  PG.connect(ENV.fetch('PGT_DSN') + '&connect_timeout=30')
end

def worker(n)
  c = nil
  c = connect
  c.prepare('get', 'SELECT name, hits FROM rb_items WHERE id = $1')
  c.prepare('bump', 'UPDATE rb_items SET hits = hits + 1 WHERE id = $1')
  check(c.describe_prepared('get').nparams == 1, 'described alone, one parameter')
  ROUNDS.times do |i|
    id = (n * ROUNDS + i) % 50 + 1
    row = c.exec_prepared('get', [id]).first
    check(row['name'] == "item#{id}", "named statement outside a transaction: #{row}")

    sum = c.exec_params('SELECT $1::int + $2::int AS s, current_user AS who', [i, n]).first
    check(sum['s'].to_i == i + n, "unnamed statement: #{sum}")

    c.transaction do
      c.exec_prepared('bump', [id])
      check(c.exec_prepared('get', [id]).ntuples == 1, 'named statement in a transaction')
    end

    next unless (i % 10).zero?

    # An error in a transaction fails the transaction, not the session.
    c.exec('BEGIN')
    begin
      c.exec_params('SELECT * FROM no_such_table WHERE x = $1', [1])
      raise 'expected 42P01'
    rescue PG::UndefinedTable => e
      check(sqlstate(e) == '42P01', "sqlstate #{sqlstate(e)}")
    end
    begin
      c.exec_prepared('get', [id])
      raise 'expected 25P02'
    rescue PG::InFailedSqlTransaction => e
      check(sqlstate(e) == '25P02', "sqlstate #{sqlstate(e)}")
    end
    c.exec('ROLLBACK')

    c.copy_data("COPY rb_log (n, i) FROM STDIN") do
      5.times { |k| c.put_copy_data("#{n}\t#{i * 10 + k}\n") }
    end
    copied = []
    c.copy_data("COPY (SELECT i FROM rb_log WHERE n = #{n} ORDER BY i) TO STDOUT") do
      while (line = c.get_copy_data)
        copied << line.to_i
      end
    end
    check(copied.length == (i / 10 + 1) * 5, "copied back #{copied.length}")

    # Single-row mode: one result per row, then an empty one that ends
    # the statement.
    c.send_query_params('SELECT g FROM generate_series(1, $1::int) g', [25])
    c.set_single_row_mode
    statuses = []
    while (r = c.get_result)
      r.check
      statuses << [r.result_status, r.ntuples]
    end
    want = [[PG::PGRES_SINGLE_TUPLE, 1]] * 25 + [[PG::PGRES_TUPLES_OK, 0]]
    check(statuses == want, "single-row mode: #{statuses.length} results")
  end

  # DEALLOCATE by a simple query, then the name again for another text:
  # every later bind must run the new one, on any server connection.
  c.exec('DEALLOCATE get')
  c.prepare('get', 'SELECT name || \'!\' AS name, hits FROM rb_items WHERE id = $1')
  5.times do
    row = c.exec_prepared('get', [1]).first
    check(row['name'] == 'item1!', "the name prepared again: #{row}")
  end
  nil
rescue StandardError => e
  "thread #{n}: #{e.class}: #{e.message}"
ensure
  # Also mid-transaction: the other threads get its server connection.
  c&.close
end

setup = connect
setup.exec('DROP TABLE IF EXISTS rb_items, rb_log')
setup.exec('CREATE TABLE rb_items (id int PRIMARY KEY, name text NOT NULL, hits int NOT NULL DEFAULT 0)')
setup.exec('CREATE TABLE rb_log (n int, i int)')
setup.exec("INSERT INTO rb_items (id, name) SELECT g, 'item' || g FROM generate_series(1, 50) g")

errors = Array.new(THREADS) { |n| Thread.new { worker(n) } }.map(&:value).compact
abort("ruby-pg workload failed:\n#{errors.join("\n")}") unless errors.empty?

hits = setup.exec('SELECT sum(hits)::int AS n FROM rb_items').first['n'].to_i
abort("ruby-pg workload: #{hits} hits, expected #{THREADS * ROUNDS}") unless hits == THREADS * ROUNDS

# Result types from the catalog (the type map reads pg_type).
setup.type_map_for_results = PG::BasicTypeMapForResults.new(setup)
typed = setup.exec("SELECT 42::int AS i, true AS b, '{1,2}'::int[] AS a").first
abort("typed row: #{typed}") unless typed == { 'i' => 42, 'b' => true, 'a' => [1, 2] }

# A cancel reaches the statement it was meant for (57014), and the
# session goes on. (Sent again until the statement ends: one that comes
# before the statement reaches the server has nothing to cancel.)
setup.send_query('SELECT pg_sleep(30)')
20.times do
  break if setup.block(0.5)
  err = setup.cancel
  abort("cancel: #{err}") if err
end
r = setup.get_result
state = r.error_field(PG::PG_DIAG_SQLSTATE)
nil while setup.get_result
abort("cancelled statement: sqlstate #{state.inspect}") unless state == '57014'
abort('after the cancel') unless setup.exec('SELECT 1 AS ok').first['ok'] == 1
setup.close
puts "ruby-pg workload: #{THREADS} threads x #{ROUNDS} ok"
