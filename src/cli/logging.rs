//! The tracing subscriber: `log.level` and `log.format`, stdout, and a
//! filter `RELOAD` and SIGHUP can change.

use tracing::Subscriber;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt, reload};

use crate::config::{Config, LogFormat};
use crate::context::LogReload;

/// Installs the subscriber; returns the hook that changes its filter at
/// runtime. Logs go to stdout: libpg_query briefly redirects the process's
/// stderr while it parses, which would swallow log lines written by other
/// threads meanwhile.
pub fn init_logging(cfg: &Config) -> LogReload {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (subscriber, reload) = subscriber(cfg.log.format, ansi, std::io::stdout, &cfg.log.level);
    // Also takes the `log` crate's records (tokio-postgres, rustls).
    if subscriber.try_init().is_err() {
        eprintln!("pgtenant: a log subscriber was already installed");
    }
    reload
}

/// The subscriber writing to `writer` at `level` (invalid: `info`).
///
/// tokio-postgres logs every statement with its parameters at `debug`, the
/// key hashes of the registry's lookups among them; a filter of its own,
/// outside the one `log.level` sets, holds it at `info` whatever that says
/// (`tokio_postgres::query=debug`, or a span's directive).
fn subscriber<W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
    level: &str,
) -> (Box<dyn Subscriber + Send + Sync>, LogReload)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let quiet = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("tokio_postgres", LevelFilter::INFO);
    let filter = filter.and(quiet);
    let layer = fmt::layer().with_writer(writer).with_ansi(ansi);
    let layer = match format {
        LogFormat::Json => layer.json().with_filter(filter).boxed(),
        LogFormat::Text => layer.with_filter(filter).boxed(),
    };
    let reload: LogReload = Box::new(move |level: &str| {
        let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    });
    (Box::new(tracing_subscriber::registry().with(layer)), reload)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What one event of each kind leaves in the log at `level`, and after
    /// a reload to `reloaded`.
    fn logged(level: &str, reloaded: &str) -> (String, String) {
        let lines = Lines::default();
        let out = lines.clone();
        let (sub, reload) = subscriber(LogFormat::Text, false, move || lines.clone(), level);
        let emit = || {
            let span = tracing::info_span!("session");
            let _in = span.enter();
            tracing::debug!(target: "tokio_postgres::query", "pg debug");
            tracing::info!(target: "tokio_postgres::connection", "pg info");
            tracing::debug!("own debug");
        };
        let taken = || String::from_utf8(std::mem::take(&mut *out.0.lock().unwrap())).unwrap();
        tracing::subscriber::with_default(sub, || {
            emit();
            let before = taken();
            reload(reloaded).unwrap();
            emit();
            (before, taken())
        })
    }

    #[test]
    fn tokio_postgres_never_logs_below_info() {
        for level in [
            "debug",
            "trace",
            "warn,tokio_postgres=trace",
            "info,tokio_postgres::query=debug",
            "info,[session]=trace",
        ] {
            let (at_start, reloaded) = logged(level, level);
            for log in [&at_start, &reloaded] {
                assert!(!log.contains("pg debug"), "{level}: {log}");
            }
        }
        let (debug, warn) = logged("debug", "warn");
        assert!(
            debug.contains("pg info") && debug.contains("own debug"),
            "{debug}"
        );
        assert!(warn.is_empty(), "{warn}");
        let (info, _) = logged("info", "info");
        assert!(
            info.contains("pg info") && !info.contains("own debug"),
            "{info}"
        );
    }
}
