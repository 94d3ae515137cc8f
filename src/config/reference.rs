//! The settings reference (`docs/settings.md`), written from the command line's own
//! definition: the flags, variables, defaults and help that `--help` prints, as tables. A test
//! compares the page with this, so the two cannot drift apart.

use std::collections::HashSet;
use std::fmt::Write;

use clap::CommandFactory;

use super::Cli;

/// The commands, in the order the page lists them.
const COMMANDS: [&[&str]; 6] = [
    &["serve"],
    &["redrive"],
    &["backfill"],
    &["schema", "check"],
    &["schema", "print"],
    &["schema", "apply"],
];

/// The page, as Markdown.
pub fn reference() -> String {
    let cli = Cli::command();
    let mut page = String::from(
        "# Settings\n\n\
         <!-- Written by `UPDATE_DOCS=1 cargo test --test api docs::` from the command line's \
         definition; edit the doc comments in src/config/, not this page. -->\n\n\
         Every flag with a variable can be set through the environment instead (Cloud Run is \
         configured that way); the command line wins. `landfall COMMAND --help` prints the same, \
         grouped the same way. A setting that cannot work stops the start with one line per \
         problem naming the flag and its variable (exit 2); one that has no effect in the \
         configuration given is named in a warning.\n",
    );
    let mut listed = HashSet::new();
    for path in COMMANDS {
        let command = path.iter().fold(cli.clone(), |command, name| {
            command
                .find_subcommand(name)
                .cloned()
                .unwrap_or_else(|| panic!("no command {name}"))
        });
        section(&mut page, path, &command, &mut listed);
    }
    page.push_str(&format!("\n{}\n", super::EXIT_CODES));
    page
}

fn section(
    page: &mut String,
    path: &[&str],
    command: &clap::Command,
    listed: &mut HashSet<String>,
) {
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut about = one_line(&about);
    if !about.ends_with('.') {
        about.push('.');
    }
    let _ = write!(page, "\n## `landfall {}`\n\n{about}\n", path.join(" "));
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let shared: Vec<String> = args
        .iter()
        .filter(|a| listed.contains(&key(a)))
        .map(|a| format!("`--{}`", a.get_long().unwrap_or_default()))
        .collect();
    if !shared.is_empty() {
        let _ = write!(page, "\nAlso, as above: {}.\n", shared.join(", "));
    }
    let mut heading = None;
    for arg in args.iter().filter(|a| !listed.contains(&key(a))) {
        let group = arg.get_help_heading().unwrap_or("Options");
        if heading != Some(group) {
            let _ = write!(
                page,
                "\n**{group}**\n\n| flag | variable | default | what |\n|---|---|---|---|\n"
            );
            heading = Some(group);
        }
        let _ = writeln!(page, "{}", row(arg));
    }
    if path == ["serve"] {
        listed.extend(args.iter().map(|a| key(a)));
    }
}

/// A flag is "as above" only where it is the same setting: the same row.
fn key(arg: &clap::Arg) -> String {
    row(arg)
}

fn row(arg: &clap::Arg) -> String {
    let flag = format!("`--{}`", arg.get_long().unwrap_or_default());
    let variable = arg
        .get_env()
        .map_or("—".into(), |v| format!("`{}`", v.to_string_lossy()));
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().to_string())
        .collect();
    let default = match defaults.is_empty() {
        true => "—".into(),
        false => format!("`{}`", defaults.join(",")),
    };
    let mut what = one_line(&arg.get_help().map(|h| h.to_string()).unwrap_or_default());
    if !what.is_empty() && !what.ends_with(['.', ')', ':']) {
        what.push('.');
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    let boolean = matches!(arg.get_action(), clap::ArgAction::SetTrue);
    if !values.is_empty() && !boolean {
        let _ = write!(what, " One of {}.", values.join(", "));
    }
    format!(
        "| {flag} | {variable} | {default} | {} |",
        what.replace('|', "\\|")
    )
}

/// Help text on one table row.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
