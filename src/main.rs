use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = pgtenant::cli::Cli::parse();
    match pgtenant::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line a person can act on; never a secret (errors carry none).
            eprintln!("pgtenant: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
