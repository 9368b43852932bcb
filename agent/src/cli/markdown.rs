//! The command line as Markdown: `docs/cli.md`, written from the same clap
//! definition as the manual page, so that the reference cannot drift from
//! the binary (`tests/cli.rs` compares the two).

use std::fmt::Write;

use clap::{Arg, Command, CommandFactory};

/// The command that writes the reference, named in its header so that
/// nobody edits the generated file by hand.
pub const REGENERATE: &str = "cargo run -q -p tandem-agent -- man --markdown > docs/cli.md";

/// The command-line reference of `tandem-agent`, as `docs/cli.md` holds it.
pub fn reference() -> String {
    let mut out = String::new();
    out.push_str("# Command-line reference\n\n");
    let _ = writeln!(
        out,
        "<!-- Generated from agent/src/cli.rs by `tandem-agent man --markdown`; \
         do not edit. To regenerate: {REGENERATE} -->\n"
    );
    out.push_str(
        "Every command and option of `tandem-agent`, from the binary's own \
         definition. What each command does, what it exits with and which \
         ones work while the service runs: [Commands](commands.md).\n\n",
    );
    out.push_str(&render(&crate::cli::Cli::command()));
    out
}

/// `command` and its subcommands as Markdown: its description, usage and
/// arguments, a list of its subcommands, then a section for each. Hidden
/// commands, arguments and values are left out, as the manual page leaves
/// them out.
pub fn render(command: &Command) -> String {
    let mut command = command.clone();
    // Building fills in what clap adds by itself (the bin names the usage
    // lines show, `--help`, `--version`, the `help` subcommand).
    command.build();
    let mut out = String::new();
    describe(&mut out, &command);
    let subcommands = visible_subcommands(&command);
    if !subcommands.is_empty() {
        out.push_str("## Commands\n\n");
        for sub in &subcommands {
            let title = bin_name(sub);
            let _ = writeln!(
                out,
                "- [`{}`](#{}): {}",
                sub.get_name(),
                anchor(&title),
                text(&about(sub, false))
            );
        }
        out.push('\n');
        for sub in &subcommands {
            section(&mut out, sub, 2);
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A heading for `command` at `level`, its description, then its own
/// subcommands one level down.
fn section(out: &mut String, command: &Command, level: usize) {
    let _ = writeln!(
        out,
        "{} `{}`\n",
        "#".repeat(level.min(6)),
        bin_name(command)
    );
    describe(out, command);
    // clap's own `help` command has a child per command only so that
    // `help COMMAND` completes: they say nothing the sections above do not.
    if command.get_name() == "help" {
        return;
    }
    for sub in visible_subcommands(command) {
        section(out, sub, level + 1);
    }
}

/// Description, usage line, arguments and options of one command.
fn describe(out: &mut String, command: &Command) {
    let about = about(command, true);
    if !about.is_empty() {
        let _ = writeln!(out, "{}\n", text(&about));
    }
    let usage = command.clone().render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim();
    let _ = writeln!(out, "```text\n{usage}\n```\n");
    let args: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .collect();
    let (positionals, options): (Vec<&Arg>, Vec<&Arg>) =
        args.into_iter().partition(|a| a.is_positional());
    for (title, group) in [("Arguments", positionals), ("Options", options)] {
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:\n");
        for arg in group {
            argument(out, arg);
        }
        out.push('\n');
    }
}

/// One list item: the argument's names and value, whether it is required,
/// its default and environment variable, its help, and its possible
/// values (each with its help, when any has one).
fn argument(out: &mut String, arg: &Arg) {
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("`-{short}`"));
    }
    if let Some(long) = arg.get_long() {
        let value = if takes_value(arg) {
            format!(" {}", value_names(arg))
        } else {
            String::new()
        };
        names.push(format!("`--{long}{value}`"));
    }
    if arg.is_positional() {
        names.push(format!("`{}`", value_names(arg)));
    }
    let mut notes = Vec::new();
    if arg.is_required_set() {
        notes.push("required".to_owned());
    }
    // A flag's default (`false`) says nothing its absence does not.
    let defaults = arg.get_default_values();
    if takes_value(arg) && !defaults.is_empty() && !arg.is_hide_default_value_set() {
        let shown: Vec<String> = defaults
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect();
        notes.push(format!("default {}", shown.join(", ")));
    }
    if let Some(env) = arg.get_env().filter(|_| !arg.is_hide_env_set()) {
        notes.push(format!("environment `{}`", env.to_string_lossy()));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| text(&h.to_string()))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "- {}{notes}: {}",
        names.join(", "),
        indent(&help, "  ")
    );
    if arg.is_hide_possible_values_set() || !takes_value(arg) {
        return;
    }
    let values: Vec<_> = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set())
        .collect();
    if values.iter().any(|v| v.get_help().is_some()) {
        for value in &values {
            match value.get_help() {
                Some(help) => {
                    let help = text(&help.to_string());
                    let _ = writeln!(out, "  - `{}`: {help}", value.get_name());
                }
                None => {
                    let _ = writeln!(out, "  - `{}`", value.get_name());
                }
            }
        }
    } else if !values.is_empty() {
        let names: Vec<String> = values
            .iter()
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        let _ = writeln!(out, "  One of {}.", names.join(", "));
    }
}

fn visible_subcommands(command: &Command) -> Vec<&Command> {
    command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .collect()
}

/// The long description where there is one (the whole doc comment), else
/// the short one; only the short one for a list entry.
fn about(command: &Command, long: bool) -> String {
    let about = if long {
        command.get_long_about().or(command.get_about())
    } else {
        command.get_about()
    };
    about.map(|a| a.to_string()).unwrap_or_default()
}

/// How a command is typed: `tandem-agent install-triggers`.
fn bin_name(command: &Command) -> String {
    command
        .get_bin_name()
        .unwrap_or(command.get_name())
        .to_owned()
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

/// `<CONFIG>`, as the usage line names the value.
fn value_names(arg: &Arg) -> String {
    match arg.get_value_names() {
        Some(names) if !names.is_empty() => names
            .iter()
            .map(|n| format!("<{n}>"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => format!("<{}>", arg.get_id()),
    }
}

/// The anchor a Markdown renderer (GitHub's, and most others) gives a
/// heading: lower case, spaces as hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Help text as Markdown. The help is written for a terminal, with code in
/// backticks: code spans stay as written, and outside them the characters
/// Markdown would take for markup are escaped (`<name of the file>` would
/// otherwise vanish as an HTML tag).
fn text(help: &str) -> String {
    let chars: Vec<char> = help.chars().collect();
    let mut out = String::with_capacity(help.len());
    let mut in_code = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            let word = |j: Option<usize>| {
                j.and_then(|j| chars.get(j))
                    .is_some_and(|c| c.is_alphanumeric())
            };
            let markup = match c {
                '\\' | '*' | '<' | '>' | '[' | ']' | '|' => true,
                // Inside a word (TANDEM_SOURCE_PASSWORD) it is not emphasis.
                '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
                '#' => i == 0 || chars[i - 1] == '\n',
                _ => false,
            };
            if markup {
                out.push('\\');
            }
        }
        out.push(c);
    }
    out
}

/// Continuation lines of a list item, indented so that they stay in it.
fn indent(text: &str, by: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 || line.is_empty() {
                line.to_owned()
            } else {
                format!("{by}{line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::builder::PossibleValue;

    fn sample() -> Command {
        Command::new("tool")
            .about("Does things.")
            .subcommand(
                Command::new("go")
                    .about("Goes.")
                    .arg(
                        Arg::new("config")
                            .long("config")
                            .short('c')
                            .required(true)
                            .help("The config (default: /etc/<name>.toml)."),
                    )
                    .arg(
                        Arg::new("side")
                            .long("side")
                            .value_parser([
                                PossibleValue::new("left").help("The `[left]` one."),
                                PossibleValue::new("right"),
                                PossibleValue::new("middle").hide(true),
                            ])
                            .help("Only this side."),
                    )
                    .arg(
                        Arg::new("secret")
                            .long("secret")
                            .hide(true)
                            .action(clap::ArgAction::SetTrue),
                    ),
            )
            .subcommand(Command::new("internal").hide(true))
    }

    #[test]
    fn each_command_gets_its_usage_options_and_values() {
        let md = render(&sample());
        assert!(
            md.starts_with("Does things.\n\n```text\ntool [COMMAND]\n```"),
            "{md}"
        );
        assert!(md.contains("- [`go`](#tool-go): Goes.\n"), "{md}");
        assert!(
            md.contains(
                "## `tool go`\n\nGoes.\n\n```text\ntool go [OPTIONS] --config <config>\n```"
            ),
            "{md}"
        );
        assert!(
            md.contains("- `-c`, `--config <config>` (required): The config (default: /etc/\\<name\\>.toml).\n"),
            "{md}"
        );
        assert!(
            md.contains("  - `left`: The `[left]` one.\n  - `right`\n"),
            "{md}"
        );
        assert!(md.contains("- `-h`, `--help`: Print help"), "{md}");
    }

    #[test]
    fn what_is_hidden_stays_hidden() {
        let md = render(&sample());
        for hidden in ["secret", "internal", "middle"] {
            assert!(!md.contains(hidden), "{hidden} shown:\n{md}");
        }
        // clap's `help` command is listed; its per-command children are not.
        assert!(md.contains("## `tool help`"), "{md}");
        assert!(!md.contains("### `tool help go`"), "{md}");
    }

    #[test]
    fn markup_is_escaped_outside_code_spans_only() {
        assert_eq!(
            text("a <dir> in `<kept> *x*` and *y*, ${TANDEM_PW} _z_"),
            "a \\<dir\\> in `<kept> *x*` and \\*y\\*, ${TANDEM_PW} \\_z\\_"
        );
        assert_eq!(text("# not a heading"), "\\# not a heading");
    }

    #[test]
    fn the_reference_names_every_visible_command_and_option() {
        let md = reference();
        let mut command = crate::cli::Cli::command();
        command.build();
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            assert!(
                md.contains(&format!("## `tandem-agent {}`", sub.get_name())),
                "{}",
                sub.get_name()
            );
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    assert!(md.contains(&format!("`--{long}")), "--{long}");
                }
            }
        }
        assert!(!md.contains("`--markdown"), "the hidden flag is listed");
        assert!(md.contains(REGENERATE));
    }
}
