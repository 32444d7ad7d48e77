//! The CLI's own conveniences: `township completions SHELL` prints a completion script
//! (clap_complete) and `township man DIR` writes man pages (clap_mangen), both made from the
//! same command definition as `--help`, so they cannot drift from it.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;

use crate::{
    error::CliError,
    output::{unless_broken_pipe, write_line},
};

/// Flags of `township completions`.
#[derive(Debug, Args)]
#[command(after_help = "For example: `township completions bash > \
/etc/bash_completion.d/township`, `township completions zsh > \"${fpath[1]}/_township\"`, or \
`township completions fish > ~/.config/fish/completions/township.fish`.")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

/// Flags of `township man`.
#[derive(Debug, Args)]
#[command(
    after_help = "Writes township.1, then one page per subcommand named after it \
(township-time.1, township-phonebook-add.1, ...); DIR is created if need be. Each file written \
is printed on its own line. Read one with `man -l DIR/township.1`, or put DIR/.. on MANPATH."
)]
pub struct ManArgs {
    /// The directory to write the pages into, e.g. ./man/man1.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// The name completions and man pages know the command by.
const BIN: &str = "township";

/// Runs `township completions`: the script for `args.shell`, on stdout.
pub fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<(), CliError> {
    // Made in memory first: clap_complete panics on a failed write, a closed stdout must not.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, BIN, &mut script);
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(&script).and_then(|()| stdout.flush());
    unless_broken_pipe(
        written
            .context("cannot write stdout")
            .map_err(CliError::Local),
    )
}

/// Runs `township man`: every page into `args.dir`.
pub fn man(args: ManArgs, mut command: clap::Command) -> Result<(), CliError> {
    command.build();
    let mut pages = Vec::new();
    render_pages(&command, &mut pages)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut written = Vec::with_capacity(pages.len());
    for (name, page) in pages {
        let path = args.dir.join(format!("{name}.1"));
        write_page(&path, &page)?;
        written.push(path);
    }
    // Listed once every page is written: a reader that stops early leaves no page unwritten.
    unless_broken_pipe(
        written
            .iter()
            .try_for_each(|path| write_line(path.display())),
    )
}

/// Renders the page of `command` and of each visible subcommand under it, as (name, roff).
/// `command` must be built, so that a subcommand's name is its full one (`township-time`).
fn render_pages(command: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let name = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    pages.push((name, page));
    for sub in command.get_subcommands() {
        if !sub.is_hide_set() && sub.get_name() != "help" {
            render_pages(sub, pages)?;
        }
    }
    Ok(())
}

fn write_page(path: &Path, page: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, page)
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(CliError::Local)
}
