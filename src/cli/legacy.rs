//! `pgtenant adopt-legacy`

use super::connect;
use super::output::emit;
use crate::config::Config;
use crate::registry::admin;

pub async fn run(cfg: &Config, json: bool, from: &str, dry_run: bool) -> anyhow::Result<()> {
    let mut client = connect(cfg).await?;
    let a = admin::adopt_legacy(&mut client, from, dry_run).await?;
    emit(json, &a, || {
        if a.objects.is_empty() {
            println!(
                "nothing to move: schema {} holds no legacy objects",
                a.from_schema
            );
        } else {
            let verb = if a.dry_run { "would move" } else { "moved" };
            println!(
                "{verb} {} objects from {} to {} (owner {}):",
                a.objects.len(),
                a.from_schema,
                a.to_schema,
                a.role
            );
            for o in &a.objects {
                let with = if o.moves_with.is_empty() {
                    String::new()
                } else {
                    format!(" (with {})", o.moves_with.join(", "))
                };
                println!("  {} {}{with}", o.kind, o.name);
            }
        }
        for w in &a.warnings {
            eprintln!("warning: {w}");
        }
    })
}
