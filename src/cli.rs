//! The command line: `troupe` (serve), `troupe serve`, `troupe config check`,
//! `troupe migrate [--dry-run]`, `troupe migrate status`, `--help`,
//! `--version`.
//!
//! Adding a command is a variant of [`Command`] (its doc comment is its
//! `--help` line) and an arm in `main`'s dispatch.
//!
//! Configuration does not come from flags: every setting comes from the
//! files and the environment (`AFTER_HELP` says where), so one deployment's
//! environment works for every command.

use clap::{Parser, Subcommand};

/// `0.1.0 (rev abc1234)`: the crate version and the git revision it was
/// built from ("unknown" outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("TROUPE_GIT_REVISION"),
    ")"
);

/// Where configuration comes from and what the exit codes mean, after the
/// commands in `--help` (docs/cli.md has the long form).
const AFTER_HELP: &str = "\
Configuration (later sources win):
  1. the defaults built into the binary (the repository's config/default.toml
     and config/<TROUPE_ENV>.toml)
  2. config/default.toml and config/<TROUPE_ENV>.toml in TROUPE_CONFIG_DIR
     (default ./config), where present
  3. TROUPE__SECTION__KEY environment variables (TROUPE__AUTH__ACCESS_TTL=15m)
  4. PORT, MONGODB_URI, MONGODB_DB, REDIS_URL, REDIS_CLUSTER_URLS,
     REDIS_KEY_PREFIX, JWT_ACCESS_SECRET, JWT_REFRESH_SECRET, OPS_TOKEN,
     METRICS_TOKEN, LOG_DIR
  TROUPE_ENV selects the profile (development, test, production); RUST_LOG
  overrides log.level; NO_COLOR turns colour off.

Exit codes:
  0  success (serve: stopped by SIGINT or SIGTERM)
  1  a runtime failure (port in use, ...); config check: problems found;
     migrate: failed, or found conflicts to fix first (nothing changed)
  2  a usage error (unknown command or flag), or serve refused its
     configuration
  3  serve refused the database: it needs `troupe migrate` first, or a
     newer binary migrated it (the message names the migrations)

See docs/cli.md.";

#[derive(Debug, Parser)]
#[command(
    name = "troupe",
    version = VERSION,
    about = "An actor-system backend: JWT auth, Redis cache, MongoDB job queue.",
    long_about = None,
    after_help = AFTER_HELP,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP (also what `troupe` with no command does).
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply the database's pending migrations in order, under a lock held
    /// in the database (`--dry-run`: print what each would change, change
    /// nothing); `troupe migrate status` lists them.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    /// Print what each pending migration would change (counts, conflicts);
    /// change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// List the applied and pending migrations and who holds the lock.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate every setting without contacting any server; list
    /// every bad or unknown key (exit 1), or print one line (exit 0).
    Check,
}

impl Cli {
    /// The command to run: no command is `serve`.
    pub fn command(&self) -> &Command {
        self.command.as_ref().unwrap_or(&Command::Serve)
    }
}

/// A usage error as one line for stderr: clap's message and its tip
/// (`did you mean`), without the usage block. Plain text: clap's Display
/// carries no colour codes.
pub fn one_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
        })
        .collect();
    format!("{}; see 'troupe --help'", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn no_command_serves() {
        let cli = Cli::try_parse_from(["troupe"]).unwrap();
        assert!(matches!(cli.command(), Command::Serve));
        let cli = Cli::try_parse_from(["troupe", "serve"]).unwrap();
        assert!(matches!(cli.command(), Command::Serve));
    }

    #[test]
    fn config_check_parses() {
        let cli = Cli::try_parse_from(["troupe", "config", "check"]).unwrap();
        assert!(matches!(
            cli.command(),
            Command::Config(ConfigCommand::Check)
        ));
    }

    #[test]
    fn stray_arguments_and_flags_are_refused() {
        for args in [
            &["troupe", "bogus"][..],
            &["troupe", "--port", "9999"],
            &["troupe", "serve", "extra"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            let line = one_line(&err);
            assert!(!line.contains('\n') && !line.contains('\x1b'), "{line:?}");
            assert!(line.starts_with("error: "), "{line}");
        }
    }

    #[test]
    fn the_version_carries_the_git_revision() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains("(rev "), "{VERSION}");
    }
}
