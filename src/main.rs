use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pgtenant::cli::Cli::parse();
    // The runtime is sized before the config is used for anything else; a
    // config that doesn't load is reported by `run` itself.
    let threads = pgtenant::config::Config::load(cli.config.as_deref())
        .map(|c| c.worker_threads)
        .unwrap_or(0);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let rt = rt.build().expect("starting the tokio runtime");
    match rt.block_on(pgtenant::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on; never a secret (errors carry none).
            eprintln!("pgtenant: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
