//! Command line and environment, parsed once into typed settings.
//!
//! Every flag is also an environment variable, because Cloud Run is configured through the
//! environment. Flags are grouped by concern in `--help`, and each command takes only the
//! flags it uses. Each command's arguments resolve once, at start, into the settings type of
//! the component that runs it ([`crate::startup::Config`], [`crate::repair::RepairConfig`]),
//! reporting every problem at once, so a misconfigured service refuses to start instead of
//! failing on its first message. A bad value names its flag and, when it came from there,
//! its environment variable ([`parse`]).

/// `--flag (VARIABLE)`: how an operator names the setting held by a field of a flag group,
/// as clap defines it (`setting!(LimitArgs, max_concurrency)`). Naming the group's field
/// makes a renamed field a compile error, where a literal would go stale without a word.
macro_rules! setting {
    ($group:ty, $field:ident) => {{
        let _a_field_of_the_group = |group: &$group| {
            let _ = &group.$field;
        };
        $crate::config::named(stringify!($field))
    }};
}

/// Whether the setting held by a field of a flag group was given (on the command line or in
/// the environment), checked the same way: `given!(given, LimitArgs, max_concurrency)`.
macro_rules! given {
    ($given:expr, $group:ty, $field:ident) => {{
        let _a_field_of_the_group = |group: &$group| {
            let _ = &group.$field;
        };
        $given.has(stringify!($field))
    }};
}

pub(crate) use setting;

mod args;
mod reference;
mod repair;
mod serve;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::sync::OnceLock;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use args::*;
pub use reference::reference;
pub use repair::{BackfillArgs, RepairArgs};
pub use serve::ServeArgs;

pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const GOOGLE_ISSUERS: &[&str] = &["accounts.google.com", "https://accounts.google.com"];

/// What the process's exit code means, for whoever runs it (and a Cloud Run job's retries).
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 failed for a reason that may pass (a service \
did not answer, some messages were not written): run the same command again; 2 the \
configuration or the input must change first: do not retry.";

#[derive(Debug, Parser)]
#[command(
    name = "landfall",
    version,
    about = "Pub/Sub push endpoint: verifies, validates and lands events in a landing layer \
             (GCS or a folder) and a raw layer (BigQuery or SQLite).",
    after_help = EXIT_CODES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `landfall [FLAGS]` is `landfall serve [FLAGS]`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Pub/Sub push requests (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// The event catalog and the tables and views it becomes.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Classify the dead letters in the landing layer again and land those that now pass,
    /// under their original message ids, exactly once.
    Redrive(Box<RepairArgs>),
    /// Write every warehouse row that is missing for the events in the landing layer.
    Backfill(Box<BackfillArgs>),
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Validate a catalog offline; print each event type with its table, partitioning and
    /// clustering. With `--data-dir` or the BigQuery flags, also what `serve` would add, relax
    /// or refuse in the live tables. Exits non-zero on any problem.
    Check(CheckArgs),
    /// Print the BigQuery DDL (CREATE TABLE IF NOT EXISTS … PARTITION BY … CLUSTER BY …), or
    /// with `--curated` the curated layer's views.
    Print(PrintArgs),
    /// Create the datasets, tables and curated views, add new columns; idempotent, and
    /// all-or-nothing when a difference cannot be changed in place.
    Apply(ApplyArgs),
}

/// Which settings were given (on the command line or in the environment) rather than left
/// at their defaults: a setting that does nothing in the chosen mode is then worth a warning.
#[derive(Debug, Clone, Default)]
pub struct Given(HashSet<String>);

impl Given {
    fn of(matches: &ArgMatches) -> Self {
        Given(
            matches
                .ids()
                .filter(|id| {
                    matches!(
                        matches.value_source(id.as_str()),
                        Some(
                            clap::parser::ValueSource::CommandLine
                                | clap::parser::ValueSource::EnvVariable
                        )
                    )
                })
                .map(|id| id.to_string())
                .collect(),
        )
    }

    /// Whether the argument with this id (its field name) was given; through [`given!`],
    /// which checks the id against the struct it comes from.
    pub fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// Every problem with a configuration, one per line, each naming its flag and variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Parses a command line, and says which settings were given for the command that runs.
/// A value clap refuses names its environment variable too when it came from there.
pub fn parse<I, T>(argv: I) -> Result<(Cli, Given), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_from(argv, Cli::command())
}

/// Parses a command line alone, as if no environment variable were set: what tests and the
/// benchmark configure must not change with the `LANDFALL_*` variables of whoever runs them.
pub fn parse_command_line<I, T>(argv: I) -> Result<(Cli, Given), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    parse_from(argv, without_environment(Cli::command()))
}

/// `--flag (VARIABLE)` (or `--flag` when it has no variable) for the setting clap knows by
/// this id; see [`setting!`], which checks the id against the struct it comes from.
pub fn named(id: &str) -> String {
    static NAMES: OnceLock<HashMap<String, String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        fn collect(command: &clap::Command, names: &mut HashMap<String, String>) {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                let name = match arg.get_env() {
                    Some(env) => format!("--{long} ({})", env.to_string_lossy()),
                    None => format!("--{long}"),
                };
                names.entry(arg.get_id().to_string()).or_insert(name);
            }
            for sub in command.get_subcommands() {
                collect(sub, names);
            }
        }
        let mut names = HashMap::new();
        collect(&Cli::command(), &mut names);
        names
    });
    names
        .get(id)
        .cloned()
        .unwrap_or_else(|| panic!("no setting has the id {id}"))
}

/// Every environment variable a setting of some command reads (`PORT`, `LANDFALL_…`, …).
pub fn variables() -> Vec<String> {
    fn of(command: &clap::Command) -> Vec<String> {
        command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|v| v.to_string_lossy().to_string())
            .chain(command.get_subcommands().flat_map(of))
            .collect()
    }
    let mut names = of(&Cli::command());
    names.sort();
    names.dedup();
    names
}

fn without_environment(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.env(None::<&'static str>))
        .mut_subcommands(without_environment)
}

fn with_exit_codes(command: clap::Command) -> clap::Command {
    command
        .after_help(EXIT_CODES)
        .mut_subcommands(with_exit_codes)
}

fn parse_from<I, T>(argv: I, command: clap::Command) -> Result<(Cli, Given), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut command = command.mut_subcommands(with_exit_codes);
    let matches = command
        .try_get_matches_from_mut(argv.clone())
        .map_err(|e| name_the_variable(e, &command, &argv))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    let innermost = innermost(&matches);
    Ok((cli, Given::of(innermost)))
}

fn innermost(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => innermost(sub),
        None => matches,
    }
}

/// `invalid value '1' for '--metrics <METRICS>'` says nothing of where the value came from;
/// when the flag is not on the command line but its variable is set, say so.
fn name_the_variable(
    error: clap::Error,
    command: &clap::Command,
    argv: &[OsString],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let long = shown.split([' ', '=']).next().unwrap_or_default();
    let Some(name) = long.strip_prefix("--") else {
        return error;
    };
    let on_command_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        a == long || a.starts_with(&format!("{long}="))
    });
    let variable = all_args(command)
        .find(|arg| arg.get_long() == Some(name))
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().to_string());
    let Some(variable) = variable else {
        return error;
    };
    let whence = if !on_command_line && std::env::var_os(&variable).is_some() {
        format!("from the environment variable {variable}")
    } else {
        format!("also read from the environment variable {variable}")
    };
    let rendered = error.render().to_string();
    // `raw` says "error: " itself.
    let text = rendered
        .strip_prefix("error: ")
        .unwrap_or(&rendered)
        .replacen(
            &format!("for '{shown}'"),
            &format!("for '{shown}' ({whence})"),
            1,
        );
    clap::Error::raw(error.kind(), text)
}

fn all_args(command: &clap::Command) -> Box<dyn Iterator<Item = &clap::Arg> + '_> {
    Box::new(
        command
            .get_arguments()
            .chain(command.get_subcommands().flat_map(all_args)),
    )
}

/// The settings `serve` would run with, from a command line alone (for tests and the
/// benchmark): the environment is not read.
pub fn serve_config<I, T>(argv: I) -> Result<crate::startup::Config, ConfigErrors>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let (cli, given) = parse_command_line(argv).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
    match cli.command {
        None => cli.serve.resolve(&given),
        Some(Command::Serve(serve)) => serve.resolve(&given),
        Some(_) => Err(ConfigErrors(vec!["not the serve command".into()])),
    }
}

/// `BIGQUERY_EMULATOR_HOST` may be `host:port` or a URL.
fn emulator_url(host: &str) -> String {
    let host = host.trim_end_matches('/');
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_hosts_may_omit_the_scheme() {
        assert_eq!(emulator_url("127.0.0.1:9050"), "http://127.0.0.1:9050");
        assert_eq!(emulator_url("http://h:1/"), "http://h:1");
    }

    #[test]
    fn a_command_line_alone_reads_no_environment_variable() {
        assert!(variables().contains(&"LANDFALL_DATA_DIR".to_string()));
        assert!(variables().contains(&"PORT".to_string()));
        fn reading(command: &clap::Command) -> usize {
            let own = command.get_arguments().filter(|a| a.get_env().is_some());
            own.count() + command.get_subcommands().map(reading).sum::<usize>()
        }
        assert!(reading(&Cli::command()) > 0);
        assert_eq!(reading(&without_environment(Cli::command())), 0);
    }

    #[test]
    fn schema_commands_take_only_their_own_flags() {
        let parsed = |args: &[&str]| {
            let mut argv = vec!["landfall"];
            argv.extend_from_slice(args);
            parse(argv).map(|_| ())
        };
        assert!(parsed(&["schema", "print", "--max-concurrency", "5"]).is_err());
        assert!(parsed(&["schema", "check", "--port", "1"]).is_err());
        assert!(
            parsed(&[
                "schema",
                "apply",
                "--schemas",
                "x",
                "--bigquery-project",
                "p"
            ])
            .is_ok()
        );
        assert!(parsed(&["--port", "1", "schema", "check"]).is_err());
        assert!(parsed(&["redrive", "--since", "2026-11-25T00:00:00Z", "--dry-run"]).is_ok());
        assert!(parsed(&["redrive", "--port", "1"]).is_err());
        assert!(parsed(&["backfill", "--types", "order,inventory"]).is_ok());
    }
}
