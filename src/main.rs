use clap::Parser;

// A connection's life allocates a few dozen small objects (startup
// parameters, settings, the session's task and buffers): mimalloc serves
// them from per-size free lists without glibc's consolidation passes.
#[global_allocator]
static ALLOC: pgtenant::allocator::MiMalloc = pgtenant::allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = pgtenant::cli::Cli::parse();
    // The runtime is sized before the config is used for anything else; a
    // config that doesn't load is reported by `run` itself.
    let threads = pgtenant::config::Config::load(cli.config.as_deref())
        .map(|c| c.worker_threads)
        .unwrap_or(1);
    // One thread (the default) is a current-thread runtime: no work
    // stealing and no cross-thread wake-ups, which is what a proxy's CPU per
    // transaction is mostly made of. More threads for dedicated hosts.
    let mut rt = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    // The proxy's timers run on a timerfd of its own (`pgtenant::timer`):
    // without tokio's time driver, a wake-up does not walk a timer wheel.
    // The admin commands are short-lived and keep tokio's.
    if matches!(cli.command, pgtenant::cli::Command::Serve) {
        rt.enable_io();
    } else {
        rt.enable_all();
    }
    if threads > 1 {
        rt.worker_threads(threads);
    }
    let rt = rt.build().expect("starting the tokio runtime");
    let result = rt.block_on(pgtenant::cli::run(cli));
    // A long statement's parse may still run on the blocking pool
    // (`session::offload`), its session gone: not waited for.
    rt.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on; never a secret (errors carry none).
            eprintln!("pgtenant: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
