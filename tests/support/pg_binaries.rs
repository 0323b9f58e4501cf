//! Locating the PostgreSQL installation the test cluster is built from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// PostgreSQL server binaries: `$PGTENANT_TEST_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<N>/bin` (Debian/Ubuntu layout), else the `initdb` on `$PATH`.
pub(super) fn find_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGTENANT_TEST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "PGTENANT_TEST_PG_BINDIR={} has no initdb",
            dir.display()
        );
        return dir;
    }
    newest_debian_bindir().or_else(bindir_from_path).expect(
        "no PostgreSQL server binaries found: install PostgreSQL (initdb in \
         /usr/lib/postgresql/<N>/bin or on $PATH) or set PGTENANT_TEST_PG_BINDIR",
    )
}

fn newest_debian_bindir() -> Option<PathBuf> {
    fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, bin)| bin)
}

/// "15" -> [15], "9.6" -> [9, 6]; `None` for non-version directory names.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The directory of the `initdb` on `$PATH`, with symlinks resolved so that
/// its siblings (pg_ctl, postgres, pg_config) are found too.
fn bindir_from_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let initdb = std::env::split_paths(&path)
        .map(|dir| dir.join("initdb"))
        .find(|candidate| candidate.is_file())?;
    Some(fs::canonicalize(initdb).ok()?.parent()?.to_path_buf())
}

/// psql from the server's bindir if it has one, else whatever is on `$PATH`.
pub(super) fn psql_program(bindir: &Path) -> PathBuf {
    let psql = bindir.join("psql");
    if psql.is_file() {
        psql
    } else {
        PathBuf::from("psql")
    }
}

/// Whether the server can load pg_stat_statements (it is in postgresql-contrib,
/// which may be missing); looks in `pg_config --pkglibdir`, else `bindir/../lib`.
pub(super) fn has_pg_stat_statements(bindir: &Path) -> bool {
    let pkglibdir = Command::new(bindir.join("pg_config"))
        .arg("--pkglibdir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .unwrap_or_else(|| bindir.join("../lib"));
    ["so", "dylib"].iter().any(|ext| {
        pkglibdir
            .join(format!("pg_stat_statements.{ext}"))
            .is_file()
    })
}
